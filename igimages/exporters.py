"""Feeds: how the manifest and the failure list reach the disk.

Scrapy exports items, and an item here is a post; ``FailuresExporter`` turns
each post into a line per failed image, so ``failures.jsonl`` can be read back
as the input of a retry run. ``AtomicFileFeedStorage`` makes a rewritten feed
appear whole, when the crawl ends, instead of growing under its final name.
"""

from __future__ import annotations

import logging
import os
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from scrapy import Spider
from scrapy.exporters import JsonLinesItemExporter
from scrapy.extensions.feedexport import FileFeedStorage, ItemFilter

from igimages.items import Post

FAILURE_FIELDS = ("url", "position", "reason", "http_status", "attempts", "detail")


class HasFailures(ItemFilter):
    """Feed item filter: only posts with at least one failed image."""

    def accepts(self, item: Any) -> bool:
        return isinstance(item, Post) and any(i["status"] == "failed" for i in item.images)


class FailuresExporter(JsonLinesItemExporter):
    def export_item(self, item: Post) -> None:
        for image in item.images:
            if image["status"] != "failed":
                continue
            line = {"post_id": item.id, "post_url": item.url}
            line.update((name, image.get(name)) for name in FAILURE_FIELDS)
            super().export_item(line)


class AtomicFileFeedStorage(FileFeedStorage):
    """A local feed that, when rewritten, replaces the old file only once done.

    A crash mid-run leaves the previous feed whole (and a ``.part`` file),
    never a file cut in the middle of a line. Appending feeds work as usual.
    """

    def open(self, spider: Spider) -> IO[bytes]:
        if self.write_mode != "wb":
            return super().open(spider)
        target = Path(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.part").open("wb")

    def store(self, file: IO[bytes]) -> None:
        try:
            file.close()
            if self.write_mode == "wb":
                os.replace(file.name, self.path)
        except OSError as exc:  # a full disk: the previous feed, if any, stays whole
            if self.write_mode == "wb":
                with suppress(OSError):
                    os.unlink(file.name)
            raise FeedNotStored(exc.strerror or str(exc)) from None


class FeedNotStored(OSError):
    """A feed that could not be written; Scrapy logs it in one line, not a traceback."""


class _OneLineFeedErrors(logging.Filter):
    """A feed that cannot be stored (full disk, bucket refusing) is one line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            reason = (str(exc) or type(exc).__name__).splitlines()[0]
            record.msg, record.args = f"{record.getMessage()}: {reason}", ()
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("scrapy.extensions.feedexport").addFilter(_OneLineFeedErrors())
