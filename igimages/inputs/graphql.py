"""Instagram's web GraphQL media nodes, as scrapers save them untouched.

A JSON array or JSON Lines of edges ``{"node": {...}}`` (the ``edges`` of
``edge_owner_to_timeline_media``, ``edge_hashtag_to_media``...), of bare
nodes, or whole responses holding them (see ``responses``). A node's
``__typename`` is ``GraphImage``, ``GraphVideo`` or ``GraphSidecar``; a
carousel's images are its children under ``edge_sidecar_to_children``,
anything else has ``display_url``, for a video its cover. instaloader saves
the same node, beside its own ``instaloader`` key: ``node_post`` reads both.
"""

from __future__ import annotations

from typing import Any

from igimages.inputs.post import (
    make_post,
    objects,
    post_id,
    require_object,
    shortcode_link,
    url_list,
)
from igimages.inputs.responses import Responses
from igimages.items import Post

MEDIA_TYPES = ("GraphImage", "GraphVideo", "GraphSidecar")


def node_post(node: dict[str, Any], prefix: str = "") -> Post:
    """The post of a media node; ``prefix`` is where the node is, for messages."""
    owner = post_id(node.get("id"), f"{prefix}id")
    sidecar = node.get("edge_sidecar_to_children")
    children = objects(sidecar.get("edges")) if isinstance(sidecar, dict) else []
    urls: list[str] = []
    for edge in children:
        child = edge.get("node")
        if isinstance(child, dict):
            urls += url_list(child.get("display_url"), "edge_sidecar_to_children", owner)
    if not urls:
        urls = url_list(node.get("display_url"), f"{prefix}display_url", owner)
    return make_post(owner, shortcode_link(node.get("shortcode")), urls)


class GraphQL(Responses):
    name = "graphql"

    def is_post(self, value: dict[str, Any]) -> bool:
        kind = value.get("__typename")
        # XDTGraphImage and the like: the same node, as newer web responses name it.
        if isinstance(kind, str) and kind.removeprefix("XDT") in MEDIA_TYPES:
            return True
        return "shortcode" in value and "display_url" in value

    def to_post(self, value: Any) -> Post:
        return node_post(require_object(value))
