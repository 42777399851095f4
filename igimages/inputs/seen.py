"""A set of strings in 8 bytes per slot, for telling repeats in millions of them.

A Python ``set`` of a million post ids (about 20 characters each) takes some
100 MB. Kept as 64-bit hashes in one flat array with open addressing, a
string takes 11 to 22 bytes (the table doubles when three quarters full):
17 MB for a million. Two different strings with the same 64-bit hash would
count as a repeat: among a million strings the chance that this happens at
all is about 1 in 40 million.
"""

from __future__ import annotations

from array import array

_EMPTY = 0


class SeenSet:
    def __init__(self, capacity: int = 1024) -> None:
        self._slots = array("q", bytes(8 * capacity))  # capacity: a power of two
        self._mask = capacity - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, text: str) -> bool:
        """Remember ``text``; False if it was already there."""
        code = hash(text) or 1  # 0 marks an empty slot
        slots, mask = self._slots, self._mask
        slot = code & mask
        while (held := slots[slot]) != _EMPTY:
            if held == code:
                return False
            slot = (slot + 1) & mask
        slots[slot] = code
        self._count += 1
        if self._count * 4 > len(slots) * 3:
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._slots
        self._slots = slots = array("q", bytes(16 * len(old)))
        self._mask = mask = len(slots) - 1
        for code in old:
            if code != _EMPTY:
                slot = code & mask
                while slots[slot] != _EMPTY:
                    slot = (slot + 1) & mask
                slots[slot] = code
