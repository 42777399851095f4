"""Turning the fields a format found into a ``Post``, the same way for all.

Each format only says where a post's id, link and image URLs are; the checks
(a usable id, URLs that are strings, each URL once) live here so that every
format rejects the same things with the same words.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from igimages.inputs.reader import Malformed
from igimages.items import Post

#: The most images a post may have, and so the highest place an input may give
#: one (igimages' own feeds give places): far more than any real post holds,
#: and a number SQLite and a file name take.
MAX_POSITION = 100_000


class BadPost(Exception):
    """One post cannot be used; the rest of the input can."""


def require_object(value: Any) -> dict[str, Any]:
    if isinstance(value, Malformed):
        raise BadPost(value.message)
    if not isinstance(value, dict):
        raise BadPost(f"a post must be a JSON object, found {type(value).__name__}")
    return value


def post_id(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise BadPost(f'the post has no "{field}" (a non-empty string or number)')
    return str(value)


def url_list(value: Any, field: str, owner: str) -> list[str]:
    """The URLs in ``value``: absent, one string, or a list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(url, str) for url in value):
        return value
    raise BadPost(f'post {owner}: "{field}" must be a list of URL strings')


def shortcode_link(shortcode: Any) -> str | None:
    """The post's page, from its shortcode, as Instagram links it."""
    return f"https://www.instagram.com/p/{shortcode}/" if isinstance(shortcode, str) else None


def objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list field; anything else in it is ignored."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def make_post(
    post_id: str, url: Any, image_urls: Iterable[str], positions: Iterable[int] | None = None
) -> Post:
    """A ``Post`` whose URLs keep their order, each URL once (its first place);
    ``BadPost`` past ``MAX_POSITION`` of them, whatever the format."""
    link = url if isinstance(url, str) else None
    if positions is None:
        stripped = (image_url.strip() for image_url in image_urls)
        post = Post(post_id, link, list(dict.fromkeys(u for u in stripped if u)))
    else:
        places: dict[str, int] = {}
        for raw, place in zip(image_urls, positions, strict=True):
            if (image_url := raw.strip()) and image_url not in places:
                places[image_url] = place
        post = Post(post_id, link, list(places), positions=list(places.values()))
    if len(post.image_urls) > MAX_POSITION:
        raise BadPost(f"post {post_id}: more than {MAX_POSITION:,} images")
    return post
