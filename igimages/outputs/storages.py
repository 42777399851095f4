"""How a feed (and the summary) reaches a folder or a bucket: whole or not at all.

The feed storages (``FileFeed``, Scrapy's with a check, and ``BucketFeed``,
through the image store's own bucket client) store a feed whole or not at
all: a rewritten local feed appears when the crawl ends, instead of growing
under its final name, and each output is named in the stats as written or
not, so the crawl's exit status says so.
"""

from __future__ import annotations

import glob
import io
import logging
import os
from contextlib import suppress
from pathlib import Path
from typing import IO, Any, Self

from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.extensions.feedexport import BlockingFeedStorage, FileFeedStorage
from scrapy.settings import BaseSettings
from scrapy.statscollectors import StatsCollector
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.misc import build_from_crawler, load_object
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.python.failure import Failure

from igimages.atomic import PART, publish, remove_orphans, temporary_name
from igimages.store import StoreUri, store_class

#: Stat: the URI of each output (feed, summary) written, in the order they were.
WRITTEN = "igimages/outputs/written"
#: Stat: "uri: reason" for each output (feed, summary) that could not be written.
UNWRITTEN = "igimages/outputs/unwritten"


class _CheckedFile:
    """A feed's file that remembers the first failed write (a full disk) instead of
    raising it again at every item; the feed is then not stored at all."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                return self.raw.write(data)
            except OSError as exc:
                self.error = exc
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class _Unopened(io.BytesIO):
    """Stands in for a feed's file that could not be created: takes nothing, stores nothing."""

    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error

    def write(self, data: Any) -> int:
        return len(data)


class CheckedStorage:
    """What igimages' feed storages add to Scrapy's: a feed is stored whole or not
    at all, and each one that could not be stored is named in the stat ``UNWRITTEN``
    (so the crawl ends with a non-zero exit status)."""

    uri = ""
    stats: StatsCollector | None = None

    @classmethod
    def from_crawler(
        cls, crawler: Crawler, uri: str, *, feed_options: dict[str, Any] | None = None
    ) -> Self:
        build = getattr(super(), "from_crawler", None)
        storage = build(crawler, uri, feed_options=feed_options) if build else None
        storage = storage or cls(uri, feed_options=feed_options)  # type: ignore[call-arg]
        storage.uri = uri
        with suppress(RuntimeError):  # a crawler that does not crawl (scrapy job merge)
            storage.stats = crawler.stats
        return storage

    def open(self, spider: Spider | None) -> IO[bytes]:
        try:
            return _CheckedFile(super().open(spider))  # type: ignore[misc]
        except OSError as exc:  # nothing to write into: the feed is reported unwritten
            return _Unopened(exc)

    def store(self, file: IO[bytes]) -> Deferred[None]:
        if isinstance(file, _Unopened):
            stored = fail(FeedNotStored(error_text(file.error)))
        elif isinstance(file, _CheckedFile) and file.error is not None:
            self.discard(file.raw)
            stored = fail(FeedNotStored(error_text(file.error)))
        else:
            raw = file.raw if isinstance(file, _CheckedFile) else file
            stored = maybeDeferred(super().store, raw)  # type: ignore[misc]
        return stored.addCallbacks(self._stored, self._not_stored)

    def discard(self, file: IO[bytes]) -> None:
        """Drop what was written, leaving whatever was stored before as it was."""
        if (discard := getattr(super(), "discard", None)) is not None:
            discard(file)
        else:
            with suppress(OSError):
                file.close()

    def _stored(self, result: Any) -> Any:
        if self.stats is not None:
            self.stats.set_value(WRITTEN, [*self.stats.get_value(WRITTEN, []), self.uri])
        return result

    def _not_stored(self, failure: Failure) -> Failure:
        if self.stats is not None:
            line = f"{self.uri}: {error_text(failure.value)}"
            self.stats.set_value(UNWRITTEN, [*self.stats.get_value(UNWRITTEN, []), line])
        return failure


class AtomicFileFeedStorage(FileFeedStorage):
    """A local feed that, when rewritten, replaces the old file only once done.

    A crash mid-run, a full disk or another crawl beside this one leaves the
    previous feed whole, never a file cut in the middle of a line: the new
    one is written under a name of this process's own, then renamed. Appending
    feeds work as usual.
    """

    def open(self, spider: Spider | None) -> IO[bytes]:
        if self.write_mode != "wb":
            return super().open(spider)
        target = Path(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(target.parent.glob(f"{glob.escape(f'.{target.name}.')}*{PART}"))
        return temporary_name(target).open("wb")

    def store(self, file: IO[bytes]) -> None:
        try:
            file.close()
            if self.write_mode == "wb":
                publish(file.name, self.path)
        except OSError as exc:
            self.discard(file)
            raise FeedNotStored(error_text(exc)) from None

    def discard(self, file: IO[bytes]) -> None:
        with suppress(OSError):
            file.close()
        if self.write_mode == "wb" and str(file.name).endswith(PART):  # this crawl's own
            with suppress(OSError):
                os.unlink(file.name)


class FileFeed(CheckedStorage, AtomicFileFeedStorage):
    """``FEED_STORAGES`` for a path or ``file://``."""


class BucketFeedStorage(BlockingFeedStorage):
    """A feed in a bucket, uploaded once complete (a PUT is atomic), by the same
    client and credentials as the images (the ``open_bucket`` of the store class
    ``IGIMAGES_STORES`` names for the scheme)."""

    def __init__(self, uri: str, settings: BaseSettings) -> None:
        target = StoreUri.parse(uri)
        self.key = target.prefix.rstrip("/")
        self.bucket = store_class(target, settings).open_bucket(target, settings)

    @classmethod
    def from_crawler(
        cls, crawler: Crawler, uri: str, *, feed_options: dict[str, Any] | None = None
    ) -> Self:
        return cls(uri, crawler.settings)

    def _store_in_thread(self, file: IO[bytes]) -> None:
        try:
            file.seek(0)
            self.bucket.put(self.key, file.read(), {}, "")
        finally:
            file.close()
            self.bucket.close()


class BucketFeed(CheckedStorage, BucketFeedStorage):
    """``FEED_STORAGES`` for ``s3://``, ``gs://`` and ``az://``."""


def spoil(file: IO[bytes], error: OSError) -> None:
    """An exporter could not make its feed (its spool failed): the feed's storage then
    stores nothing, leaving the previous one whole, and names it unwritten."""
    if isinstance(file, _CheckedFile):
        file.error = file.error or error
    elif not isinstance(file, _Unopened):  # not igimages' storage: Scrapy logs it
        raise error


def error_text(exc: BaseException) -> str:
    """An error in one line, as a user reads it."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0]


class WholeFile:
    """A file beside the images (a folder or a bucket), written through the feed
    storages: like the feeds, it replaces the previous one only once stored."""

    def __init__(self, crawler: Crawler, uri: str) -> None:
        storages = crawler.settings.getwithbase("FEED_STORAGES")
        storage_class = load_object(storages[StoreUri.parse(uri).scheme])
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
            record.msg, record.args = f"{record.getMessage()}: {error_text(exc)}", ()
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("scrapy.extensions.feedexport").addFilter(_OneLineFeedErrors())
