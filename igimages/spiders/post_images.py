"""The ``post_images`` spider: one item per post of a posts input."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Self

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider
from scrapy.settings import BaseSettings
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred

from igimages.inputs import InputSpec, PostsFileError, PostSource, Skipped, Survey
from igimages.items import Post
from igimages.job import WORKER, is_job, job_worker
from igimages.store import store_file

logger = logging.getLogger(__name__)


class PostImagesSpider(Spider):
    """Read ``-a posts=PATH`` and hand each post to the image pipeline.

    The input's format is detected, or given with ``-a format=NAME`` or the
    field arguments (``igimages.inputs``); a worker of a job (``REDIS_URL``)
    takes them from the job's queue. Posts are yielded from ``start()``
    and never requested: the pipeline does the downloading. Scrapy drains
    ``start()`` as fast as it yields, so the spider waits while
    ``IGIMAGES_POSTS_IN_FLIGHT`` posts are still in the pipeline; memory then
    depends on that number, not on the input's size.
    """

    name = "post_images"

    def __init__(
        self, source: PostSource | None = None, survey: Survey | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.survey = survey  # from ``scrapy crawl``, which reads the input first
        self._in_flight = 0
        self._slot_freed: Deferred[None] | None = None

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        if is_job(settings):
            # A worker of a job: its feeds and summary are the job's, written
            # when it ends. (Only then is the worker's extension, and Redis's
            # client, loaded.)
            extensions = {**settings.getdict("EXTENSIONS"), WORKER: 500}
            settings.set("EXTENSIONS", extensions, priority="spider")
            settings.set("IGIMAGES_STORE_LOCK", "shared", priority="spider")
            return
        store = settings["IMAGES_STORE"]
        if not settings.getdict("FEEDS"):
            settings.set("FEEDS", default_feeds(store), priority="spider")
        if not settings.get("IGIMAGES_SUMMARY_FILE"):
            settings.set("IGIMAGES_SUMMARY_FILE", store_file(store, "summary.json"), "spider")

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        if kwargs.get("source") is None and not is_job(crawler.settings):
            # ``scrapy crawl`` opens it first, to fail early.
            kwargs["source"] = PostSource(InputSpec.from_args(kwargs))
        spider = super().from_crawler(crawler, *args, **kwargs)
        for signal in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(spider._post_done, signal=signal)
        return spider

    async def start(self) -> AsyncIterator[Post]:
        settings = self.settings
        limit = settings.getint("IGIMAGES_POSTS_IN_FLIGHT") or max(
            1, settings.getint("CONCURRENT_REQUESTS")
        )
        if self.source is None:  # a worker of a job
            posts = job_worker(self.crawler).posts(lambda: limit - self._in_flight)
        else:
            posts = self._input_posts(settings.getint("IGIMAGES_MAX_IMAGES_PER_POST"))
        async for post in posts:
            while self._in_flight >= limit:
                self._slot_freed = Deferred()
                await maybe_deferred_to_future(self._slot_freed)
            self._in_flight += 1
            yield post

    async def _input_posts(self, max_images: int) -> AsyncIterator[Post]:
        """The posts of the input; bad ones are counted and reported, not yielded."""
        assert self.source is not None
        stats = self.crawler.stats
        if self.survey is not None:
            stats.set_value("igimages/posts/total", self.survey.posts)
            stats.set_value("igimages/images/total", self.survey.images)
        logger.info("Reading %s", self.source.describe())
        try:
            for post in self.source.entries(max_images):
                if isinstance(post, Skipped):
                    stats.inc_value(f"igimages/posts/{post.kind}")
                    logger.log(logging.WARNING if post.kind == "bad" else logging.DEBUG, "%s", post)
                    continue
                yield post
        except PostsFileError as exc:
            logger.error("%s", exc)
            stats.set_value("igimages/input_error", str(exc))
            raise CloseSpider("bad_input") from None
        if repeats := stats.get_value("igimages/posts/duplicate_input"):
            logger.info(
                "%d posts were in %s more than once (same id): each was processed once",
                repeats,
                self.source.name,
            )

    def _post_done(self, item: Any, **kwargs: Any) -> None:
        if not isinstance(item, Post):
            return
        self._in_flight -= 1
        if self._slot_freed is not None:
            freed, self._slot_freed = self._slot_freed, None
            freed.callback(None)


def default_feeds(store: str) -> dict[str, dict[str, Any]]:
    """The manifest and the failure feed, beside the images (in a bucket too)."""
    return {
        store_file(store, "manifest.jsonl"): {
            "format": "jsonlines",
            "overwrite": True,
            "fields": ["id", "url", "images"],
        },
        store_file(store, "failures.jsonl"): {
            "format": "failures",
            "overwrite": True,
            "item_filter": "igimages.exporters.HasFailures",
        },
    }
