"""The ``post_images`` spider: one item per post, handed to the image pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Self

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.misc import build_from_crawler, load_object
from twisted.internet.defer import Deferred

from igimages.items import Post


class PostImagesSpider(Spider):
    """Yield each post of ``IGIMAGES_POSTS`` (``-a posts=PATH``, or a job's queue).

    Posts are yielded from ``start()`` and never requested: the pipeline does
    the downloading. Scrapy drains ``start()`` as fast as it yields, so the
    spider waits while ``IGIMAGES_POSTS_IN_FLIGHT`` posts are still in the
    pipeline; memory then depends on that number, not on the input's size.
    """

    name = "post_images"

    def __init__(self, **kwargs: Any) -> None:
        # Its arguments (``-a``, and what ``IGIMAGES_POSTS``'s ``prepare`` gave) become
        # its attributes, as in any spider, for ``IGIMAGES_POSTS`` to read.
        super().__init__(**kwargs)
        self._in_flight = 0
        self._slot_freed: Deferred[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        for signal in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(spider._post_done, signal=signal)
        return spider

    async def start(self) -> AsyncIterator[Post]:
        settings = self.settings
        limit = settings.getint("IGIMAGES_POSTS_IN_FLIGHT") or max(
            1, settings.getint("CONCURRENT_REQUESTS")
        )
        origin = build_from_crawler(load_object(settings["IGIMAGES_POSTS"]), self.crawler)
        async for post in origin.posts(lambda: limit - self._in_flight):
            while self._in_flight >= limit:
                self._slot_freed = Deferred()
                await maybe_deferred_to_future(self._slot_freed)
            self._in_flight += 1
            yield post

    def _post_done(self, item: Any, **kwargs: Any) -> None:
        if not isinstance(item, Post):
            return
        self._in_flight -= 1
        if self._slot_freed is not None:
            freed, self._slot_freed = self._slot_freed, None
            freed.callback(None)
