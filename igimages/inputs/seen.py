"""A set of strings in 8 bytes per slot, for telling repeats in millions of them.

A Python ``set`` of a million post ids (about 20 characters each) takes some
100 MB. Kept as 64-bit hashes in one flat array with open addressing, a
string takes 11 to 22 bytes (the table doubles when three quarters full):
17 MB for a million. Past ``MAX_IN_MEMORY`` strings, new ones go to a SQLite
table in a temporary folder, so memory stays within a fixed bound whatever
the input's size. Two different strings with the same 64-bit hash would
count as a repeat: among a million strings the chance that this happens at
all is about 1 in 40 million.
"""

from __future__ import annotations

import sqlite3
import tempfile
from array import array
from pathlib import Path

_EMPTY = 0


class SeenSet:
    MAX_IN_MEMORY = 1 << 20  # strings: a 16 MiB table at most

    def __init__(self, capacity: int = 1024) -> None:
        self._slots = array("q", bytes(8 * capacity))  # capacity: a power of two
        self._mask = capacity - 1
        self._count = 0
        self._on_disk: _DiskCodes | None = None

    def __len__(self) -> int:
        return self._count + (len(self._on_disk) if self._on_disk else 0)

    def add(self, text: str) -> bool:
        """Remember ``text``; False if it was already there."""
        code = hash(text) or 1  # 0 marks an empty slot
        slots, mask = self._slots, self._mask
        slot = code & mask
        while (held := slots[slot]) != _EMPTY:
            if held == code:
                return False
            slot = (slot + 1) & mask
        if self._count >= self.MAX_IN_MEMORY:
            if self._on_disk is None:
                self._on_disk = _DiskCodes()
            return self._on_disk.add(code)
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


class _DiskCodes:
    """Hashes past the in-memory limit, in a throw-away SQLite table."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="igimages-seen-")
        self._db = sqlite3.connect(Path(self._folder.name, "seen.sqlite3"))
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA cache_size=-4096")  # KiB
        self._db.execute("CREATE TABLE codes (code INTEGER PRIMARY KEY)")
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, code: int) -> bool:
        added = self._db.execute("INSERT OR IGNORE INTO codes VALUES (?)", (code,)).rowcount == 1
        self._count += added
        return added
