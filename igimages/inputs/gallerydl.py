"""gallery-dl's metadata (``--write-metadata``): one JSON file per image or video.

The files of one post share its ``post_id`` and are put in order by ``num``
(1-based); ``display_url`` is the image, for a video its cover. gallery-dl
puts all files of a post in one folder, so posts are gathered one folder at a
time: memory holds one folder's posts, never the whole tree's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from igimages.inputs.base import Format, Found
from igimages.inputs.post import (
    BadPost,
    make_post,
    post_id,
    require_object,
    shortcode_link,
    url_list,
)
from igimages.inputs.reader import Located


@dataclass(slots=True)
class _Post:
    first: Located  # where the post is reported, in messages
    url: str | None
    files: list[tuple[float, int, list[str]]] = field(default_factory=list)


class GalleryDl(Format):
    name = "gallery-dl"

    def looks_like(self, value: Any) -> bool:
        return isinstance(value, dict) and "post_id" in value and "num" in value

    def posts(self, values: Iterable[Located]) -> Iterator[Found]:
        posts: dict[str, _Post] = {}
        folder = None
        for located in values:
            if os.path.dirname(located.name) != folder:
                yield from _finish(posts)
                folder = os.path.dirname(located.name)
            try:
                value = require_object(located.value)
                owner = post_id(value.get("post_id"), "post_id")
                urls = url_list(value.get("display_url"), "display_url", owner)
            except BadPost as exc:
                yield located, exc
                continue
            post = posts.get(owner)
            if post is None:
                post = posts[owner] = _Post(located, None)
            post.url = post.url or _link(value)
            num = value.get("num")
            order = num if isinstance(num, int | float) and not isinstance(num, bool) else math.inf
            post.files.append((order, len(post.files), urls))
        yield from _finish(posts)


def _finish(posts: dict[str, _Post]) -> Iterator[Found]:
    for owner, post in posts.items():
        urls = [url for *_, file_urls in sorted(post.files) for url in file_urls]
        try:
            yield post.first, make_post(owner, post.url, urls)
        except BadPost as exc:
            yield post.first, exc
    posts.clear()


def _link(value: dict[str, Any]) -> str | None:
    if isinstance(value.get("post_url"), str):
        return value["post_url"]
    return shortcode_link(value.get("post_shortcode"))
