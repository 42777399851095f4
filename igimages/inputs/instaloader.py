"""instaloader's metadata files: ``{"node": {...}, "instaloader": {"node_type": ...}}``.

One file per post (``.json``, or ``.json.xz`` as instaloader writes by
default), alone or in a folder. The node is Instagram's GraphQL media node,
read as the ``graphql`` format reads it (a carousel's children, else
``display_url``, for a video its cover). The profile's own metadata and the
``_comments.json`` files beside the posts are not posts: skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from igimages.inputs.base import Found, PerValue
from igimages.inputs.graphql import node_post
from igimages.inputs.post import require_object
from igimages.inputs.reader import Located
from igimages.items import Post

POST_TYPES = ("Post", "StoryItem")


class Instaloader(PerValue):
    name = "instaloader"

    def looks_like(self, value: Any) -> bool:
        return isinstance(value, dict) and "instaloader" in value and "node" in value

    def posts(self, values: Iterable[Located]) -> Iterator[Found]:
        return super().posts(v for v in values if not v.name.endswith("_comments.json"))

    def to_post(self, value: Any) -> Post | None:
        value = require_object(value)
        about = value.get("instaloader")
        if isinstance(about, dict) and about.get("node_type", "Post") not in POST_TYPES:
            return None
        node = value.get("node")
        return node_post(node if isinstance(node, dict) else {}, "node.")
