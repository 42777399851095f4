"""The store's index shared by every worker of a job, in Redis.

Each worker's store keeps its own index too (a folder's, a bucket's local
state); Redis adds what the other workers stored, as little as that takes:
an image stored under each image key (the last recorded: any will do), and
for each content (sha256) the image key whose image holds it. Before storing
new bytes a worker claims their sha256 (the content's field holds the claim
until the image is recorded); a worker that finds them claimed waits for the
claimer to record them, then links or copies them; the claim of a worker
that stopped beating is taken over. Where a post's own images are, the
store's index and the post's results tell: Redis keeps nothing by post.

Finding costs no call of its own: taking a post looked its images up
(``PostQueue.take``), and the worker keeps the answers while the post is in
the crawl. Images finish one after another: what is claimed within 20 ms,
or recorded within 50, goes to Redis as one call (``_Batch``); recording is
a plain command, and only a claim, which decides, runs a script.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

import redis.asyncio
from scrapy.crawler import Crawler

from igimages.job import scripts
from igimages.job.connection import REDIS_ERRORS
from igimages.job.keys import JobKeys
from igimages.job.worker import JobWorker
from igimages.store.catalog import CatalogUnavailable, LocalCatalog
from igimages.store.index import FIELDS, ImageIndex, StoredImage

CLAIM_SECONDS = 300.0  # a claim's lifetime, if its worker beats but never records
WAIT_STEP = (0.02, 0.5)  # polling for a claimed content: first and longest step
# Seconds a call waits to go with others. A claim holds up its image's store;
# a record, made once the image is stored, only its post's end (and a worker
# waiting for the same content): sent every 50 ms instead of 20, records save
# Redis about a fifth of its reads.
CLAIM_DELAY = 0.02
RECORD_DELAY = 0.05
MINE, WAIT = b"1", b"0"
_T = TypeVar("_T")


class _Batch:
    """Calls of one kind made within ``delay`` of each other, sent to Redis as one."""

    def __init__(self, send: Callable[[list[Any]], Awaitable[Sequence[Any]]], delay: float):
        self.send = send
        self.delay = delay
        self.pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self.sending: set[asyncio.Task[None]] = set()

    def __call__(self, args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if not self.pending:
            loop.call_later(self.delay, self._flush)
        future = loop.create_future()
        self.pending.append((args, future))
        return future

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        task = asyncio.ensure_future(self._send(batch))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _send(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            replies = await self.send([args for args, _ in batch])
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            future.set_result(reply)


class JobCatalog(LocalCatalog):
    def __init__(
        self,
        index: ImageIndex,
        client: redis.asyncio.Redis,
        keys: JobKeys,
        worker: str,
        lost: Callable[[BaseException], None],
        indexed: dict[str, dict[str, bytes | None]],
    ) -> None:
        super().__init__(index)
        self.indexed = indexed  # by post folder: the job's index for its images, when taken
        self.client = client
        self.keys = keys
        self.worker = worker
        self.lost = lost  # stops the crawl
        self.storing: set[str] = set()  # contents this worker stores: recorded as they end
        claim = client.register_script(scripts.CLAIM)
        self._unclaim = client.register_script(scripts.UNCLAIM)
        k = keys

        async def claim_all(shas: list[str]) -> Sequence[bytes]:
            now = int(time.time() * 1000)
            args = [worker, now, now + int(CLAIM_SECONDS * 1000), *shas]
            return await claim([k.index, k.contents, k.workers], args)

        async def record_all(images: list[StoredImage]) -> list[None]:
            held = {image.sha256: image.key for image in images if image.sha256 in self.storing}
            self.storing.difference_update(held)
            async with client.pipeline(transaction=False) as pipe:
                pipe.hset(k.index, mapping={image.key: _dump(image) for image in images})
                if held:  # each claim becomes the key of its image
                    pipe.hset(k.contents, mapping=held)
                await pipe.execute()
            return [None] * len(images)

        self._claim = _Batch(claim_all, CLAIM_DELAY)
        self._record = _Batch(record_all, RECORD_DELAY)

    @classmethod
    def from_crawler(cls, crawler: Crawler, index: ImageIndex) -> Self:
        """The catalog of a worker of a job (``IGIMAGES_CATALOG``), through its ``JobWorker``."""
        worker = crawler.get_extension(JobWorker)
        return cls(index, worker.client, worker.keys, worker.worker, worker.lost, worker.indexed)

    async def find(self, post: str, position: int, key: str) -> StoredImage | None:
        if (found := await super().find(post, position, key)) is not None:
            return found
        indexed = self.indexed.get(post, {})
        if key in indexed:
            return self._usable(indexed[key])
        # Not looked up when taken (queued by an earlier version, or keyed otherwise).
        return self._usable(await self._redis(self.client.hget(self.keys.index, key)))

    async def claim(self, image: StoredImage) -> StoredImage | None:
        if (same := await super().claim(image)) is not None:
            return same
        # This process's claim is held: now the job's.
        step = WAIT_STEP[0]
        while (reply := await self._redis(self._claim(image.sha256))) == WAIT:
            await asyncio.sleep(step)
            step = min(2 * step, WAIT_STEP[1])
        same = None if reply == MINE else self._usable(reply)
        if same is None or same.path == image.path:
            self.storing.add(image.sha256)  # claimed, gone from the store, or this very place
            return None
        await super().abandon(image)
        return same

    async def stored(self, image: StoredImage) -> None:
        await self._redis(self._record(image))
        await super().stored(image)

    async def abandon(self, image: StoredImage) -> None:
        self.storing.discard(image.sha256)
        try:
            await self._redis(self._unclaim([self.keys.contents], [self.worker, image.sha256]))
        finally:
            await super().abandon(image)

    async def _redis(self, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except REDIS_ERRORS as exc:
            self.lost(exc)
            raise CatalogUnavailable(str(exc)) from None

    def _usable(self, reply: bytes) -> StoredImage | None:
        if not reply:
            return None
        image = StoredImage(*json.loads(reply))
        return image if self.index.intact(image) else None


def _dump(image: StoredImage) -> str:
    return json.dumps([getattr(image, name) for name in FIELDS], separators=(",", ":"))
