"""Apify's Instagram scraper: one object per post, as a JSON array or JSON Lines.

A carousel lists its images in ``images`` and again as ``childPosts``
(``displayUrl == images[0]``); a single image or a video has ``images: []``
and only ``displayUrl``, for a video its cover. Each URL is kept once.
"""

from __future__ import annotations

from typing import Any

from igimages.inputs.base import PerValue
from igimages.inputs.post import (
    make_post,
    objects,
    post_id,
    require_object,
    shortcode_link,
    url_list,
)
from igimages.items import Post

_MARKS = ("displayUrl", "shortCode", "childPosts")


class Apify(PerValue):
    name = "apify"

    def looks_like(self, value: Any) -> bool:
        return isinstance(value, dict) and any(mark in value for mark in _MARKS)

    def to_post(self, value: Any) -> Post:
        value = require_object(value)
        owner = post_id(value.get("id"), "id")
        urls = url_list(value.get("images"), "images", owner) or url_list(
            value.get("displayUrl"), "displayUrl", owner
        )
        for child in objects(value.get("childPosts")):
            urls = urls + url_list(child.get("displayUrl"), "childPosts[].displayUrl", owner)
        link = value.get("url")
        if not isinstance(link, str):
            link = shortcode_link(value.get("shortCode"))
        return make_post(owner, link, urls)
