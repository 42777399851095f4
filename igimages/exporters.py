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
from scrapy.crawler import Crawler
from scrapy.exporters import JsonLinesItemExporter
from scrapy.extensions.feedexport import FileFeedStorage, ItemFilter
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.misc import build_from_crawler, load_object
from twisted.internet.defer import maybeDeferred

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


class WholeFile:
    """A file beside the images (a folder, s3://, gs://), written through Scrapy's
    feed storages: like the feeds, it replaces the previous one only once stored."""

    def __init__(self, crawler: Crawler, uri: str) -> None:
        storages = crawler.settings.getwithbase("FEED_STORAGES")
        scheme = uri.partition("://")[0] if "://" in uri else ""
        storage_class = load_object(storages[scheme])
        self.storage = build_from_crawler(
            storage_class, crawler, uri, feed_options={"overwrite": True}
        )
        self.file = self.storage.open(crawler.spider)

    async def store(self) -> None:
        await maybe_deferred_to_future(maybeDeferred(self.storage.store, self.file))


async def store_whole(crawler: Crawler, uri: str, data: bytes) -> None:
    whole = WholeFile(crawler, uri)
    whole.file.write(data)
    await whole.store()


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
