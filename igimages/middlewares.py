"""Make the concurrency settings hold for image downloads.

Media pipelines send their requests straight to the downloader, so Scrapy's
``CONCURRENT_REQUESTS`` never applies to them, and under the asyncio reactor
its per-slot limit lets bursts through. ``ConcurrencyGateMiddleware`` sits
last before the download handlers and lets a request through only while both
limits have room: overall, and for the request's download slot (its host).
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any, Self

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred


class DownloadAborted(IgnoreRequest):
    """The crawl is stopping; this request was never sent."""


class ConcurrencyGateMiddleware:
    """Hold each request until the overall and per-slot limits have room.

    It also counts the attempts at each image (retries and redirects pass
    here again), for the failure feed.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.total_limit = settings.getint("CONCURRENT_REQUESTS")
        self.slot_limit = settings.getint("CONCURRENT_REQUESTS_PER_IP") or settings.getint(
            "CONCURRENT_REQUESTS_PER_DOMAIN"
        )
        self.slot_settings: dict[str, dict[str, Any]] = settings.getdict("DOWNLOAD_SLOTS")
        self.active: dict[Request, str] = {}  # request -> its slot, while it holds room
        self.in_flight = 0
        self.in_flight_per_slot: defaultdict[str, int] = defaultdict(int)
        self.waiting: deque[tuple[str, Deferred[None]]] = deque()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        gate = cls(crawler)
        crawler.signals.connect(gate.abort_waiting, signal=signals.spider_closed)
        return gate

    async def process_request(self, request: Request) -> None:
        if (target := request.meta.get("igimages")) is not None:
            target.attempts += 1
        if not self.crawler.engine.running:
            raise DownloadAborted("the crawl is stopping")
        slot = self.crawler.engine.downloader.get_slot_key(request)
        if self._has_room(slot):
            self._take(slot)
        else:  # _admit_waiting() takes the room on its behalf
            admitted: Deferred[None] = Deferred()
            self.waiting.append((slot, admitted))
            await maybe_deferred_to_future(admitted)
        self.active[request] = slot

    def process_response(self, request: Request, response: Response) -> Response:
        self._release(request)
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        self._release(request)

    def _has_room(self, slot: str) -> bool:
        slot_limit = self.slot_settings.get(slot, {}).get("concurrency", self.slot_limit)
        return (not self.total_limit or self.in_flight < self.total_limit) and (
            not slot_limit or self.in_flight_per_slot.get(slot, 0) < slot_limit
        )

    def _take(self, slot: str) -> None:
        self.in_flight += 1
        self.in_flight_per_slot[slot] += 1

    def _release(self, request: Request) -> None:
        slot = self.active.pop(request, None)
        if slot is None:  # it never passed the gate (answered or failed before it)
            return
        self.in_flight -= 1
        self.in_flight_per_slot[slot] -= 1
        if not self.in_flight_per_slot[slot]:
            del self.in_flight_per_slot[slot]
        if self.crawler.engine.running:
            self._admit_waiting()
        else:
            self.abort_waiting()

    def _admit_waiting(self) -> None:
        """Let waiting requests through, oldest first, while there is room."""
        admitted, still_waiting = [], deque()
        for slot, deferred in self.waiting:
            if self._has_room(slot):
                self._take(slot)
                admitted.append(deferred)
            else:
                still_waiting.append((slot, deferred))
        self.waiting = still_waiting
        for deferred in admitted:
            deferred.callback(None)

    def abort_waiting(self) -> None:
        """Fail every request still waiting: the crawl is stopping."""
        waiting, self.waiting = self.waiting, deque()
        for _, deferred in waiting:
            deferred.errback(DownloadAborted("the crawl is stopping"))
