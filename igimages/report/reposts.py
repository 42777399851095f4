"""Which posts hold the same picture: near-copies grouped across the manifest.

A tile says "also in N posts" when its image is in a group
(``igimages.similar.similar_groups``, from the manifest's ``sha256`` and
``phash``) with images of other posts: the same bytes, or the picture
resized and recompressed by another account. Groups span the whole
manifest, so they are found in a pass before the pages are written; what is
kept is the groups of more than one post, and each post's id and page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Self

from igimages.items import FAILED
from igimages.report.reading import ReportImage, ReportPost
from igimages.similar import similar_groups


@dataclass(frozen=True, slots=True)
class Reposts:
    posts: int  # the number of posts read
    group_of: dict[str, str] = field(default_factory=dict)  # sha256 -> group, if it spans posts
    members: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # (post id, page)

    @classmethod
    def read(cls, posts: Iterable[ReportPost], page_size: int) -> Self:
        """Group the stored images of ``posts`` (in manifest order, ``page_size`` a page)."""
        phashes: dict[str, str] = {}
        holders: defaultdict[str, list[int]] = defaultdict(list)  # sha256 -> posts, by number
        ids: list[str] = []
        for number, post in enumerate(posts):
            ids.append(post.id)
            for image in post.images:
                if image.status != FAILED and image.sha256:
                    phashes.setdefault(image.sha256, image.phash)
                    holders[image.sha256].append(number)
        by_group: defaultdict[str, set[int]] = defaultdict(set)
        groups = similar_groups(phashes.items())
        for sha256, numbers in holders.items():
            by_group[groups[sha256]].update(numbers)
        members = {
            group: [(ids[number], number // page_size + 1) for number in sorted(numbers)]
            for group, numbers in by_group.items()
            if len(numbers) > 1
        }
        group_of = {sha256: group for sha256, group in groups.items() if group in members}
        return cls(len(ids), group_of, members)

    def others(self, image: ReportImage, post_id: str) -> list[tuple[str, int]]:
        """The other posts (id, page) that hold ``image`` or a near-copy of it."""
        group = self.group_of.get(image.sha256 or "")
        if group is None:
            return []
        return [member for member in self.members[group] if member[0] != post_id]
