"""When a request may go out, and when a failed one goes out again.

Media pipelines send their requests straight to the downloader, so Scrapy's
``CONCURRENT_REQUESTS`` never applies to them, its per-slot limit lets bursts
through under the asyncio reactor, and its retries go out again at once, with
no regard for ``Retry-After``. ``DownloadGateMiddleware`` sits last before the
download handlers and holds each request until every limit allows it;
``BackoffRetryMiddleware`` decides when a retry may go.

How many downloads each host may have in flight is the gate's
``host_limits``: its ceiling, or, with ``AUTOTHROTTLE_ENABLED``, a limit that
follows the host's answers (``igimages.throttle``), which the gate tells of
every answer and failure.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, Self

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.redirect import RedirectMiddleware
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.settings import BaseSettings
from scrapy.utils.asyncio import CallLaterResult, call_later
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.response import response_status_message
from twisted.internet.defer import Deferred

from igimages import signals as igimages_signals

#: Request meta key: the monotonic time before which the request must not go.
NOT_BEFORE = "igimages_not_before"


class DownloadAborted(IgnoreRequest):
    """The crawl is stopping; this request was never sent."""


def retry_after(response: Response, cap: float) -> float | None:
    """Seconds from the ``Retry-After`` header (delta or HTTP date), capped."""
    value = response.headers.get(b"Retry-After")
    if not value:
        return None
    text = value.decode("latin-1").strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    return min(max(seconds, 0.0), cap)


class HostLimits(Protocol):
    """How many downloads a host may have in flight, told what it answers."""

    def limit(self, slot: str) -> float: ...

    def answered(self, slot: str, sent_at: float, in_flight: int, status: int) -> None: ...

    def failed(self, slot: str, sent_at: float, in_flight: int, exception: Exception) -> None: ...

    def refused_elsewhere(self, slot: str, in_flight: int) -> None:
        """Another worker of the job was refused by this host (429, 503)."""


class FixedLimits:
    """Each host's ceiling, whatever it answers (``AUTOTHROTTLE_ENABLED=False``)."""

    def __init__(self, ceiling: Callable[[str], float]) -> None:
        self.limit = ceiling

    def answered(self, slot: str, sent_at: float, in_flight: int, status: int) -> None:
        pass

    def failed(self, slot: str, sent_at: float, in_flight: int, exception: Exception) -> None:
        pass

    def refused_elsewhere(self, slot: str, in_flight: int) -> None:
        pass


@dataclass(eq=False, slots=True)
class _Waiting:
    slot: str
    not_before: float
    admitted: Deferred[None] = field(default_factory=Deferred)
    sent_at: float = 0.0  # monotonic time it was let through
    in_flight: int = 0  # its host's downloads in flight then, itself included


class DownloadGateMiddleware:
    """Hold each request until all of these allow it to go out:

    * ``CONCURRENT_REQUESTS`` overall and the per-slot (per-host) limit of
      ``host_limits``, at most the slot's ``DOWNLOAD_SLOTS`` concurrency or
      ``CONCURRENT_REQUESTS_PER_DOMAIN``;
    * the host's cool-down after it answered 429 with ``Retry-After``;
    * the request's own backoff (``BackoffRetryMiddleware`` sets it);
    * ``IGIMAGES_MAX_RATE`` / ``IGIMAGES_MAX_RATE_PER_HOST``, if set.

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
        rate, host_rate = (settings.getfloat(f"IGIMAGES_MAX_RATE{s}") for s in ("", "_PER_HOST"))
        self.interval = 1 / rate if rate > 0 else 0.0
        self.host_interval = 1 / host_rate if host_rate > 0 else 0.0
        self.retry_after_max = settings.getfloat("IGIMAGES_RETRY_AFTER_MAX")
        self.host_limits: HostLimits = FixedLimits(self.ceiling)
        self.active: dict[Request, _Waiting] = {}  # while it holds room
        self.in_flight = 0  # let through and not yet answered, per slot below
        self.in_flight_per_slot: dict[str, int] = {}
        self.cool_until: dict[str, float] = {}  # slot -> monotonic time
        self.next_start = 0.0
        self.next_start_per_slot: dict[str, float] = {}
        self.waiting: deque[_Waiting] = deque()
        self.stopping = False
        self._timer: CallLaterResult | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        gate = cls(crawler)
        crawler.signals.connect(gate.stop, signal=igimages_signals.stop_downloads)
        crawler.signals.connect(gate.stop, signal=signals.spider_closed)
        return gate

    async def process_request(self, request: Request) -> None:
        if (target := request.meta.get("igimages")) is not None:
            target.attempts += 1
        if self.stopping or not self.crawler.engine.running:
            raise DownloadAborted("the crawl is stopping")
        slot = self.crawler.engine.downloader.get_slot_key(request)
        waiting = _Waiting(slot, request.meta.get(NOT_BEFORE, 0.0))
        self.waiting.append(waiting)
        self.admit()
        await maybe_deferred_to_future(waiting.admitted)
        self.active[request] = waiting

    def process_response(self, request: Request, response: Response) -> Response:
        if (sent := self._release(request)) is not None:
            self.host_limits.answered(sent.slot, sent.sent_at, sent.in_flight, response.status)
            if response.status == 429:
                self._cool_down(sent.slot, response)
        self.admit()
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        if (sent := self._release(request)) is not None:
            self.host_limits.failed(sent.slot, sent.sent_at, sent.in_flight, exception)
        self.admit()

    def ceiling(self, slot: str) -> float:
        """The most a host may ever have in flight (0 in the settings: no limit)."""
        limit = self.slot_settings.get(slot, {}).get("concurrency", self.slot_limit)
        return limit or self.total_limit or float("inf")

    def busiest(self) -> tuple[str, int, float] | None:
        """The host with most downloads in flight: its slot, their number, its limit."""
        if not self.in_flight_per_slot:
            return None
        slot = max(self.in_flight_per_slot, key=self.in_flight_per_slot.__getitem__)
        return slot, self.in_flight_per_slot[slot], self.host_limits.limit(slot)

    def stop(self) -> None:
        """Fail every waiting request and let no new one through."""
        self.stopping = True
        waiting, self.waiting = self.waiting, deque()
        for entry in waiting:
            entry.admitted.errback(DownloadAborted("the crawl is stopping"))

    def _release(self, request: Request) -> _Waiting | None:
        sent = self.active.pop(request, None)
        if sent is not None:  # else it never passed the gate
            slot = sent.slot
            self.in_flight -= 1
            self.in_flight_per_slot[slot] -= 1
            if not self.in_flight_per_slot[slot]:
                del self.in_flight_per_slot[slot]
        return sent

    def _cool_down(self, slot: str, response: Response) -> None:
        """Pause the whole host for as long as its ``Retry-After`` asks."""
        if (seconds := retry_after(response, self.retry_after_max)) is not None:
            self.pause(slot, seconds)
            self.crawler.signals.send_catch_log(
                igimages_signals.host_paused, slot=slot, seconds=seconds
            )

    def pause(self, slot: str, seconds: float) -> None:
        """Let no request to ``slot`` go for ``seconds``."""
        until = time.monotonic() + seconds
        self.cool_until[slot] = max(until, self.cool_until.get(slot, 0.0))

    def waiting_slots(self) -> set[str]:
        """The slots that requests are waiting for."""
        return {entry.slot for entry in self.waiting}

    def admit(self) -> None:
        """Let waiting requests go, oldest first, while the limits allow.

        Called at every answer, and by whatever raises a limit meanwhile.
        """
        if not self.crawler.engine.running:
            self.stop()
            return
        now = time.monotonic()
        wake_at = float("inf")
        admitted: list[_Waiting] = []
        still_waiting: deque[_Waiting] = deque()
        for index, entry in enumerate(self.waiting):
            if self.total_limit and self.in_flight >= self.total_limit:
                still_waiting.extend(itertools.islice(self.waiting, index, None))
                break
            if not self._has_room(entry.slot):
                still_waiting.append(entry)
            elif (ready_at := self._ready_at(entry)) > now:
                wake_at = min(wake_at, ready_at)
                still_waiting.append(entry)
            else:
                self._take(entry, now)
                admitted.append(entry)
        self.waiting = still_waiting
        if wake_at < float("inf"):
            self._wake_at(wake_at - now)
        for entry in admitted:
            entry.admitted.callback(None)

    def _has_room(self, slot: str) -> bool:
        return self.in_flight_per_slot.get(slot, 0) < self.host_limits.limit(slot)

    def _ready_at(self, entry: _Waiting) -> float:
        ready = max(entry.not_before, self.cool_until.get(entry.slot, 0.0))
        if self.interval:
            ready = max(ready, self.next_start)
        if self.host_interval:
            ready = max(ready, self.next_start_per_slot.get(entry.slot, 0.0))
        return ready

    def _take(self, entry: _Waiting, now: float) -> None:
        slot = entry.slot
        self.in_flight += 1
        entry.in_flight = self.in_flight_per_slot[slot] = self.in_flight_per_slot.get(slot, 0) + 1
        entry.sent_at = now
        if self.interval:
            self.next_start = max(now, self.next_start) + self.interval
        if self.host_interval:
            start = max(now, self.next_start_per_slot.get(slot, 0.0))
            self.next_start_per_slot[slot] = start + self.host_interval

    def _wake_at(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = call_later(max(delay, 0.0), self.admit)


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retries, spaced out: exponential backoff with jitter, or the
    server's ``Retry-After`` when it gives one.

    Only what may pass is retried (``RETRY_HTTP_CODES``: 408, 429, 5xx;
    ``RETRY_EXCEPTIONS``: timeouts, dropped connections); a 404 or a 403
    fails at once.
    """

    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self.base = settings.getfloat("IGIMAGES_RETRY_BACKOFF_BASE")
        self.cap = settings.getfloat("IGIMAGES_RETRY_BACKOFF_MAX")
        self.retry_after_max = settings.getfloat("IGIMAGES_RETRY_AFTER_MAX")

    def process_response(self, request: Request, response: Response) -> Request | Response:
        if request.meta.get("dont_retry") or response.status not in self.retry_http_codes:
            return response
        retry = self._retry(request, response_status_message(response.status))
        if retry is None:
            return response
        wait = retry_after(response, self.retry_after_max)
        self._hold(retry, self._backoff(retry) if wait is None else wait)
        return retry

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        retry = super().process_exception(request, exception)
        if isinstance(retry, Request):
            self._hold(retry, self._backoff(retry))
        return retry

    def _backoff(self, retry: Request) -> float:
        """base * 2^(n-1), at most the cap, of which a random 50-100 %."""
        ceiling = min(self.cap, self.base * 2 ** (retry.meta.get("retry_times", 1) - 1))
        return ceiling * random.uniform(0.5, 1.0)

    @staticmethod
    def _hold(retry: Request, seconds: float) -> None:
        retry.meta[NOT_BEFORE] = time.monotonic() + seconds


class ImageRedirectMiddleware(RedirectMiddleware):
    """Scrapy's redirects, except that one to a URL of which Scrapy makes no
    request at all (``mailto:``, ``javascript:``: no ``//``) is left to the
    pipeline, as Scrapy leaves one to ``file:`` or ``data:``, and fails as
    ``unsupported_scheme`` instead of an error.
    """

    def process_response(self, request: Request, response: Response) -> Request | Response:
        try:
            return super().process_response(request, response)
        except ValueError:  # "Missing scheme in request url: mailto:..."
            return response
