"""Posts as Instagram's own answers hold them, saved untouched by a scraper.

A value may be one post, a GraphQL edge ``{"node": post}``, or a whole
response that holds posts somewhere inside: ``{"data": {"user":
{"edge_owner_to_timeline_media": {"edges": [...]}}}}``, a feed page
``{"items": [...]}``. A format of this kind says what one of its posts looks
like; the rest, finding the posts in a response, is done here, the same way
for all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from igimages.inputs.base import Found, PerValue
from igimages.inputs.reader import Located

#: The keys under which a response lists posts: GraphQL's connections, v1's feeds.
LISTS = ("edges", "items")
#: How many objects down a response is searched for posts: three reaches
#: ``data.user.edge_owner_to_timeline_media.edges``. Lists other than
#: ``LISTS`` and the posts themselves are never searched.
DEPTH = 3


class Responses(PerValue):
    """A format whose values are posts, edges, or responses holding any number of posts."""

    def is_post(self, value: dict[str, Any]) -> bool:
        """Whether ``value`` is one post of this format (not a response holding some)."""
        raise NotImplementedError

    def looks_like(self, value: Any) -> bool:
        return bool(self.posts_in(value))

    def posts(self, values: Iterable[Located]) -> Iterator[Found]:
        return super().posts(self._each_post(values))

    def _each_post(self, values: Iterable[Located]) -> Iterator[Located]:
        """Each post of each value, where its value starts, numbered in the input's order
        (so "post #N" counts posts, not values, once a response holds several)."""
        number = 0
        for located in values:
            found = self.posts_in(located.value)
            for value in [located.value] if found is None else found:
                number += 1
                yield replace(located, value=value, index=number)

    def posts_in(self, value: Any, depth: int = DEPTH) -> list[Any] | None:
        """The posts ``value`` is or holds; None if it holds neither a post nor a list
        of them. A list counts if it is empty or holds a post: its other items are
        then bad posts, to be counted; lists of anything else (an account's
        followers) are passed over."""
        if not isinstance(value, dict):
            return None
        if self.is_post(value):
            return [value]
        found: list[Any] | None = None
        for key, child in value.items():
            if key in LISTS and isinstance(child, list):
                items = [_node(item) for item in child]
                if not items or any(isinstance(i, dict) and self.is_post(i) for i in items):
                    found = (found or []) + items
            elif depth and isinstance(child, dict):
                inner = self.posts_in(child, depth - 1)
                if inner is not None:
                    found = (found or []) + inner
        return found


def _node(value: Any) -> Any:
    """The node of a GraphQL edge ``{"node": {...}, "cursor": ...}``; anything else as it is."""
    if isinstance(value, dict) and isinstance(value.get("node"), dict):
        return value["node"]
    return value
