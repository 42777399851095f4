"""A per-host limit on downloads in flight that follows what each host answers.

Scrapy's AutoThrottle keeps a fixed number of requests in flight per host
(``AUTOTHROTTLE_TARGET_CONCURRENCY``) whatever the host says: 8 to a CDN edge
that would serve ten times more, 8 again to one that answers 429.
``AdaptiveLimits`` takes its place and its switch (``AUTOTHROTTLE_ENABLED``):
each host gets a limit, enforced by ``DownloadGateMiddleware``, that a
``HostLimit`` moves with the host's answers, the way TCP moves a congestion
window (docs/how-it-works.md, "How the per-host limit moves"):

* it starts at ``IGIMAGES_START_CONCURRENCY`` and doubles every round trip
  while answers come fast (slow start), until two thirds of a round trip's
  answers take over 1.5 times the fastest: then it halves, as TCP does;
* a 429, a 503, a timeout or a dropped connection cuts it to 0.85 of what was
  in flight when the refused request went out (with, for a refusal, those let
  through after it that overtook it on the way: ``DownloadGateMiddleware``),
  once per round trip;
* latency that stays above 1.5 times the host's floor (its lowest smoothed
  latency of the last 30 to 60 s) means requests queue, at the server or on a
  full link: the limit is cut by as much as the queue is long, a tenth to a
  half; above 1.2 times it stops growing;
* after a cut it grows back along CUBIC's curve: quickly to just under the
  level that failed, slowly across it, faster again beyond it, so a host that
  refuses above K is probed rarely instead of every few round trips;
* where a refusal has a price (the host asked for a pause with
  ``Retry-After``, or it refused again at the level it refused before, once
  the limit had climbed back to it), the level it refused is learned: the
  limit stays just under it, and goes up to it (a probe) first after 16
  pauses or 16 round trips, then twice as long after each refused probe; a
  probe that passes forgets the level and growth goes on as before. A
  refusal below the level is followed down at once, as any;
* it never goes above the host's ceiling (``CONCURRENT_REQUESTS_PER_DOMAIN``,
  or the slot's ``DOWNLOAD_SLOTS`` concurrency) nor below 1.

A host's state is a dozen numbers; nothing is kept per request but what the
gate already holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from igimages import signals as igimages_signals
from igimages.fetch.limits import GateView, HostLimits
from igimages.fetch.reasons import failure_reason

logger = logging.getLogger(__name__)

#: Answers that mean the host (or the way to it) has more than it can take.
OVERLOAD_STATUSES = {429: "429", 503: "503"}
#: Download failures that mean the same, by their failure reason.
OVERLOAD_REASONS = {"timeout": "timeout", "connection": "dropped", "truncated": "dropped"}
LATENCY = "latency"
ELSEWHERE = "elsewhere"  # a refusal another worker of the job had

OVERLOAD_BACKOFF = 0.85  # of what was in flight when the refused request went out
LATENCY_BACKOFF = 0.9  # at least; more the longer the queue
LATENCY_TOLERANCE = 1.5  # smoothed latency above this times the floor: cut
LATENCY_HOLD = 1.2  # above this: no growth
CUBIC_C = 0.01  # the cubic's steepness, in requests per round trip cubed
FLOOR_WINDOW = 30.0  # seconds each of the floor's two windows lasts
MIN_SAMPLES = 8  # answers before latency may cut
SMOOTHING_SPAN = 16  # the latency average spans at least this many answers
PROBE_PAUSES = 16  # the first probe above a priced level waits this many pauses...
PROBE_ROUNDS = 16  # ...or round trips, the longer, then twice as long after each refusal
PROBE_GAP_MAX = 300.0  # seconds: a host whose limit rose is found again within this
PROBE_PASSES = 8  # good answers at the refused level that show the host takes more now

INF = float("inf")


@dataclass(slots=True, eq=False)
class HostLimit:
    """The limit of one host and what moves it: latency, cuts, round trips.

    A round trip ends with the first answer to a request sent after it began.
    Times are ``time.monotonic()`` seconds, given by the caller.
    """

    ceiling: float
    limit: float
    slow_start: bool = True
    growing: bool = True  # the last round trip's latency allows growth
    w_max: float = 0.0  # the level the cubic returns to after a cut
    k: float = 0.0  # round trips the cubic takes to get back to w_max
    rounds: float = 0.0  # round trips since the last cut
    smoothed: float = 0.0  # latency, averaged over about a round trip
    samples: int = 0
    # In slow start only: this round trip's lowest latency, its answers, and
    # how many were slower than LATENCY_TOLERANCE times start_floor, the
    # lowest round_min so far.
    round_min: float = INF
    round_answers: int = 0
    round_slow: int = 0
    start_floor: float = INF
    floor: float = INF  # lowest smoothed latency in this window...
    floor_before: float = INF  # ...and in the one before it
    floor_since: float = 0.0
    round_start: float = 0.0
    last_cut: float = -INF
    peak: int = 0
    cut_to: float = 0.0  # the limit the last cut left
    last_refused: float = INF  # the level of the last refusal
    # Where refusals have a price: the level learned, and when to probe it again.
    priced: bool = False
    pause: float = 0.0  # the longest pause the host asked for
    refused_at: float = INF
    corrected: bool = False  # the level learned was lowered by one refusal just under it
    passed_at_refused: int = 0  # good answers at that level since it was learned
    probe_gap: float = 0.0
    next_probe: float = 0.0

    def answered(self, sent_at: float, in_flight: int, now: float) -> bool:
        """A good answer; True if its latency cut the limit.

        An answer to a request sent before the last cut tells of the limit
        before it (and of the queue that cut drains): it is left out.
        """
        if sent_at <= self.last_cut:
            return False
        self.samples += 1
        latency = now - sent_at
        slow = False
        if self.slow_start:  # what slow start's end is judged on (see _end_round)
            self.round_min = min(self.round_min, latency)
            self.round_answers += 1
            slow = latency > LATENCY_TOLERANCE * self.start_floor
            self.round_slow += slow
        # Over about a round trip of answers since the last cut.
        span = max(self.limit, SMOOTHING_SPAN)
        self.smoothed += (latency - self.smoothed) / min(self.samples, span)
        if self.priced and in_flight >= self.refused_at:
            self.passed_at_refused += 1
            if self.passed_at_refused >= PROBE_PASSES:  # the host takes more now
                self._forget_refused_level()
        if sent_at > self.round_start and self._end_round(now):
            return True
        # Only a limit that is used grows: a host given few requests (the
        # overall limit binds, or its posts are few) has proved nothing.
        if self.growing and 2 * in_flight >= self.limit and not slow:
            self._grow(now)
        return False

    def overloaded(self, sent_at: float, in_flight: int, now: float) -> bool:
        """A refusal or a failure of overload; True if it cut the limit.

        Refusals of requests sent before the last cut say nothing new: that
        cut already answered them.
        """
        if sent_at <= self.last_cut:
            self._refused_too(in_flight)
            return False
        level = min(self.limit, in_flight)
        self.passed_at_refused = 0
        if self.priced and level >= self.refused_at:
            # A probe refused: the level still holds. Back under it, no lower,
            # and the next probe waits twice as long.
            self.probe_gap = min(2 * self.probe_gap, PROBE_GAP_MAX)
            self.next_probe = now + self.probe_gap
            self._cut(self.refused_at - 1, self.refused_at - 1, now)
            return True
        if self.priced and not self.corrected and level > OVERLOAD_BACKOFF * self.refused_at:
            # Refused a little under the level learned: a level read from what
            # was in flight is one or two off (answers on their way back), so
            # it is corrected once without a cut. Lower again is a fall.
            self.corrected, self.refused_at = True, level
            self.last_refused = level
            self._cut(level - 1, level - 1, now)
            return True
        # Refused again at the level refused last, having climbed back to it:
        # a fixed limit, whose probes are refusals wasted. (A level that only
        # falls, as in an outage, is followed down and learns nothing.)
        if abs(level - self.last_refused) <= 1 and level > self.cut_to:
            self._learn(level, now)
        self.last_refused = level
        self._cut(max(level - 1, 1.0), level * OVERLOAD_BACKOFF, now)
        return True

    def paused(self, seconds: float, now: float) -> None:
        """The host asked for a pause after a refusal: its refusals have a price.

        The level it refused is learned at once, and the limit goes just under
        it rather than under a cut's 0.85: a refusal costs the same however
        far below it the limit is.
        """
        self.pause = max(self.pause, seconds)
        if not self.priced and self.last_refused < INF:
            self._learn(self.last_refused, now)
            self._cut(self.refused_at - 1, self.refused_at - 1, now)

    def _refused_too(self, level: float) -> None:
        """A refusal the last cut answered: its level still tells where the host refuses
        (in a burst, the first refusal to come back need not be the lowest)."""
        self.last_refused = min(self.last_refused, level)
        if self.priced and level < self.refused_at:
            self.refused_at = level
            self.limit = min(self.limit, max(level - 1, 1.0))

    def _learn(self, level: float, now: float) -> None:
        self.priced, self.refused_at, self.corrected = True, level, False
        self.probe_gap = max(PROBE_PAUSES * self.pause, PROBE_ROUNDS * self.smoothed)
        self.next_probe = now + self.probe_gap

    def _forget_refused_level(self) -> None:
        self.w_max, self.k, self.rounds = self.limit, 0.0, 0.0  # on from here, slowly at first
        self.priced, self.refused_at, self.last_refused = False, INF, INF

    def _end_round(self, now: float) -> bool:
        self.round_start = now
        round_min, answers, slow = self.round_min, self.round_answers, self.round_slow
        self.round_min, self.round_answers, self.round_slow = INF, 0, 0
        if self.slow_start:
            self.start_floor = min(self.start_floor, round_min)
        if self.samples < MIN_SAMPLES:
            return False
        if now - self.floor_since > FLOOR_WINDOW:
            self.floor_before, self.floor, self.floor_since = self.floor, self.smoothed, now
        else:
            self.floor = min(self.floor, self.smoothed)
        if self.slow_start:
            # Half the requests of a doubling round trip open a connection,
            # and the first answer on one is slower by its handshakes: the
            # average would take that for a queue. Slow answers do not grow the
            # window, and when two thirds of a round trip's are slow, requests
            # queue: back to the window before the last doubling, as TCP does.
            if answers >= MIN_SAMPLES and 3 * slow > 2 * answers:
                self._cut(self.limit, self.limit / 2, now)
                return True
            return False
        ratio = self.smoothed / min(self.floor, self.floor_before)
        if ratio > LATENCY_TOLERANCE:
            # By as much as the queue is long (Little's law: what was in
            # flight, times floor / latency, is what the host serves without
            # a queue), from a tenth to a half.
            backoff = min(max(LATENCY_TOLERANCE / ratio, 0.5), LATENCY_BACKOFF)
            self._cut(self.limit, self.limit * backoff, now)
            return True
        self.growing = ratio <= LATENCY_HOLD
        return False

    def _cut(self, w_max: float, limit: float, now: float) -> None:
        self.slow_start = False
        self.w_max = w_max
        self.limit = self.cut_to = min(max(limit, 1.0), self.ceiling)
        self.k = (max(w_max - self.limit, 0.0) / CUBIC_C) ** (1 / 3)
        self.rounds = 0.0
        self.samples = 0
        self.last_cut = self.round_start = now

    def _grow(self, now: float) -> None:
        if self.slow_start:
            self.limit += 1
        else:
            self.rounds += 1 / self.limit
            target = self.w_max + CUBIC_C * (self.rounds - self.k) ** 3
            if target > self.limit:
                self.limit += (target - self.limit) / self.limit
        self.limit = min(self.limit, self.ceiling, self._highest(now))

    def _highest(self, now: float) -> float:
        """Under a priced level until the next probe is due, then up to it."""
        if not self.priced:
            return INF
        if now < self.next_probe:
            return max(self.refused_at - 1, 1.0)
        return self.refused_at


class AdaptiveLimits:
    """Give each host a ``HostLimit`` under the limit it wraps (its ceiling).

    A link of ``IGIMAGES_HOST_LIMITS``, in Scrapy's AutoThrottle's place and
    under its switch: with ``AUTOTHROTTLE_ENABLED=False`` it is left out and
    each host's limit is its ceiling. ``AUTOTHROTTLE_DEBUG`` logs every change
    of a limit.

    Stats, per host: ``igimages/hosts/<host>/limit_peak`` and ``limit_final``,
    ``answers/<signal>`` (429, 503, timeout, dropped: answers and failures of
    overload) and ``cuts/<signal>`` (the times each cut the limit, latency
    included).
    """

    def __init__(self, crawler: Crawler, ceiling: HostLimits) -> None:
        settings = crawler.settings
        if not settings.getbool("AUTOTHROTTLE_ENABLED"):
            raise NotConfigured
        self.stats = crawler.stats
        self.start = max(1, settings.getint("IGIMAGES_START_CONCURRENCY"))
        self.debug = settings.getbool("AUTOTHROTTLE_DEBUG")
        self.hosts: dict[str, HostLimit] = {}
        self.ceiling = ceiling

    @classmethod
    def from_crawler(cls, crawler: Crawler, ceiling: HostLimits, gate: GateView) -> Self:
        limits = cls(crawler, ceiling)
        crawler.signals.connect(limits.host_paused, signal=igimages_signals.host_paused)
        return limits

    # The gate's questions and reports (HostLimits)

    def limit(self, slot: str) -> int:
        host = self.hosts.get(slot)
        if host is None:
            ceiling = self.ceiling.limit(slot)
            host = self.hosts[slot] = HostLimit(ceiling, min(self.start, ceiling))
            self._changed(slot, host, 0, "start")
        return int(host.limit)

    def answered(self, slot: str, sent_at: float, in_flight: int, status: int) -> None:
        host = self.hosts[slot]
        before = int(host.limit)
        if (signal := OVERLOAD_STATUSES.get(status)) is not None:
            self._count(slot, "answers", signal)
            cut = host.overloaded(sent_at, in_flight, time.monotonic())
        else:
            signal = LATENCY
            cut = host.answered(sent_at, in_flight, time.monotonic())
        if cut:
            self._count(slot, "cuts", signal)
        if int(host.limit) != before:
            self._changed(slot, host, before, "growth" if int(host.limit) > before else signal)

    def failed(self, slot: str, sent_at: float, in_flight: int, exception: Exception) -> None:
        signal = OVERLOAD_REASONS.get(failure_reason(exception))
        if signal is None:  # e.g. DNS: nothing about the host's load
            return
        host = self.hosts[slot]
        before = int(host.limit)
        self._count(slot, "answers", signal)
        if host.overloaded(sent_at, in_flight, time.monotonic()):
            self._count(slot, "cuts", signal)
        if int(host.limit) != before:
            self._changed(slot, host, before, signal)

    def host_paused(self, slot: str, seconds: float) -> None:
        """The host answered a refusal with ``Retry-After``: each refusal costs a pause."""
        if (host := self.hosts.get(slot)) is not None:
            before, priced = int(host.limit), host.priced
            host.paused(seconds, time.monotonic())
            # Logged when the level is learned even if the refusal's cut had
            # already left the limit where the pause puts it: from here it holds.
            if int(host.limit) != before or host.priced != priced:
                self._changed(slot, host, before, "pause")

    def refused_elsewhere(self, slot: str, in_flight: int) -> None:
        """Another worker of the job was refused by this host: cut as if this one
        had been, from what it has in flight, once per round trip as always."""
        if (host := self.hosts.get(slot)) is None or not in_flight:
            return
        before = int(host.limit)
        now = time.monotonic()
        if host.overloaded(now - host.smoothed, in_flight, now):
            self._count(slot, "cuts", ELSEWHERE)
            if int(host.limit) != before:
                self._changed(slot, host, before, ELSEWHERE)

    # Stats and the debug log

    def _count(self, slot: str, kind: str, signal: str) -> None:
        self.stats.inc_value(f"igimages/hosts/{slot}/{kind}/{signal}")

    def _changed(self, slot: str, host: HostLimit, before: int, why: str) -> None:
        now = int(host.limit)
        self.stats.set_value(f"igimages/hosts/{slot}/limit_final", now)
        if now > host.peak:
            host.peak = now
            self.stats.set_value(f"igimages/hosts/{slot}/limit_peak", now)
        if self.debug:
            logger.info(
                "limit %s %d -> %d (%s; latency %.0f ms, floor %.0f ms)",
                slot,
                before,
                now,
                why,
                1000 * host.smoothed,
                1000 * min(host.floor, host.floor_before, host.smoothed or INF),
            )


def pushback_summary(stats: Mapping[str, Any], most: int = 10) -> list[str]:
    """One line per host that refused, failed or slowed down under load.

    For example ``scontent-fra5-1.cdninstagram.com: 429 x37, latency cuts 2,
    limit settled at 14 (peak 32)`` (with a multiplication sign), the hosts
    with most pushback first.
    """
    hosts: dict[str, dict[str, Any]] = {}
    for key, value in stats.items():
        if not key.startswith("igimages/hosts/"):
            continue
        host, _, field = key.removeprefix("igimages/hosts/").partition("/")
        hosts.setdefault(host, {})[field] = value
    pushed = {
        host: fields
        for host, fields in hosts.items()
        if any(field.startswith(("answers/", "cuts/latency")) for field in fields)
    }

    def weight(item: tuple[str, dict[str, Any]]) -> int:
        return -sum(v for f, v in item[1].items() if f.startswith(("answers/", "cuts/")))

    lines = []
    for host, fields in sorted(pushed.items(), key=weight)[:most]:
        parts = [
            f"{field.removeprefix('answers/')} ×{count}"  # noqa: RUF001
            for field, count in sorted(fields.items())
            if field.startswith("answers/")
        ]
        if latency := fields.get(f"cuts/{LATENCY}"):
            parts.append(f"latency cuts {latency}")
        if "limit_final" in fields:
            parts.append(
                f"limit settled at {fields['limit_final']} (peak {fields.get('limit_peak')})"
            )
        lines.append(f"{host}: {', '.join(parts)}")
    if len(pushed) > most:
        lines.append(f"and {len(pushed) - most} more hosts (igimages/hosts/ in the stats)")
    return lines
