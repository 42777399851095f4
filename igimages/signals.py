"""Signals of igimages' own, sent through the crawler's signal manager."""

from __future__ import annotations

from scrapy.crawler import Crawler
from scrapy.utils.defer import deferred_from_coro

#: Sent when the crawl must stop sending requests at once, e.g. the image
#: folder cannot be written: waiting downloads are dropped.
stop_downloads = object()

#: Sent (with ``slot`` and ``seconds``) when a host answered 429 with a
#: ``Retry-After`` and the gate holds its requests for that long.
host_paused = object()

#: Sent each time the progress line is made; a receiver may return more of it
#: (a worker of a job: the whole job's progress), said after the crawl's own.
progress_asked = object()


def stop_crawl(crawler: Crawler, reason: str) -> None:
    """Stop the crawl at once: waiting downloads dropped, the spider closed with ``reason``.

    For what makes going on pointless (a store that cannot be written, a job's
    Redis gone); the caller has said why, in one line.
    """
    crawler.signals.send_catch_log(stop_downloads)
    engine = crawler.engine
    if engine is not None and engine.spider is not None:
        deferred_from_coro(engine.close_spider_async(reason=reason))
