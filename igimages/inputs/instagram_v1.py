"""Instagram's private (mobile) API v1 media items: instagrapi, paid scraping APIs.

A JSON array or JSON Lines of items, or whole responses holding them (a
feed page ``{"items": [...]}``, see ``responses``). An item's picture comes
in several sizes, ``image_versions2.candidates[]``, in no promised order:
only the widest is kept. A carousel (``media_type`` 8) has its pictures in
``carousel_media[]``, each child its own candidates; a video's candidates
are its cover.
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

_NUMBERS = (int, float)  # a size's types: not bool, which is an int


class InstagramV1(Responses):
    name = "instagram-v1"

    def is_post(self, value: dict[str, Any]) -> bool:
        return "media_type" in value and ("image_versions2" in value or "carousel_media" in value)

    def to_post(self, value: Any) -> Post:
        value = require_object(value)
        # The media id is the "pk"; "id" is "<pk>_<owner id>", a string, which
        # tools written in JavaScript cannot round as they do a 19-digit number.
        media_id = value.get("id")
        pk = media_id.partition("_")[0] if isinstance(media_id, str) else value.get("pk")
        owner = post_id(pk, "pk")
        urls: list[str] = []
        for child in objects(value.get("carousel_media")):
            urls += _widest(child, owner)
        if not urls:
            urls = _widest(value, owner)
        return make_post(owner, shortcode_link(value.get("code")), urls)


def _widest(media: dict[str, Any], owner: str) -> list[str]:
    """The URL of the widest candidate of ``media``'s picture; none if it has none."""
    versions = media.get("image_versions2")
    found = objects(versions.get("candidates")) if isinstance(versions, dict) else []
    candidates = [candidate for candidate in found if "url" in candidate]
    if not candidates:
        return []
    return url_list(max(candidates, key=_size)["url"], "image_versions2.candidates[].url", owner)


def _size(candidate: dict[str, Any]) -> tuple[float, float]:
    """Width, then height; a size that is not a number (``true`` neither) is smaller than any."""
    width, height = candidate.get("width"), candidate.get("height")
    return (
        width if type(width) in _NUMBERS else -1,
        height if type(height) in _NUMBERS else -1,
    )
