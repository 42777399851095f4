"""The job's posts in Redis: a queue, and a lease on every post a worker has.

A worker takes posts in batches (``take``); each becomes a lease held in its
name, and all of a worker's leases last as long as its heartbeat (``beat``,
every third of ``IGIMAGES_LEASE_SECONDS``), however long a post waits for a
``Retry-After``. A worker that dies stops beating: any worker then puts its
posts back at the queue's front (``reap``). A finished post is acknowledged
with its result (``ack``); one the worker could not finish is put back
(``release``). The scripts themselves are in ``igimages.job.scripts``.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from igimages.items import DOWNLOADED, FAILED, Post, has_failures
from igimages.job import scripts
from igimages.job.keys import JobKeys


def post_payload(post: Post, image_keys: list[str]) -> str:
    """A post as the queue keeps it, its images' keys first: taking it looks them up."""
    payload: dict[str, Any] = {"keys": image_keys, "id": post.id, "url": post.url}
    payload["image_urls"] = post.image_urls
    if post.positions is not None:
        payload["positions"] = post.positions
    return json.dumps(payload, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Taken:
    """A post a worker took, with what the job's index held for its images' keys
    then (``None``: nothing stored under that key)."""

    post: Post
    indexed: dict[str, bytes | None]


def taken_post(payload: bytes, indexed: list[bytes | None]) -> Taken:
    fields = json.loads(payload)
    post = Post(
        fields["id"], fields.get("url"), fields["image_urls"], positions=fields.get("positions")
    )
    # A post queued by an earlier version has no keys: its images are looked up later.
    return Taken(post, dict(zip(fields.get("keys", ()), indexed, strict=True)))


def pack_result(line: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(line, separators=(",", ":")).encode(), 6)


def unpack_result(blob: bytes) -> dict[str, Any]:
    return json.loads(zlib.decompress(blob))


def tally(images: Iterable[dict[str, Any]]) -> Counter[str]:
    """The job's counters for these image results (as ``ImageProgress`` names them)."""
    counts: Counter[str] = Counter()
    for image in images:
        status = image["status"]
        counts[f"images/{status}"] += 1
        if status == FAILED:
            counts[f"failed/{image['reason']}"] += 1
        elif status == DOWNLOADED:
            counts["bytes"] += image.get("bytes") or 0
    return counts


def merge_images(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A post's results after a retry of some of its images: the newer one per position."""
    by_position = {image["position"]: image for image in old}
    by_position.update((image["position"], image) for image in new)
    return [by_position[position] for position in sorted(by_position)]


@dataclass(frozen=True, slots=True)
class Finished:
    """A post a worker has finished, as it acknowledges it."""

    id: str
    url: str | None
    images: list[dict[str, Any]]


def now_ms() -> int:
    return int(time.time() * 1000)


class PostQueue:
    """The worker's side of the queue (asyncio Redis client)."""

    def __init__(self, client: redis.asyncio.Redis, keys: JobKeys, worker: str, lease: float):
        self.client = client
        self.keys = keys
        self.worker = worker
        self.lease_ms = int(lease * 1000)
        self._take = client.register_script(scripts.TAKE)
        self._reap = client.register_script(scripts.REAP)
        self._ack = client.register_script(scripts.ACK)
        self._release = client.register_script(scripts.RELEASE)

    async def take(self, count: int) -> list[Taken]:
        """Up to ``count`` posts, leased to this worker, with their images looked up in
        the job's index in the same round trip."""
        k = self.keys
        reply = await self._take(
            [k.queue, k.posts, k.leases, k.workers, k.index], [self.worker, count, self._deadline()]
        )
        return [
            taken_post(payload, indexed)
            for payload, indexed in zip(reply[::2], reply[1::2], strict=True)
        ]

    async def beat(self) -> None:
        """Keep this worker's leases for another ``IGIMAGES_LEASE_SECONDS``."""
        await self.client.zadd(self.keys.workers, {self.worker: self._deadline()})

    async def reap(self) -> int:
        """Put the posts of workers that stopped beating back in the queue."""
        k = self.keys
        return await self._reap([k.workers, k.leases, k.queue], [now_ms()])

    async def ack(self, finished: list[Finished]) -> int:
        """Record these posts' results (merged with earlier ones) and end their leases."""
        k = self.keys
        earlier = await self.client.hmget(k.results, [post.id for post in finished])
        args: list[Any] = [self.worker]
        for post, blob in zip(finished, earlier, strict=True):
            old = unpack_result(blob)["images"] if blob else []
            images = merge_images(old, post.images) if old else post.images
            change = tally(images)
            change.subtract(tally(old))
            if not blob:
                change["posts/done"] += 1
            counters = [item for pair in change.items() if pair[1] for item in pair]
            line = {"id": post.id, "url": post.url, "images": images}
            # A post with no earlier result is in no set of failed posts.
            failed = "1" if has_failures(images) else "0" if blob else ""
            args += [post.id, pack_result(line), failed, len(counters) // 2, *counters]
        keys = [k.leases, k.posts, k.queue, k.results, k.failed, k.counts, k.version]
        return await self._ack(keys, args)

    async def release(self, ids: Iterable[str]) -> int:
        if not (ids := list(ids)):
            return 0
        return await self._release([self.keys.leases, self.keys.queue], [self.worker, *ids])

    async def leave(self) -> None:
        await self.client.zrem(self.keys.workers, self.worker)

    async def status(self) -> JobStatus:
        return await read_status(self.client, self.keys)

    def _deadline(self) -> int:
        return now_ms() + self.lease_ms


@dataclass(frozen=True, slots=True)
class JobStatus:
    queued: int
    leased: int
    workers: int
    feeders: int
    counts: dict[str, int]

    @property
    def finished(self) -> bool:
        """Nothing queued, leased or being queued: the job is done, for now."""
        return not (self.queued or self.leased or self.feeders)


def _status_pipeline(pipe: Any, keys: JobKeys) -> None:
    now = now_ms()
    pipe.llen(keys.queue)
    pipe.hlen(keys.leases)
    pipe.zcount(keys.workers, now, "+inf")
    pipe.zcount(keys.feeders, now, "+inf")
    pipe.hgetall(keys.counts)


def _status(replies: list[Any]) -> JobStatus:
    queued, leased, workers, feeders, counts = replies
    return JobStatus(
        queued, leased, workers, feeders, {k.decode(): int(v) for k, v in counts.items()}
    )


async def read_status(client: redis.asyncio.Redis, keys: JobKeys) -> JobStatus:
    async with client.pipeline(transaction=False) as pipe:
        _status_pipeline(pipe, keys)
        return _status(await pipe.execute())


def read_status_blocking(client: Any, keys: JobKeys) -> JobStatus:
    with client.pipeline(transaction=False) as pipe:
        _status_pipeline(pipe, keys)
        return _status(pipe.execute())
