"""Per-host limits that hold for the whole job, as the server sees it.

Each worker keeps its own limit for each host (fixed, or adaptive:
``igimages.fetch.adaptive``), but may only use what Redis allots it of the host's
ceiling (``CONCURRENT_REQUESTS_PER_DOMAIN``): the live workers that want
some share it max-min fairly, and the allotments never add up to more than
the ceiling, so neither do the requests in flight. A worker asks again every
``SYNC_INTERVAL`` for the hosts it uses (keeping no more than it wants, so
others get their share) and at once when its own limit wants more than it
last asked for: a worker refused more waits for the next round, so that a
host shared by many workers costs Redis a question per worker per round,
not one per request.
A ``Retry-After`` pause, and a refusal, seen by one worker are told to the
others (``HostEvents``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Self

import redis.asyncio
from scrapy.crawler import Crawler

from igimages.fetch.adaptive import OVERLOAD_STATUSES
from igimages.fetch.limits import GateView, HostLimits
from igimages.job import scripts
from igimages.job.keys import JobKeys
from igimages.job.queue import now_ms
from igimages.job.worker import JobWorker

logger = logging.getLogger(__name__)

SYNC_INTERVAL = 0.5  # seconds between a worker's questions for the hosts it uses
ASK_INTERVAL = 0.05  # ...and at most this often for a host it wants more of than it asked
REFUSAL_INTERVAL = 0.25  # seconds between a worker's messages of one host's refusals
INF = float("inf")


class JobShare:
    """The gate's limits in a job (a link of ``IGIMAGES_HOST_LIMITS``): the worker's
    own, within the job's allotment."""

    SYNC_INTERVAL = SYNC_INTERVAL

    def __init__(
        self,
        own: HostLimits,
        gate: GateView,
        client: redis.asyncio.Redis,
        keys: JobKeys,
        worker: str,
        run: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.own = own
        self.gate = gate
        self.client = client
        self.keys = keys
        self.worker = worker
        self.run = run  # runs a coroutine; a Redis error there stops the crawl
        self.shares: dict[str, int] = {}  # how many each host may have in flight from here
        self._asking: set[str] = set()
        self._asked_at: dict[str, float] = {}
        self._wanted: dict[str, int] = {}  # what it last asked for, per host
        self.events: HostEvents | None = None
        self._allot = client.register_script(scripts.ALLOT)

    @classmethod
    def from_crawler(cls, crawler: Crawler, own: HostLimits, gate: GateView) -> Self:
        worker = crawler.get_extension(JobWorker)
        share = cls(own, gate, worker.client, worker.keys, worker.worker, worker.run)
        worker.share_hosts(share, HostEvents(share, worker.client, worker.keys, worker.worker))
        return share

    # The gate's questions and reports (HostLimits)

    def limit(self, slot: str) -> float:
        own = self.own.limit(slot)
        share = self.shares.get(slot, 0)
        wants_more = own > share and _count(own) > self._wanted.get(slot, 0)
        if wants_more and self._may_ask(slot, ASK_INTERVAL):
            self.run(self._ask(slot, True))
        return min(own, share)

    def answered(self, slot: str, sent_at: float, in_flight: int, status: int) -> None:
        self.own.answered(slot, sent_at, in_flight, status)
        if status in OVERLOAD_STATUSES and self.events is not None:
            self.events.refused(slot)

    def failed(self, slot: str, sent_at: float, in_flight: int, exception: Exception) -> None:
        self.own.failed(slot, sent_at, in_flight, exception)

    def refused_elsewhere(self, slot: str, in_flight: int) -> None:
        self.own.refused_elsewhere(slot, in_flight)

    # Allotments

    async def sync(self) -> None:
        """Ask again for every host in use: more if wanted, less if not."""
        waiting = self.gate.waiting_slots()
        for slot in waiting | set(self.shares):
            if self._may_ask(slot, 0.0):
                await self._ask(slot, slot in waiting)

    def _may_ask(self, slot: str, interval: float) -> bool:
        """Whether to ask now (one question per host at a time, ``interval`` apart)."""
        now = time.monotonic()
        if slot in self._asking or now - self._asked_at.get(slot, -INF) < interval:
            return False
        self._asking.add(slot)
        self._asked_at[slot] = now
        return True

    async def _ask(self, slot: str, wanted: bool) -> None:
        try:
            in_flight = self.gate.in_flight_to(slot)
            want = _count(self.own.limit(slot)) if wanted else in_flight
            self._wanted[slot] = want
            ceiling = _count(self.gate.ceiling(slot))
            share = await self._allot(
                [self.keys.allotments(slot), self.keys.workers],
                [self.worker, want, in_flight, ceiling, now_ms()],
            )
        finally:
            self._asking.discard(slot)
        before = self.shares.get(slot, 0)
        if share or in_flight:
            self.shares[slot] = share
        else:
            self.shares.pop(slot, None)
        if share > before:
            self.gate.admit()

    async def give_back(self) -> None:
        """This worker is done: its allotments are free for the others."""
        for slot in self.shares:
            fields = f"a:{self.worker}", f"w:{self.worker}"
            await self.client.hdel(self.keys.allotments(slot), *fields)
        self.shares.clear()


def _count(limit: float) -> int:
    """A limit as Redis counts it (no limit: a billion)."""
    return int(min(limit, 1e9))


class HostEvents:
    """What one worker learns of a host, told to the others (Redis publish/subscribe):

    * a pause: a 429 with ``Retry-After`` pauses the host for every worker, and
      is kept in Redis until it ends, for workers that start meanwhile;
    * a refusal (429, 503): each worker cuts its own limit for the host as if
      it had been refused, so the job backs off as one client would.
    """

    def __init__(
        self,
        limits: JobShare,
        client: redis.asyncio.Redis,
        keys: JobKeys,
        worker: str,
    ) -> None:
        self.limits = limits
        self.gate = limits.gate
        self.client = client
        self.keys = keys
        self.worker = worker
        self._told: dict[str, float] = {}  # slot -> when this worker last told of a refusal
        limits.events = self

    def refused(self, slot: str) -> None:
        now = time.monotonic()
        if now - self._told.get(slot, -INF) >= REFUSAL_INTERVAL:
            self._told[slot] = now
            self.limits.run(self._publish({"refused": slot}))

    async def paused(self, slot: str, seconds: float) -> None:
        until = time.time() + seconds
        await self.client.hset(self.keys.pauses, slot, str(until))
        await self._publish({"paused": slot, "until": until})

    async def _publish(self, event: dict[str, Any]) -> None:
        await self.client.publish(self.keys.events, json.dumps({"worker": self.worker, **event}))

    async def listen(self, ready: asyncio.Event) -> None:
        async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(self.keys.events)
            for slot, until in (await self.client.hgetall(self.keys.pauses)).items():
                self._pause(slot.decode(), float(until))
            ready.set()
            async for message in pubsub.listen():
                event = json.loads(message["data"])
                if event["worker"] == self.worker:
                    continue
                if "paused" in event:
                    self._pause(event["paused"], event["until"])
                else:
                    slot = event["refused"]
                    self.limits.refused_elsewhere(slot, self.gate.in_flight_to(slot))

    def _pause(self, slot: str, until: float) -> None:
        if (seconds := until - time.time()) > 0:
            logger.info("%s paused for %.1fs: another worker of the job had a 429", slot, seconds)
            self.gate.pause(slot, seconds)
