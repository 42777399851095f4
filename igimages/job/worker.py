"""``JobWorker``: the extension that makes a crawl one worker of a job.

The job's add-on (``igimages.job.Job``) adds it to ``EXTENSIONS``; the
job's classes in the crawl reach Redis through it: the spider's posts
(``posts``, through ``igimages.job.posts``), the pipeline's catalog
(``igimages.job.catalog``) and the gate's share of each host
(``host_share``, through ``igimages.job.limits``). It keeps the worker's side
of the job: its heartbeat (which keeps its leases), acknowledgements of
finished posts with their results, posts it could not finish put back, what
it learns of hosts told to the other workers (pauses, refusals), and the
job-wide progress, said after the crawl's own (``progress_asked``).
When the job has nothing left, the last worker writes the job's feeds.

Losing Redis stops the worker as a full disk does: one line, exit status 1,
nothing stored is lost, and the posts it had are done again later.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.utils.asyncio import create_looping_call
from scrapy.utils.defer import deferred_from_coro
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from igimages import signals as igimages_signals
from igimages.fetch.gate import DownloadGateMiddleware
from igimages.fetch.limits import GateView
from igimages.items import STATUSES, Post
from igimages.job.connection import REDIS_ERRORS, async_client, unavailable
from igimages.job.keys import JobKeys, job_name, process_name
from igimages.job.queue import Finished, JobStatus, PostQueue
from igimages.job.results import job_feeds, write_job_feeds
from igimages.keys import safe_post_dir
from igimages.units import duration

if TYPE_CHECKING:
    from igimages.job.limits import HostEvents, JobShare

logger = logging.getLogger(__name__)

ACK_INTERVAL = 0.5  # seconds a finished post may wait for its acknowledgement
ACK_BATCH = 100
POLL_INTERVAL = 0.2  # seconds between looks at an empty queue while leases are out
TAKE_BATCH = 8  # posts taken at a time, when this worker's downloads wait for none
HUNGRY_CHECK = 0.02  # seconds between looks at whether they do
RATE_WINDOW = 30.0  # seconds the job-wide rate is measured over


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
        self.worker = process_name()
        self.lease = settings.getfloat("IGIMAGES_LEASE_SECONDS")
        self.wait_for_posts = settings.getfloat("IGIMAGES_JOB_WAIT")
        self.feeds = job_feeds(crawler)  # written when the job ends
        self.client = async_client(settings)
        self.queue = PostQueue(self.client, self.keys, self.worker, self.lease)
        self.leased: set[str] = set()  # taken, not yet acknowledged or put back
        # By post folder, while a post is in the crawl: the job's index for its images,
        # as the take found it (the catalog's first answer).
        self.indexed: dict[str, dict[str, bytes | None]] = {}
        self.finished: list[Finished] = []  # waiting for their acknowledgement
        self.acked = 0
        self.status: JobStatus | None = None
        self.error: BaseException | None = None
        self.limits: JobShare | None = None
        self.events: HostEvents | None = None
        self.gate: GateView | None = None
        self._rates: collections.deque[tuple[float, int]] = collections.deque()
        self._loops: list[Any] = []
        self._listening: Deferred[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
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
        connect(worker.progress_text, signal=igimages_signals.progress_asked)
        return worker

    # What the job's classes in the crawl use

    def share_hosts(self, limits: JobShare, events: HostEvents) -> None:
        """The gate's limits are ``limits``, within this worker's share of each host; what
        one worker learns of a host, ``events`` tells the others."""
        self.gate, self.limits, self.events = limits.gate, limits, events

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
                    self.leased.update(each.post.id for each in taken)
                    for each in taken:
                        self.indexed[safe_post_dir(each.post.id)] = each.indexed
                        yield each.post
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
        if room <= 0 or (self.gate is not None and self.gate.waiting_slots()):
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
        # After the spider opened: the gate was built, with this worker's share.
        if self.gate is None:
            self.gate = self.crawler.get_downloader_middleware(DownloadGateMiddleware)
        if self.limits is None or self.events is None or self.error is not None:
            return
        self._every(self.limits.SYNC_INTERVAL, self.limits.sync)
        listening = asyncio.Event()
        self._listening = self.run(self.events.listen(listening))
        await asyncio.wait_for(listening.wait(), 10)

    def post_finished(self, item: Any) -> None:
        if not isinstance(item, Post):
            return
        self.indexed.pop(safe_post_dir(item.id), None)
        if item.id in self.leased:
            self.finished.append(Finished(item.id, item.url, item.images))
            if len(self.finished) >= ACK_BATCH:
                self.run(self._acknowledge())

    def post_unfinished(self, item: Any, **kwargs: Any) -> None:
        """A post the crawl stopped before it finished: another worker does it."""
        if not isinstance(item, Post):
            return
        self.indexed.pop(safe_post_dir(item.id), None)
        if item.id in self.leased:
            self.leased.discard(item.id)
            self.run(self.queue.release([item.id]))

    def host_paused(self, slot: str, seconds: float) -> None:
        if self.events is not None:
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

    def progress_text(self) -> str:
        """The whole job's progress, for the crawl's progress line."""
        if (job := self.progress()) is None:
            return ""
        text = f"job {job.name}: {job.done}/{job.total} images"
        if job.total:
            text += f" ({100 * job.done / job.total:.0f}%)"
        text += f", {job.rate:.1f} images/s"
        if job.rate and job.total > job.done:
            text += f", ETA {duration((job.total - job.done) / job.rate)}"
        return f"{text}, {job.workers} workers"

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
            written = await write_job_feeds(self.client, k, self.crawler, self.feeds)
            await self.client.set(k.merged, version or b"0")
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
        igimages_signals.stop_crawl(self.crawler, "redis_error")
