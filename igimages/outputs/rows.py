"""A manifest line as rows: one per image, with its post, for tables and datasets.

``manifest.jsonl`` nests a post's images in its line; a table wants one flat
row per image. ``image_rows`` is that flattening, defined once: the store's
Parquet table and its image-folder metadata are made of these rows, and so is
anything else that reads a manifest image by image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

#: A row's fields, in order. ``similar`` is the image's near-duplicate group,
#: known only once every image of the run is (``igimages.similar``).
ROW_FIELDS = (
    "post_id",
    "post_url",
    "position",
    "url",
    "status",
    "path",
    "sha256",
    "bytes",
    "width",
    "height",
    "format",
    "phash",
    "similar",
    "duplicate_of",
    "reason",
    "http_status",
    "attempts",
    "detail",
)


def image_rows(
    post: Mapping[str, Any], similar: Mapping[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Each image of ``post`` (a manifest line: ``id``, ``url``, ``images``) as a row of
    ``ROW_FIELDS``; what does not apply to an image (a stored one's ``reason``) is None.

    ``similar`` maps a sha256 to its group (``similar_groups``' answer); without
    it, or for an image with no bytes (failed), ``similar`` is None.
    """
    groups = similar or {}
    for image in post["images"]:
        row = {name: image.get(name) for name in ROW_FIELDS}
        sha256 = row["sha256"]
        row.update(
            post_id=post["id"],
            post_url=post["url"],
            phash=row["phash"] or None,  # '' is unknown
            similar=groups.get(sha256) if sha256 else None,
        )
        yield row


def hash_pairs(rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    """The (sha256, phash) of each row with bytes: what ``similar_groups`` groups."""
    for row in rows:
        if row["sha256"]:
            yield row["sha256"], row["phash"] or ""


def grouped_rows(posts: Callable[[], Iterable[Mapping[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Every image's row, ``similar`` included, from manifest lines read twice: ``posts()``
    gives them anew each time (the first pass groups the run's images)."""
    from igimages.similar import similar_groups  # numpy: only for who reads rows

    groups = similar_groups(hash_pairs(row for post in posts() for row in image_rows(post)))
    for post in posts():
        yield from image_rows(post, groups)
