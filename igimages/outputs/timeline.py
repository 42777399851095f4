"""What the crawl did over time, sampled as it goes, for the report's charts.

``RunTimeline`` records, every so often, the images done so far by status,
the downloads in flight and the busiest host's limit. The record is the stat
``igimages/timeline``, so the summary written at the end (``summary.json``,
through the feed storages, to a folder or a bucket) carries it without
another file. It stays small for any length of run: at most
``IGIMAGES_TIMELINE_POINTS`` points; when full, every other point is dropped
and the interval doubled, so the points stay evenly spaced.
"""

from __future__ import annotations

import time
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call

from igimages.fetch.gate import DownloadGateMiddleware
from igimages.fetch.limits import GateView
from igimages.items import STATUSES

STAT = "igimages/timeline"
#: What each point holds, in order; counts are cumulative since the start.
COLUMNS = ("seconds", *STATUSES, "in_flight", "host_limit")
FIRST_INTERVAL = 0.25  # seconds between points while the run is short


class RunTimeline:
    """Sample the crawl's counts into the stat ``igimages/timeline``.

    Its order in ``EXTENSIONS`` is below ``ImageProgress``'s, so it is told
    of the spider's close first and the summary has the last point.
    """

    def __init__(self, crawler: Crawler, max_points: int) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.max_points = max_points
        self.interval = FIRST_INTERVAL
        self.points: list[list[Any]] = []
        self.started = time.monotonic()
        self.due = 0.0
        self.gate: GateView | None = None
        self.busiest = ""  # the host with most in flight at the last point that had one
        self.task: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        max_points = crawler.settings.getint("IGIMAGES_TIMELINE_POINTS")
        if max_points < 4:
            raise NotConfigured
        extension = cls(crawler, max_points)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self) -> None:
        self.started = time.monotonic()
        self.gate = self.crawler.get_downloader_middleware(DownloadGateMiddleware)
        record = {"columns": list(COLUMNS), "interval": self.interval, "points": self.points}
        self.stats.set_value(STAT, record)
        self.sample()  # the start, so even a run shorter than the interval has a span
        self.task = create_looping_call(self.tick)
        self.task.start(FIRST_INTERVAL, now=False)

    def tick(self) -> None:
        # Half a tick early counts as due: the ticks drift by a few milliseconds.
        if time.monotonic() - self.started >= self.due - FIRST_INTERVAL / 2:
            self.sample()

    def sample(self) -> None:
        elapsed = time.monotonic() - self.started
        counts = [self.stats.get_value(f"igimages/images/{status}", 0) for status in STATUSES]
        in_flight, limit = 0, None
        if self.gate is not None:
            in_flight = self.gate.in_flight
            if (busiest := self.gate.busiest()) is not None:
                self.busiest = busiest[0]
            if self.busiest:  # between downloads too: the limit holds until the next
                limit = self.gate.limit(self.busiest)
                limit = limit if limit != float("inf") else None
        self.points.append([round(elapsed, 3), *counts, in_flight, limit and round(limit, 1)])
        if len(self.points) >= self.max_points:
            self.points[:] = self.points[::2]
            self.interval *= 2
            self.stats.get_value(STAT)["interval"] = self.interval
        self.due = self.points[-1][0] + self.interval

    def spider_closed(self) -> None:
        if self.task is not None and self.task.running:
            self.task.stop()
        self.sample()  # the end: the summary's counts
