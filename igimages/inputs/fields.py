"""Any other shape of post, through field paths given on the command line.

``-a id_field=PATH -a image_fields=PATH[,PATH...] [-a url_field=PATH]``, each
PATH dotted (``media.images``). A list met on the way spreads the rest of
the path over its items (``carousel.src`` is every item's ``src``), a number
picks one item (``carousel.0.src``), and a list at the end gives all it holds.
"""

from __future__ import annotations

from typing import Any

from igimages.inputs.base import PerValue
from igimages.inputs.post import BadPost, make_post, post_id, require_object
from igimages.items import Post


def resolve(value: Any, path: str) -> list[Any]:
    """Every value found at ``path`` in ``value``, lists at the end spread out."""
    found = [value]
    for part in path.split("."):
        reached = []
        for item in found:
            if isinstance(item, dict):
                if part in item:
                    reached.append(item[part])
            elif isinstance(item, list):
                if part.isdigit():
                    if int(part) < len(item):
                        reached.append(item[int(part)])
                else:
                    reached += [x[part] for x in _spread(item) if isinstance(x, dict) and part in x]
        found = reached
    return _spread(found)


def _spread(items: list[Any]) -> list[Any]:
    """The items of ``items``, nested lists opened up."""
    out: list[Any] = []
    for item in items:
        out += _spread(item) if isinstance(item, list) else [item]
    return out


class Fields(PerValue):
    """Posts read through field paths; never detected, always asked for."""

    name = "fields"

    def __init__(self, id_field: str, image_fields: list[str], url_field: str | None) -> None:
        self.id_field = id_field
        self.image_fields = image_fields
        self.url_field = url_field

    def looks_like(self, value: Any) -> bool:
        return False

    def to_post(self, value: Any) -> Post:
        value = require_object(value)
        ids = resolve(value, self.id_field)
        owner = post_id(ids[0] if ids else None, self.id_field)
        urls: list[str] = []
        for path in self.image_fields:
            found = resolve(value, path)
            if not all(isinstance(url, str) for url in found):
                raise BadPost(f'post {owner}: "{path}" must lead to URL strings')
            urls += found
        links = resolve(value, self.url_field) if self.url_field else []
        return make_post(owner, links[0] if links else None, urls)
