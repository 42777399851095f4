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

from igimages.inputs import InputSpec, PostsFileError, PostSource, Shard, Skipped, Survey
from igimages.items import Post
from igimages.store import store_file

logger = logging.getLogger(__name__)


class PostImagesSpider(Spider):
    """Read ``-a posts=PATH`` and hand each post to the image pipeline.

    The input's format is detected, or given with ``-a format=NAME`` or the
    field arguments (``igimages.inputs``). Posts are yielded from ``start()``
    and never requested: the pipeline does the downloading. Scrapy drains
    ``start()`` as fast as it yields, so the spider waits while
    ``IGIMAGES_POSTS_IN_FLIGHT`` posts are still in the pipeline; memory then
    depends on that number, not on the input's size.
    """

    name = "post_images"

    def __init__(self, source: PostSource, survey: Survey | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.survey = survey  # from ``scrapy crawl``, which reads the input first
        self._in_flight = 0
        self._slot_freed: Deferred[None] | None = None

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        shard = Shard.from_setting(settings.get("IGIMAGES_SHARD"))
        suffix = f"-{shard}" if shard else ""
        store = settings["IMAGES_STORE"]
        if not settings.getdict("FEEDS"):
            settings.set("FEEDS", default_feeds(store, suffix), priority="spider")
        if not settings.get("IGIMAGES_SUMMARY_FILE"):
            summary = store_file(store, f"summary{suffix}.json")
            settings.set("IGIMAGES_SUMMARY_FILE", summary, "spider")

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        if kwargs.get("source") is None:  # ``scrapy crawl`` opens it first, to fail early
            shard = Shard.from_setting(crawler.settings.get("IGIMAGES_SHARD"))
            kwargs["source"] = PostSource(InputSpec.from_args(kwargs), shard)
        spider = super().from_crawler(crawler, *args, **kwargs)
        for signal in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(spider._post_done, signal=signal)
        return spider

    async def start(self) -> AsyncIterator[Post]:
        settings = self.settings
        max_images = settings.getint("IGIMAGES_MAX_IMAGES_PER_POST")
        limit = settings.getint("IGIMAGES_POSTS_IN_FLIGHT") or max(
            1, settings.getint("CONCURRENT_REQUESTS")
        )
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
                while self._in_flight >= limit:
                    self._slot_freed = Deferred()
                    await maybe_deferred_to_future(self._slot_freed)
                self._in_flight += 1
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


def default_feeds(store: str, suffix: str = "") -> dict[str, dict[str, Any]]:
    """The manifest and the failure feed, beside the images (in a bucket too)."""
    return {
        store_file(store, f"manifest{suffix}.jsonl"): {
            "format": "jsonlines",
            "overwrite": True,
            "fields": ["id", "url", "images"],
        },
        store_file(store, f"failures{suffix}.jsonl"): {
            "format": "failures",
            "overwrite": True,
            "item_filter": "igimages.exporters.HasFailures",
        },
    }
