"""The seed's own shape: ``{"id", "url", "media": {"images": [url, ...]}}``."""

from __future__ import annotations

from typing import Any

from igimages.inputs.base import PerValue
from igimages.inputs.post import BadPost, make_post, post_id, require_object
from igimages.items import Post


class Seed(PerValue):
    name = "seed"

    def looks_like(self, value: Any) -> bool:
        return isinstance(value, dict) and isinstance(value.get("media"), dict)

    def to_post(self, value: Any) -> Post:
        value = require_object(value)
        owner = post_id(value.get("id"), "id")
        media = value.get("media") or {}
        urls = media.get("images", []) if isinstance(media, dict) else None
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            raise BadPost(f'post {owner}: "media.images" must be a list of URL strings')
        return make_post(owner, value.get("url"), urls)
