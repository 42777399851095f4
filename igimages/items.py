"""What flows from the spider through the pipeline into the feeds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: What became of an image, in the order the progress, the summary and the report list them.
DOWNLOADED, CACHED, DUPLICATE, FAILED = "downloaded", "cached", "duplicate", "failed"
STATUSES = (DOWNLOADED, CACHED, DUPLICATE, FAILED)
#: An image the crawl stopped before it was done: not failed, and never in a
#: feed (its post is left out, for a later run to complete).
INTERRUPTED = "interrupted"


def has_failures(images: Iterable[dict[str, Any]]) -> bool:
    """Whether any of a post's image results failed."""
    return any(image["status"] == FAILED for image in images)


@dataclass
class Post:
    """One post and, once the pipeline is done with it, one result per image.

    ``images`` holds, per URL in ``image_urls`` and in the same order:
    url, position, status (one of ``STATUSES``), path,
    sha256, bytes, width, height, format, and for a failure reason,
    http_status and attempts.
    """

    id: str
    url: str | None
    image_urls: list[str]
    images: list[dict[str, Any]] = field(default_factory=list)
    #: Each URL's place in the post when it is not its place in ``image_urls``:
    #: a retry from igimages' own feeds lists only some images of a post, and
    #: they must land where the first run put them.
    positions: list[int] | None = None
    #: Set when a resumed job had finished this post: ``images`` are its results.
    resumed: bool = False

    def position(self, index: int) -> int:
        """The 1-based position of ``image_urls[index]`` in the post."""
        return self.positions[index] if self.positions else index + 1
