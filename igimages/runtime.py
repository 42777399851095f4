"""How the crawl runs: a prompt end to it, and a cheaper interpreter."""

from __future__ import annotations

import gc
import logging
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.utils.asyncio import call_later

from igimages import compat


class PromptClose:
    """End the crawl as soon as its last post is done, and let a stop finish.

    Posts enter the pipeline from ``start()``, not from responses, and Scrapy
    only re-checks for idleness (every 5 s) or for a finished stop (never)
    after responses. After each post this asks for both checks at once.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        extension = cls(crawler)
        for signal in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(extension.post_done, signal=signal)
        return extension

    def post_done(self, **kwargs: Any) -> None:
        call_later(0, self.check)

    def check(self, turns_left: int = 10) -> None:
        engine = self.crawler.engine
        if not compat.engine_open(engine):
            return
        if not engine.scraper.slot.is_idle():
            # The signal comes before the scraper stops counting the posts
            # that sent it; when nothing is downloading any more, these may be
            # the last ones: look again shortly.
            if not engine.downloader.active and turns_left:
                call_later(0.01, self.check, turns_left - 1)
            return
        compat.look_again(engine)


class RuntimeTuning:
    """Two interpreter defaults that cost a crawl about a tenth of its CPU.

    * Scrapy drops log records below ``LOG_LEVEL`` at its handler, after they
      are built: one or two per image at DEBUG (the engine's "Crawled",
      Pillow's PNG chunks). The loggers' own levels are set to ``LOG_LEVEL``
      too, so they are not built at all.
    * Each image allocates thousands of short-lived objects; at the default
      thresholds Python's cycle collector ran every 700 of them and walked the
      modules and components built at start-up each time. Those are frozen
      out of its reach, and it runs 30 times less often.
    """

    def __init__(self, log_level: str) -> None:
        self.log_level = log_level

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        extension = cls(crawler.settings.get("LOG_LEVEL"))
        crawler.signals.connect(extension.engine_started, signal=signals.engine_started)
        return extension

    def engine_started(self) -> None:
        # Scrapy sets both to let everything through as the crawl starts.
        for name in ("", "scrapy"):
            logging.getLogger(name).setLevel(self.log_level)
        gc.freeze()
        gc.set_threshold(20_000, 20, 100)
