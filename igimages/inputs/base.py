"""What a posts format is: something that turns input values into posts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from igimages.inputs.post import BadPost
from igimages.inputs.reader import Located
from igimages.items import Post

#: A post, or why the value at that place is not one.
Found = tuple[Located, Post | BadPost]


class Format:
    """One kind of posts input, named for ``-a format=NAME``."""

    name = ""

    def looks_like(self, value: Any) -> bool:
        """Whether ``value`` is unmistakably of this format (for detection)."""
        raise NotImplementedError

    def posts(self, values: Iterable[Located]) -> Iterator[Found]:
        raise NotImplementedError


class PerValue(Format):
    """A format where each value is one post (most of them)."""

    def to_post(self, value: Any) -> Post | None:
        """The post in ``value``; ``None`` for a value that is not meant as a post."""
        raise NotImplementedError

    def posts(self, values: Iterable[Located]) -> Iterator[Found]:
        for located in values:
            try:
                post = self.to_post(located.value)
            except BadPost as exc:
                yield located, exc
                continue
            if post is not None:
                yield located, post
