"""One of several crawl processes' share of a posts input.

A crawl is CPU-bound on one core long before the network is the limit, so
``-s IGIMAGES_SHARD=K/N`` lets N processes split one input: each reads the
whole input and keeps the posts whose id hashes to its share. A post always
falls to the same process, whatever the input's order or format.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def from_setting(cls, value: str | None) -> Shard | None:
        """``"K/N"`` -> the K-th of N shares; empty -> ``None`` (the whole input)."""
        if not value:
            return None
        match = _SPEC.fullmatch(str(value))
        if not match or not 1 <= int(match[1]) <= int(match[2]):
            raise ValueError(f"IGIMAGES_SHARD={value}: expected K/N with 1 <= K <= N, e.g. 1/2")
        shard = cls(int(match[1]), int(match[2]))
        return shard if shard.count > 1 else None

    def takes(self, post_id: str) -> bool:
        return zlib.crc32(post_id.encode()) % self.count == self.index - 1

    @property
    def first(self) -> bool:
        """The share that reports what belongs to no post (bad values)."""
        return self.index == 1

    def __str__(self) -> str:
        return f"{self.index}-of-{self.count}"
