"""Which posts hold the same picture: near-copies grouped across the manifest.

A tile says "also in N posts" when its image is in a group
(``igimages.similar``, from the manifest's ``sha256`` and ``phash``) with
images of other posts: the same bytes, or the picture resized and
recompressed by another account. Groups span the whole manifest, so they are
found in a pass before the pages are written. That pass keeps about 25 bytes
an image, in arrays (a content is named by its ``sha256[:16]`` as a number);
what it leaves for the pages is the groups of more than one post, and each
of their posts' id and page.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from igimages.items import FAILED
from igimages.report.reading import ReportImage, ReportPost
from igimages.similar import group_keys


@dataclass(frozen=True, slots=True)
class Reposts:
    """The groups of images that more than one post holds, and where those posts are."""

    posts: int  # the number of posts read
    group_of: dict[int, int] = field(default_factory=dict)  # content key -> its group's
    members: dict[int, list[tuple[str, int]]] = field(default_factory=dict)  # (post id, page)

    @classmethod
    def read(cls, posts: Iterable[ReportPost], page_size: int) -> Self:
        """Group the stored images of ``posts`` (in manifest order, ``page_size`` a page)."""
        keys, phashes, known, numbers = array("Q"), array("Q"), array("B"), array("Q")
        ids: list[str] = []
        for number, post in enumerate(posts):
            ids.append(post.id)
            for image in post.images:
                if (key := _key(image)) is not None:
                    keys.append(key)
                    phashes.append(int(image.phash or "0", 16))
                    known.append(bool(image.phash))
                    numbers.append(number)
        image_keys, hashed = np.frombuffer(keys, np.uint64), np.frombuffer(known, np.bool_)
        # One row a content: its first image with a hash, else its first.
        order = np.lexsort((~hashed, image_keys))
        contents, first = np.unique(image_keys[order], return_index=True)
        first = order[first]
        groups = group_keys(contents, np.frombuffer(phashes, np.uint64)[first], hashed[first])
        image_groups = groups[np.searchsorted(contents, image_keys)]
        # Each (group, post) once; the groups with more than one post.
        pairs = np.unique(np.stack([image_groups, np.frombuffer(numbers, np.uint64)]), axis=1)
        shared, count = np.unique(pairs[0], return_counts=True)
        shared = shared[count > 1]
        members: dict[int, list[tuple[str, int]]] = {}
        for group, number in pairs[:, np.isin(pairs[0], shared)].T.tolist():
            members.setdefault(group, []).append((ids[number], number // page_size + 1))
        in_shared = np.isin(groups, shared)
        group_of = dict(zip(contents[in_shared].tolist(), groups[in_shared].tolist(), strict=True))
        return cls(len(ids), group_of, members)

    def others(self, image: ReportImage, post_id: str) -> list[tuple[str, int]]:
        """The other posts (id, page) that hold ``image`` or a near-copy of it."""
        key = _key(image)
        group = None if key is None else self.group_of.get(key)
        if group is None:
            return []
        return [member for member in self.members[group] if member[0] != post_id]


def _key(image: ReportImage) -> int | None:
    """A stored image's content as a number (its sha256's first 64 bits)."""
    if image.status == FAILED or image.sha256 is None:
        return None
    return int(image.sha256[:16], 16)
