"""igimages' own feeds read back as input: a retry, or a run over a past run.

``failures.jsonl`` has one line per failed image, a post's lines together:
they become one post with just those images. ``manifest.jsonl`` has one line
per post with every image. Either way each image keeps the ``position`` it
had, so it is stored, or found stored, where the first run put it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from igimages.inputs.base import Format, Found, PerValue
from igimages.inputs.post import (
    MAX_POSITION,
    BadPost,
    make_post,
    objects,
    post_id,
    require_object,
)
from igimages.inputs.reader import Located
from igimages.items import Post


def _image(value: dict[str, Any], owner: str) -> tuple[str, int]:
    url, position = value.get("url"), value.get("position")
    if not isinstance(url, str):
        raise BadPost(f'post {owner}: an image has no "url" string')
    if isinstance(position, bool) or not isinstance(position, int):
        raise BadPost(f'post {owner}: image {url} has no "position" (a number from 1)')
    if not 1 <= position <= MAX_POSITION:
        raise BadPost(f'post {owner}: image {url} has a "position" outside 1 to {MAX_POSITION:,}')
    return url, position


class Manifest(PerValue):
    name = "manifest"

    def looks_like(self, value: Any) -> bool:
        if not isinstance(value, dict) or not isinstance(value.get("images"), list):
            return False
        images = value["images"]
        if images:
            return isinstance(images[0], dict) and "position" in images[0]
        return set(value) <= {"id", "url", "images"}

    def to_post(self, value: Any) -> Post:
        value = require_object(value)
        owner = post_id(value.get("id"), "id")
        images = [_image(image, owner) for image in objects(value.get("images"))]
        return make_post(owner, value.get("url"), *_unzip(images))


class Failures(Format):
    name = "failures"

    def looks_like(self, value: Any) -> bool:
        return isinstance(value, dict) and "post_id" in value and "reason" in value

    def posts(self, values: Iterable[Located]) -> Iterator[Found]:
        post: _Retry | None = None
        for located in values:
            try:
                value = require_object(located.value)
                owner = post_id(value.get("post_id"), "post_id")
                image = _image(value, owner)
            except BadPost as exc:
                yield located, exc
                continue
            if post is None or post.id != owner:
                if post is not None:
                    yield post.found()
                post = _Retry(located, owner, value.get("post_url"))
            post.images.append(image)
        if post is not None:
            yield post.found()


@dataclass(slots=True)
class _Retry:
    """The failed images of one post, from its consecutive lines."""

    first: Located
    id: str
    url: Any
    images: list[tuple[str, int]] = field(default_factory=list)

    def found(self) -> Found:
        try:
            return self.first, make_post(self.id, self.url, *_unzip(self.images))
        except BadPost as exc:
            return self.first, exc


def _unzip(images: list[tuple[str, int]]) -> tuple[list[str], list[int]]:
    return [url for url, _ in images], [position for _, position in images]
