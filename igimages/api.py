"""igimages from Python: ``igimages.download(posts, store, **options)``.

The same crawl as ``scrapy crawl post_images`` (spider, pipeline, settings,
exit statuses, ``igimages.launch``), run in this process as often as needed:
each call runs Scrapy without Twisted's reactor, which cannot be restarted,
on an asyncio loop of its own in a thread of its own, so it works the same
from a script and from a notebook whose own loop is already running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scrapy.crawler import AsyncCrawlerRunner, Crawler
from scrapy.settings import Settings
from scrapy.utils.misc import load_object

from igimages.errors import OneLineError
from igimages.items import STATUSES
from igimages.launch import (
    EXIT_BAD_INPUT,
    EXIT_STOPPED,
    CrawlNotRun,
    after_crawl,
    exit_status,
    prepare,
    stop_message,
    why_not_started,
)
from igimages.outputs.feeds import FAILURES, MANIFEST
from igimages.outputs.storages import UNWRITTEN
from igimages.redact import install
from igimages.spiders.post_images import PostImagesSpider
from igimages.store import FOLDER, StoreUri, store_class

#: Keyword options that are the spider's arguments (``-a``), not settings.
SPIDER_ARGUMENTS = ("format", "id_field", "image_fields", "url_field")

logger = logging.getLogger(__name__)

PostsInput = str | os.PathLike[str] | Iterable[Mapping[str, Any]]


class DownloadError(OneLineError):
    """The crawl could not run, or was stopped: ``str()`` is the line ``scrapy crawl``
    prints after ``error:``, ``exit_status`` the status it exits with (1 or 2)."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


@dataclass(frozen=True)
class Result:
    """What a finished crawl did: its counts and exit status, and where its feeds are.

    ``exit_status`` is 0 (every image stored), 3 (some images failed: see
    ``failures()``) or 4 (an output could not be written: ``unwritten``).
    """

    exit_status: int
    store: str
    counts: dict[str, int]
    feeds: dict[str, str]  # "manifest.jsonl" -> where it is (a path or a bucket URI)
    unwritten: list[str]
    stats: dict[str, Any] = field(repr=False)
    settings: Settings = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def posts(self) -> Iterator[dict[str, Any]]:
        """The manifest's lines, one per post with its images, read as iterated."""
        yield from _json_lines(self._feed(MANIFEST))

    def images(self) -> Iterator[dict[str, Any]]:
        """One row per image (failed ones too): the post's ``post_id`` and ``post_url``
        with the image's own fields, read as iterated."""
        for post in self.posts():
            for image in post["images"]:
                yield {"post_id": post["id"], "post_url": post["url"], **image}

    def failures(self) -> list[dict[str, Any]]:
        """The failure feed's lines: one per failed image, with its reason."""
        return list(_json_lines(self._feed(FAILURES)))

    def _feed(self, name: str) -> Iterable[bytes]:
        if name not in self.feeds:
            raise DownloadError(f"{name} was not written by this crawl", EXIT_STOPPED)
        return _read_lines(self.feeds[name], self.settings)


def download(
    posts: PostsInput,
    store: str | os.PathLike[str],
    *,
    settings: Mapping[str, Any] | None = None,
    **options: Any,
) -> Result:
    """Download every image of ``posts`` into ``store``, as ``scrapy crawl`` does.

    ``posts`` is a posts file (any format ``scrapy crawl`` reads) or the posts
    themselves, as dicts. ``options`` are spider arguments (``format``,
    ``id_field``, ``image_fields``, ``url_field``) or settings in lower case,
    with or without their ``igimages_`` prefix (``concurrent_requests=64``,
    ``report=True`` for ``IGIMAGES_REPORT``); ``settings`` takes any setting
    by its own name. Raises ``DownloadError`` when the crawl cannot run or is
    stopped, ``KeyboardInterrupt`` once a Ctrl-C has stopped it cleanly.
    """
    values = _settings(store, settings or {}, options)
    arguments = {name: str(options[name]) for name in SPIDER_ARGUMENTS if name in options}
    install(values)  # no secret of these settings is ever logged
    with _posts_file(posts) as path:
        arguments["posts"] = path
        try:
            prepared = prepare(values, arguments)
        except CrawlNotRun as exc:
            raise DownloadError(str(exc), exc.exit_status) from None
        with _logging(values):
            crawler, error = _crawl_in_thread(values, {**arguments, **prepared})
    stats = crawler.stats.get_stats() if crawler.stats else {}
    if error is not None:
        raise DownloadError(why_not_started(error), EXIT_STOPPED)
    status = exit_status(stats)
    if status in (EXIT_STOPPED, EXIT_BAD_INPUT):
        raise DownloadError(stop_message(stats), status)
    status = after_crawl(values, stats, status)
    return _result(crawler.settings, stats, status)  # with the add-ons' FEEDS


def _settings(
    store: str | os.PathLike[str], given: Mapping[str, Any], options: Mapping[str, Any]
) -> Settings:
    values = Settings()
    values.setmodule("igimages.settings", priority="project")
    values.set("TWISTED_REACTOR_ENABLED", False, priority="cmdline")
    values.setdict(dict(given), priority="cmdline")
    for option, value in options.items():
        if option not in SPIDER_ARGUMENTS:
            values.set(_setting_name(option, values), value, priority="cmdline")
    values.set("IMAGES_STORE", os.fspath(store), priority="cmdline")
    return values


def _setting_name(option: str, known: Settings) -> str:
    for name in (option.upper(), f"IGIMAGES_{option.upper()}"):
        if name in known:
            return name
    raise TypeError(
        f"download() got an unknown option {option!r}: give a setting in lower case "
        f"(concurrent_requests=64, report=True) or settings={{{option.upper()!r}: ...}}"
    )


@contextmanager
def _posts_file(posts: PostsInput) -> Iterator[str]:
    """A path to read the posts from: the file given, or the posts given, as JSON Lines."""
    if isinstance(posts, str | os.PathLike):
        yield os.fspath(posts)
        return
    with tempfile.TemporaryDirectory(prefix="igimages-posts-") as folder:
        path = Path(folder, "posts.jsonl")
        with path.open("w", encoding="utf-8") as file:
            for post in posts:
                file.write(json.dumps(post, ensure_ascii=False) + "\n")
        yield str(path)


def _crawl_in_thread(
    values: Settings, arguments: dict[str, Any]
) -> tuple[Crawler, BaseException | None]:
    """Run the crawl on a loop of its own, in a thread of its own, and wait for it.

    A thread, because a notebook's loop is already running in this one. The
    first Ctrl-C asks the crawl to stop as ``scrapy crawl``'s does (downloads in
    flight finish, the feeds are closed valid), then is raised; a second one
    is raised at once.
    """
    runner = AsyncCrawlerRunner(values)
    crawler = runner.create_crawler(PostImagesSpider)
    loop_class = values.get("ASYNCIO_EVENT_LOOP")
    loop = load_object(loop_class)() if loop_class else asyncio.new_event_loop()
    outcome: list[BaseException | None] = []
    finished = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.crawl(crawler, **arguments))
            outcome.append(None)
        except BaseException as exc:  # what stopped it from starting, said by the caller
            outcome.append(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            finished.set()

    thread = threading.Thread(target=run, name="igimages-crawl", daemon=True)
    thread.start()
    interrupted = False
    # Waited for on an event, not with join(): a join that Ctrl-C interrupts can
    # take the thread for finished when it is not (Python before 3.13).
    while not finished.is_set():
        try:
            finished.wait(0.1)
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
            logger.info("Interrupted: stopping once the downloads in flight end (again: at once)")
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(crawler.stop_async()))
    if interrupted:
        raise KeyboardInterrupt
    return crawler, outcome[0]


@contextmanager
def _logging(values: Settings) -> Iterator[None]:
    """The crawl's log, as ``scrapy crawl`` shows it, unless the program set up its own."""
    root = logging.getLogger()
    level = root.level
    handler = None
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(values["LOG_FORMAT"], values["LOG_DATEFORMAT"]))
        handler.setLevel(values["LOG_LEVEL"])
        root.addHandler(handler)
    try:
        yield
    finally:
        if handler is not None:
            root.removeHandler(handler)
        root.setLevel(level)  # the crawl sets it to LOG_LEVEL (igimages.runtime)


def _result(values: Settings, stats: dict[str, Any], status: int) -> Result:
    unwritten = list(stats.get(UNWRITTEN, []))
    feeds = {}
    for where in [*values.getdict("FEEDS"), values["IGIMAGES_SUMMARY_FILE"]]:
        if where and not any(line.startswith(f"{where}: ") for line in unwritten):
            feeds[where.rstrip("/").rpartition("/")[2]] = where
    counts = {name: stats.get(f"igimages/images/{name}", 0) for name in STATUSES}
    store = StoreUri.from_settings(values).given
    return Result(status, store, counts, feeds, unwritten, stats, values)


def _read_lines(where: str, values: Settings) -> Iterable[bytes]:
    uri = StoreUri.parse(where)
    if uri.scheme == FOLDER:
        with open(uri.location, "rb") as file:
            yield from file
        return
    store = StoreUri.from_settings(values)
    bucket = store_class(store, values).open_bucket(store, values)
    try:
        yield from bucket.get(uri.prefix.rstrip("/")).splitlines()
    finally:
        bucket.close()


def _json_lines(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.strip():
            yield json.loads(line)
