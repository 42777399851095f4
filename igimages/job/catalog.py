"""The store's index shared by every worker of a job, in Redis.

Each worker's store keeps its own index too (a folder's, a bucket's local
state); Redis adds what the other workers stored: an image by post, position
and key, the first image stored under each key, and the first holding each
content (sha256). Before storing new bytes a worker claims their sha256; a
worker that finds them claimed waits for the claimer to record them, then
links or copies them. A claim outlives a worker that died by
``CLAIM_SECONDS`` at most.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio

from igimages.catalog import CatalogUnavailable, LocalCatalog
from igimages.index import FIELDS, ImageIndex, StoredImage
from igimages.job import scripts
from igimages.job.connection import REDIS_ERRORS
from igimages.job.keys import JobKeys

CLAIM_SECONDS = 300.0
WAIT_STEP = (0.02, 0.5)  # polling for a claimed content: first and longest step
_T = TypeVar("_T")


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
        self._find = client.register_script(scripts.FIND)
        self._claim = client.register_script(scripts.CLAIM)
        self._record = client.register_script(scripts.RECORD)
        self._unclaim = client.register_script(scripts.UNCLAIM)

    async def find(self, post: str, position: int, key: str) -> StoredImage | None:
        if (found := await super().find(post, position, key)) is not None:
            return found
        keys = [self.keys.images, self.keys.image_keys]
        return self._usable(await self._redis(self._find(keys, [_place(post, position, key), key])))

    async def lookup(self, post: str, position: int, key: str) -> StoredImage | None:
        if (found := await super().lookup(post, position, key)) is not None:
            return found
        place = _place(post, position, key)
        return self._usable(await self._redis(self.client.hget(self.keys.images, place)))

    async def claim(self, image: StoredImage) -> StoredImage | None:
        if (same := await super().claim(image)) is not None:
            return same
        # This process's claim is held: now the job's.
        step = WAIT_STEP[0]
        while True:
            reply = await self._redis(
                self._claim(
                    [self.keys.images, self.keys.contents, self.keys.claim(image.sha256)],
                    [image.sha256, self.worker, int(CLAIM_SECONDS * 1000)],
                )
            )
            if reply == 1:
                return None
            if reply != 0:
                same = self._usable(reply)
                if same is not None and same.path != image.path:
                    await super().abandon(image)
                    return same
                return None  # gone from the store, or this very place: store it again
            await asyncio.sleep(step)
            step = min(2 * step, WAIT_STEP[1])

    async def stored(self, image: StoredImage) -> None:
        k = self.keys
        await self._redis(
            self._record(
                [k.images, k.image_keys, k.contents, k.claim(image.sha256)],
                [
                    _place(image.post, image.position, image.key),
                    _dump(image),
                    image.key,
                    image.sha256,
                    self.worker,
                ],
            )
        )
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

    def _usable(self, reply: bytes | None) -> StoredImage | None:
        if not reply:
            return None
        image = StoredImage(*json.loads(reply))
        return image if self.index.intact(image) else None


def _place(post: str, position: int, key: str) -> str:
    return f"{post}/{position}/{key}"


def _dump(image: StoredImage) -> str:
    return json.dumps([getattr(image, name) for name in FIELDS], separators=(",", ":"))
