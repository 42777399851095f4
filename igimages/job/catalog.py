"""The store's index shared by every worker of a job, in Redis.

Each worker's store keeps its own index too (a folder's, a bucket's local
state); Redis adds what the other workers stored: an image by post, position
and key, the first image stored under each key, and the first holding each
content (sha256). Before storing new bytes a worker claims their sha256; a
worker that finds them claimed waits for the claimer to record them, then
links or copies them; the claim of a worker that stopped beating is taken
over.

The pipeline asks about every image of a post at once, and images finish
one after another: the questions asked together go to Redis as one call
(``_Batch``), so a worker makes about one round trip per image, not three.
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
RECORD_DELAY = 0.02  # seconds records wait to go with others
MINE, WAIT = b"1", b"0"
_T = TypeVar("_T")


class _Batch:
    """Calls of one script made within ``delay`` of each other, sent as one."""

    def __init__(self, send: Callable[[list[Any]], Awaitable[Sequence[Any]]], delay: float = 0):
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
    ) -> None:
        super().__init__(index)
        self.client = client
        self.keys = keys
        self.worker = worker
        self.lost = lost  # stops the crawl
        find = client.register_script(scripts.FIND)
        claim = client.register_script(scripts.CLAIM)
        record = client.register_script(scripts.RECORD)
        self._unclaim = client.register_script(scripts.UNCLAIM)
        k = keys

        async def find_all(asked: list[tuple[str, str]]) -> Sequence[bytes]:
            return await find([k.images, k.image_keys], [arg for pair in asked for arg in pair])

        async def claim_all(shas: list[str]) -> Sequence[bytes]:
            claims = [k.claim(sha) for sha in shas]
            now = int(time.time() * 1000)
            args = [worker, int(CLAIM_SECONDS * 1000), now, *shas]
            return await claim([k.images, k.contents, k.workers, *claims], args)

        async def record_all(images: list[StoredImage]) -> list[None]:
            claims = [k.claim(image.sha256) for image in images]
            args: list[Any] = [worker]
            for image in images:
                args += [_place(image), _dump(image), image.key, image.sha256]
            await record([k.images, k.image_keys, k.contents, *claims], args)
            return [None] * len(images)

        self._find = _Batch(find_all)
        self._claim = _Batch(claim_all)
        self._record = _Batch(record_all, RECORD_DELAY)

    @classmethod
    def from_crawler(cls, crawler: Crawler, index: ImageIndex) -> Self:
        """The catalog of a worker of a job (``IGIMAGES_CATALOG``), through its ``JobWorker``."""
        worker = crawler.get_extension(JobWorker)
        return cls(index, worker.client, worker.keys, worker.worker, worker.lost)

    async def find(self, post: str, position: int, key: str) -> StoredImage | None:
        if (found := await super().find(post, position, key)) is not None:
            return found
        return self._usable(await self._redis(self._find((f"{post}/{position}/{key}", key))))

    async def lookup(self, post: str, position: int, key: str) -> StoredImage | None:
        if (found := await super().lookup(post, position, key)) is not None:
            return found
        place = f"{post}/{position}/{key}"
        image = self._usable(await self._redis(self._find((place, ""))))
        return image if image is not None and _place(image) == place else None

    async def claim(self, image: StoredImage) -> StoredImage | None:
        if (same := await super().claim(image)) is not None:
            return same
        # This process's claim is held: now the job's.
        step = WAIT_STEP[0]
        while (reply := await self._redis(self._claim(image.sha256))) == WAIT:
            await asyncio.sleep(step)
            step = min(2 * step, WAIT_STEP[1])
        if reply == MINE:
            return None
        same = self._usable(reply)
        if same is None or same.path == image.path:
            return None  # gone from the store, or this very place: store it again
        await super().abandon(image)
        return same

    async def stored(self, image: StoredImage) -> None:
        await self._redis(self._record(image))
        await super().stored(image)

    async def abandon(self, image: StoredImage) -> None:
        try:
            await self._redis(self._unclaim([self.keys.claim(image.sha256)], [self.worker]))
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


def _place(image: StoredImage) -> str:
    return f"{image.post}/{image.position}/{image.key}"


def _dump(image: StoredImage) -> str:
    return json.dumps([getattr(image, name) for name in FIELDS], separators=(",", ":"))
