"""``JobWorker``: the extension that makes a crawl one worker of a job.

With ``REDIS_URL`` set, the spider takes its posts from the job's queue
(``posts``) instead of an input, and this extension keeps the worker's side
of the job: its heartbeat (which keeps its leases), acknowledgements of
finished posts with their results, posts it could not finish put back, the
shared index for the pipeline (``catalog``), its share of each host's
limit, what it learns of hosts told to the other workers (pauses, refusals),
and the job-wide progress.
When the job has nothing left, the last worker writes the job's feeds.

Losing Redis stops the worker as a full disk does: one line, exit status 1,
nothing stored is lost, and the posts it had are done again later.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call
from scrapy.utils.defer import deferred_from_coro
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from igimages import signals as igimages_signals
from igimages.index import ImageIndex
from igimages.items import Post
from igimages.job import JOB_FEEDS_WRITTEN, is_job
from igimages.job.catalog import JobCatalog
from igimages.job.connection import REDIS_ERRORS, async_client, unavailable
from igimages.job.keys import JobKeys, job_name
from igimages.job.limits import SYNC_INTERVAL, HostEvents, JobHostLimits
from igimages.job.queue import Finished, JobStatus, PostQueue
from igimages.job.results import write_job_feeds
from igimages.middlewares import DownloadGateMiddleware

logger = logging.getLogger(__name__)

ACK_INTERVAL = 0.5  # seconds a finished post may wait for its acknowledgement
ACK_BATCH = 100
POLL_INTERVAL = 0.2  # seconds between looks at an empty queue while leases are out
TAKE_BATCH = 8  # posts taken at a time, when this worker's downloads wait for none
HUNGRY_CHECK = 0.02  # seconds between looks at whether they do
RATE_WINDOW = 30.0  # seconds the job-wide rate is measured over
STATUSES = ("downloaded", "cached", "duplicate", "failed")


@dataclass(frozen=True, slots=True)
class JobProgress:
    name: str
    done: int  # images, by every worker
    total: int
    rate: float  # images per second, over the last RATE_WINDOW
    workers: int


class JobWorker:
    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.keys = JobKeys(job_name(settings))
        self.worker = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.lease = settings.getfloat("IGIMAGES_LEASE_SECONDS")
        self.wait_for_posts = settings.getfloat("IGIMAGES_JOB_WAIT")
        self.client = async_client(settings)
        self.queue = PostQueue(self.client, self.keys, self.worker, self.lease)
        self.leased: set[str] = set()  # taken, not yet acknowledged or put back
        self.finished: list[Finished] = []  # waiting for their acknowledgement
        self.acked = 0
        self.status: JobStatus | None = None
        self.error: BaseException | None = None
        self.limits: JobHostLimits | None = None
        self.gate: DownloadGateMiddleware | None = None
        self._rates: collections.deque[tuple[float, int]] = collections.deque()
        self._loops: list[Any] = []
        self._listening: Deferred[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not is_job(crawler.settings):
            raise NotConfigured
        worker = cls(crawler)
        connect = crawler.signals.connect
        connect(worker.engine_started, signal=signals.engine_started)
        connect(worker.spider_opened, signal=signals.spider_opened)
        connect(worker.spider_closed, signal=signals.spider_closed)
        connect(worker.post_finished, signal=signals.item_scraped)
        # A post that failed with an error stays leased until the worker ends:
        # put back at once, it would go from worker to worker.
        connect(worker.post_unfinished, signal=signals.item_dropped)
        connect(worker.host_paused, signal=igimages_signals.host_paused)
        return worker

    # What the pipeline and the spider use

    def catalog(self, index: ImageIndex) -> JobCatalog:
        return JobCatalog(index, self.client, self.keys, self.worker, self.lost)

    async def posts(self, room: Callable[[], int]) -> AsyncIterator[Post]:
        """The job's posts, a few at a time (at most ``room()``), until the job has none left.

        A worker waits while other workers hold leases (one of them may die
        and leave its posts), while an input is being queued, and for at
        most ``IGIMAGES_JOB_WAIT`` seconds for a job that has had no posts.
        """
        began = time.monotonic()
        try:
            while self.error is None:
                if (count := self._room(room())) == 0:
                    await asyncio.sleep(HUNGRY_CHECK)
                    continue
                taken = await self.queue.take(count)
                if taken:
                    self.leased.update(post.id for post in taken)
                    for post in taken:
                        yield post
                    continue
                status = self.status = await self.queue.status()
                others_leased = status.leased - len(self.leased)
                if not (status.queued or others_leased > 0 or status.feeders):
                    had_posts = status.counts.get("posts/total", 0) > 0
                    if had_posts or time.monotonic() - began > self.wait_for_posts:
                        if not had_posts:
                            logger.warning(
                                "Job %r has no posts: give one worker -a posts=FILE", self.keys.name
                            )
                        return
                await self.queue.reap()
                await asyncio.sleep(POLL_INTERVAL)
        except REDIS_ERRORS as exc:
            self.lost(exc)

    def _room(self, room: int) -> int:
        """How many posts to take now: none while this worker's downloads wait
        for room (the other workers may start them sooner), a few otherwise."""
        if room <= 0 or (self.gate is not None and self.gate.waiting):
            return 0
        return min(room, TAKE_BATCH)

    # Signals

    async def spider_opened(self) -> None:
        logger.info("Worker %s of job %r", self.worker, self.keys.name)
        try:
            await self.queue.beat()
        except REDIS_ERRORS as exc:
            self.lost(exc)
            return
        self._every(self.lease / 3, self._beat)
        self._every(ACK_INTERVAL, self._acknowledge)

    async def engine_started(self) -> None:
        # After the spider opened, and after AdaptiveConcurrency's handler
        # (an extension of EXTENSIONS_BASE, so connected first): the gate's
        # limits are final; this worker's are now within the job's.
        gate = self.gate = self.crawler.get_downloader_middleware(DownloadGateMiddleware)
        if gate is None or self.error is not None:
            return
        self.limits = JobHostLimits(
            gate.host_limits, gate, self.client, self.keys, self.worker, self.run
        )
        gate.host_limits = self.limits
        self.events = HostEvents(self.limits, self.client, self.keys, self.worker)
        self._every(SYNC_INTERVAL, self.limits.sync)
        listening = asyncio.Event()
        self._listening = self.run(self.events.listen(listening))
        await asyncio.wait_for(listening.wait(), 10)

    def post_finished(self, item: Any) -> None:
        if isinstance(item, Post) and item.id in self.leased:
            self.finished.append(Finished(item.id, item.url, item.images))
            if len(self.finished) >= ACK_BATCH:
                self.run(self._acknowledge())

    def post_unfinished(self, item: Any, **kwargs: Any) -> None:
        """A post the crawl stopped before it finished: another worker does it."""
        if isinstance(item, Post) and item.id in self.leased:
            self.leased.discard(item.id)
            self.run(self.queue.release([item.id]))

    def host_paused(self, slot: str, seconds: float) -> None:
        if self.limits is not None:
            self.run(self.events.paused(slot, seconds))

    async def spider_closed(self, reason: str) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        if self._listening is not None:
            self._listening.cancel()
        if self.error is not None:
            return
        try:
            await self._acknowledge()
            unfinished = self.leased - {post.id for post in self.finished}
            if unfinished:
                await self.queue.release(unfinished)
                logger.info("Put %d unfinished posts back in the job's queue", len(unfinished))
            if self.limits is not None:
                await self.limits.give_back()
            await self.queue.leave()
            status = await self.queue.status()
            if reason == "finished" and status.finished and self.acked:
                await self._write_feeds()
            elif status.queued or status.leased:
                logger.info(
                    "Job %r goes on: %d posts queued, %d with other workers",
                    self.keys.name,
                    status.queued,
                    status.leased,
                )
        except REDIS_ERRORS as exc:
            logger.error(
                "%s: this worker's last results are not recorded",
                unavailable(self.crawler.settings, exc),
            )
        finally:
            await self.client.aclose()

    # Progress (ImageProgress asks)

    def progress(self) -> JobProgress | None:
        """The job's images done of its total and its rate, as of the last status."""
        if self.status is None:
            return None
        counts = self.status.counts
        done = sum(counts.get(f"images/{status}", 0) for status in STATUSES)
        now = time.monotonic()
        self._rates.append((now, done))
        while now - self._rates[0][0] > RATE_WINDOW:
            self._rates.popleft()
        then, before = self._rates[0]
        rate = (done - before) / (now - then) if now > then else 0.0
        return JobProgress(
            self.keys.name, done, counts.get("images/total", 0), rate, self.status.workers
        )

    # The worker's Redis calls

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Deferred[Any] | None:
        """Run ``coroutine`` on its own; if Redis fails it, stop the crawl."""
        if self.error is not None:
            coroutine.close()
            return None
        return deferred_from_coro(coroutine).addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        if failure.check(*REDIS_ERRORS):
            self.lost(failure.value)
        elif not failure.check(asyncio.CancelledError, CancelledError):
            exc_info = failure.type, failure.value, failure.getTracebackObject()
            logger.error("Job worker: %s", failure.getErrorMessage(), exc_info=exc_info)

    def _every(self, interval: float, call: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        def tick() -> None:
            self.run(call())

        loop = create_looping_call(tick)
        loop.start(interval, now=False)
        self._loops.append(loop)

    async def _beat(self) -> None:
        await self.queue.beat()
        if returned := await self.queue.reap():
            logger.info("Put %d posts of stopped workers back in the job's queue", returned)

    async def _acknowledge(self) -> None:
        finished, self.finished = self.finished, []
        if finished:
            try:
                await self.queue.ack(finished)
            except BaseException:
                self.finished[:0] = finished
                raise
            self.leased.difference_update(post.id for post in finished)
            self.acked += len(finished)
        self.status = await self.queue.status()

    async def _write_feeds(self) -> None:
        """The job's feeds, unless another worker finishing with this one writes them."""
        k = self.keys
        if not await self.client.set(k.merging, self.worker, nx=True, px=600_000):
            return
        try:
            version = await self.client.get(k.version)
            if version == await self.client.get(k.merged):
                return
            written = await write_job_feeds(self.client, k, self.crawler)
            await self.client.set(k.merged, version or b"0")
            self.crawler.stats.set_value(JOB_FEEDS_WRITTEN, True)
        except Exception as exc:
            if isinstance(exc, REDIS_ERRORS):
                raise
            logger.error("Cannot write the job's feeds: %s (scrapy job merge writes them)", exc)
            return
        finally:
            await self.client.delete(k.merging)
        logger.info(
            "Job %r finished: %d posts (%d with failed images); wrote %s",
            self.keys.name,
            written.posts,
            written.failed_posts,
            ", ".join(written.uris),
        )

    def lost(self, exc: BaseException) -> None:
        """Redis is gone: stop as a full disk stops the crawl."""
        if self.error is not None:
            return
        self.error = unavailable(self.crawler.settings, exc)
        logger.error(
            "Stopping: %s. Nothing stored is lost; run the same command again when "
            "Redis is back, and the job goes on where it was.",
            self.error,
        )
        self.crawler.stats.set_value("igimages/job_error", str(self.error))
        self.crawler.signals.send_catch_log(igimages_signals.stop_downloads)
        engine = self.crawler.engine
        if engine is not None and engine.spider is not None:
            deferred_from_coro(engine.close_spider_async(reason="redis_error"))
