"""instaloader's metadata files: ``{"node": {...}, "instaloader": {"node_type": ...}}``.

One file per post (``.json``, or ``.json.xz`` as instaloader writes by
default), alone or in a folder. A carousel's images are its children under
``edge_sidecar_to_children`` (what instaloader itself downloads), anything
else has ``display_url``, for a video its cover. The profile's own metadata
and the ``_comments.json`` files beside the posts are not posts: skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from igimages.inputs.base import Found, PerValue
from igimages.inputs.post import make_post, objects, post_id, require_object, url_list
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
        node = node if isinstance(node, dict) else {}
        owner = post_id(node.get("id"), "node.id")
        sidecar = node.get("edge_sidecar_to_children")
        children = objects(sidecar.get("edges")) if isinstance(sidecar, dict) else []
        urls: list[str] = []
        for edge in children:
            child = edge.get("node")
            if isinstance(child, dict):
                urls += url_list(child.get("display_url"), "edge_sidecar_to_children", owner)
        if not urls:
            urls = url_list(node.get("display_url"), "node.display_url", owner)
        shortcode = node.get("shortcode")
        link = f"https://www.instagram.com/p/{shortcode}/" if isinstance(shortcode, str) else None
        return make_post(owner, link, urls)
