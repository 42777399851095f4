"""When a request may go out: the gate every image download passes last.

Media pipelines send their requests straight to the downloader, so Scrapy's
``CONCURRENT_REQUESTS`` never applies to them, and its per-slot limit lets
bursts through under the asyncio reactor. ``DownloadGateMiddleware`` sits
last before the download handlers and holds each request until every limit
allows it. Each host's limit is a ``HostLimits`` composed once, when the gate
is built (``igimages.fetch.limits``); the gate tells it of every answer
and failure. When a failed request may go again is ``igimages.fetch.retry``'s.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.utils.asyncio import CallLaterResult, call_later
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred

from igimages import signals as igimages_signals
from igimages.fetch.limits import HostLimits, compose_host_limits
from igimages.fetch.retry import NOT_BEFORE, retry_after

#: Request meta key: the ``Attempts`` of an image, shared by its retries and redirects.
ATTEMPTS = "igimages_attempts"


class DownloadAborted(IgnoreRequest):
    """The crawl is stopping; this request was never sent."""


@dataclass(slots=True)
class Attempts:
    """How many times an image was requested: the gate counts, the failure feed says."""

    count: int = 0


@dataclass(eq=False, slots=True)
class _Waiting:
    slot: str
    not_before: float
    admitted: Deferred[None] = field(default_factory=Deferred)
    sent_at: float = 0.0  # monotonic time it was let through
    in_flight: int = 0  # its host's downloads in flight then, itself included
    order: int = 0  # when it was let through, among all requests
    answered_before: int = 0  # answers from its host before it went


class DownloadGateMiddleware:
    """Hold each request until all of these allow it to go out:

    * ``CONCURRENT_REQUESTS`` overall and the host's limit (``HostLimits``),
      at most the slot's ``DOWNLOAD_SLOTS`` concurrency or
      ``CONCURRENT_REQUESTS_PER_DOMAIN``;
    * the host's cool-down after it answered 429 with ``Retry-After``;
    * the request's own backoff (``BackoffRetryMiddleware`` sets it);
    * ``IGIMAGES_MAX_RATE`` / ``IGIMAGES_MAX_RATE_PER_HOST``, if set.

    It also counts the attempts at each image (retries and redirects pass
    here again), for the failure feed. Others see it as a ``GateView``.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self._crawler = crawler
        self._total_limit = settings.getint("CONCURRENT_REQUESTS")
        self._slot_limit = settings.getint("CONCURRENT_REQUESTS_PER_IP") or settings.getint(
            "CONCURRENT_REQUESTS_PER_DOMAIN"
        )
        self._slot_settings: dict[str, dict[str, Any]] = settings.getdict("DOWNLOAD_SLOTS")
        rate, host_rate = (settings.getfloat(f"IGIMAGES_MAX_RATE{s}") for s in ("", "_PER_HOST"))
        self._interval = 1 / rate if rate > 0 else 0.0
        self._host_interval = 1 / host_rate if host_rate > 0 else 0.0
        self._retry_after_max = settings.getfloat("IGIMAGES_RETRY_AFTER_MAX")
        self._active: dict[Request, _Waiting] = {}  # while it holds room
        self._in_flight = 0  # let through and not yet answered, per slot below
        self._in_flight_per_slot: dict[str, int] = {}
        self._let_through = itertools.count()  # every request's order
        self._answered_by: dict[str, int] = {}  # answers, per slot, ever
        self._cool_until: dict[str, float] = {}  # slot -> monotonic time
        self._next_start = 0.0
        self._next_start_per_slot: dict[str, float] = {}
        self._waiting: deque[_Waiting] = deque()
        self._stopping = False
        self._timer: CallLaterResult | None = None
        self._limits: HostLimits = compose_host_limits(crawler, self)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        gate = cls(crawler)
        crawler.signals.connect(gate.stop, signal=igimages_signals.stop_downloads)
        crawler.signals.connect(gate.stop, signal=signals.spider_closed)
        return gate

    async def process_request(self, request: Request) -> None:
        if (attempts := request.meta.get(ATTEMPTS)) is not None:
            attempts.count += 1
        if self._stopping or not self._crawler.engine.running:
            raise DownloadAborted("the crawl is stopping")
        slot = self._crawler.engine.downloader.get_slot_key(request)
        waiting = _Waiting(slot, request.meta.get(NOT_BEFORE, 0.0))
        self._waiting.append(waiting)
        self.admit()
        await maybe_deferred_to_future(waiting.admitted)
        self._active[request] = waiting

    def process_response(self, request: Request, response: Response) -> Response:
        if (sent := self._release(request)) is not None:
            load = sent.in_flight if response.status < 400 else self._load_met(sent)
            self._limits.answered(sent.slot, sent.sent_at, load, response.status)
            if response.status == 429:
                self._cool_down(sent.slot, response)
        self.admit()
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        if (sent := self._release(request)) is not None:
            self._limits.failed(sent.slot, sent.sent_at, sent.in_flight, exception)
        self.admit()

    # The view (GateView)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def in_flight_to(self, slot: str) -> int:
        return self._in_flight_per_slot.get(slot, 0)

    def waiting_slots(self) -> set[str]:
        return {entry.slot for entry in self._waiting}

    def ceiling(self, slot: str) -> float:
        """The most a host may ever have in flight (0 in the settings: no limit)."""
        limit = self._slot_settings.get(slot, {}).get("concurrency", self._slot_limit)
        return limit or self._total_limit or float("inf")

    def limit(self, slot: str) -> float:
        return self._limits.limit(slot)

    def busiest(self) -> tuple[str, int, float] | None:
        if not self._in_flight_per_slot:
            return None
        slot = max(self._in_flight_per_slot, key=self._in_flight_per_slot.__getitem__)
        return slot, self._in_flight_per_slot[slot], self._limits.limit(slot)

    def pause(self, slot: str, seconds: float) -> None:
        until = time.monotonic() + seconds
        self._cool_until[slot] = max(until, self._cool_until.get(slot, 0.0))

    def stop(self) -> None:
        """Fail every waiting request and let no new one through."""
        self._stopping = True
        waiting, self._waiting = self._waiting, deque()
        for entry in waiting:
            entry.admitted.errback(DownloadAborted("the crawl is stopping"))

    def admit(self) -> None:
        """Let waiting requests go, oldest first, while the limits allow.

        Called at every answer, and by whatever raises a limit meanwhile.
        """
        if not self._crawler.engine.running:
            self.stop()
            return
        now = time.monotonic()
        wake_at = float("inf")
        admitted: list[_Waiting] = []
        still_waiting: deque[_Waiting] = deque()
        for index, entry in enumerate(self._waiting):
            if self._total_limit and self._in_flight >= self._total_limit:
                still_waiting.extend(itertools.islice(self._waiting, index, None))
                break
            if not self._has_room(entry.slot):
                still_waiting.append(entry)
            elif (ready_at := self._ready_at(entry)) > now:
                wake_at = min(wake_at, ready_at)
                still_waiting.append(entry)
            else:
                self._take(entry, now)
                admitted.append(entry)
        self._waiting = still_waiting
        if wake_at < float("inf"):
            self._wake_at(wake_at - now)
        for entry in admitted:
            entry.admitted.callback(None)

    # Inside

    def _release(self, request: Request) -> _Waiting | None:
        sent = self._active.pop(request, None)
        if sent is not None:  # else it never passed the gate
            slot = sent.slot
            self._in_flight -= 1
            self._in_flight_per_slot[slot] -= 1
            if not self._in_flight_per_slot[slot]:
                del self._in_flight_per_slot[slot]
            self._answered_by[slot] += 1
        return sent

    def _load_met(self, sent: _Waiting) -> int:
        """What its host had in flight when ``sent`` reached it, for an error answer
        (a refusal's level).

        ``in_flight`` counts those out when it went; requests let through at about
        the same time may reach the host first (another connection, a quicker
        handshake), and a host answers in the order requests reach it: those let
        through after it that came back before it overtook it, and it met them too.
        """
        slot = sent.slot
        answers = self._answered_by[slot] - 1 - sent.answered_before  # while it was out
        earlier = sum(e.slot == slot and e.order < sent.order for e in self._active.values())
        earlier_answered = sent.in_flight - 1 - earlier
        return sent.in_flight + max(0, answers - earlier_answered)

    def _cool_down(self, slot: str, response: Response) -> None:
        """Pause the whole host for as long as its ``Retry-After`` asks."""
        if (seconds := retry_after(response, self._retry_after_max)) is not None:
            self.pause(slot, seconds)
            self._crawler.signals.send_catch_log(
                igimages_signals.host_paused, slot=slot, seconds=seconds
            )

    def _has_room(self, slot: str) -> bool:
        return self._in_flight_per_slot.get(slot, 0) < self._limits.limit(slot)

    def _ready_at(self, entry: _Waiting) -> float:
        ready = max(entry.not_before, self._cool_until.get(entry.slot, 0.0))
        if self._interval:
            ready = max(ready, self._next_start)
        if self._host_interval:
            ready = max(ready, self._next_start_per_slot.get(entry.slot, 0.0))
        return ready

    def _take(self, entry: _Waiting, now: float) -> None:
        slot = entry.slot
        self._in_flight += 1
        entry.in_flight = self._in_flight_per_slot[slot] = self._in_flight_per_slot.get(slot, 0) + 1
        entry.order = next(self._let_through)
        entry.answered_before = self._answered_by.setdefault(slot, 0)
        entry.sent_at = now
        if self._interval:
            self._next_start = max(now, self._next_start) + self._interval
        if self._host_interval:
            start = max(now, self._next_start_per_slot.get(slot, 0.0))
            self._next_start_per_slot[slot] = start + self._host_interval

    def _wake_at(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = call_later(max(delay, 0.0), self.admit)
