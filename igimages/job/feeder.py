"""Queue a posts input for a job: what ``scrapy crawl -a posts=FILE`` does first.

Queueing is idempotent: a post id the job has had is not queued again, so
the same input fed twice, or by two machines, adds nothing. A failure feed
(``failures.jsonl``) is the exception: its posts are queued again if their
last result still has a failed image and they are not queued already.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from igimages.inputs import PostSource
from igimages.inputs.formats import FORMATS
from igimages.items import Post
from igimages.job import JobError, scripts
from igimages.job.keys import JobKeys, process_name
from igimages.job.queue import now_ms, post_payload
from igimages.keys import DEFAULT_PATH_KEY_HOSTS, image_key

BATCH = 500
FEEDER_LEASE_MS = 60_000


@dataclass(slots=True)
class Fed:
    posts: int = 0  # new to the job
    images: int = 0
    retried: int = 0  # posts queued again to retry their failed images
    known: int = 0  # already queued or done: nothing added


class StoreMismatch(JobError):
    """A worker whose store is not the job's."""


def join_job(client: Any, keys: JobKeys, store: str) -> None:
    """Record the job's store, or check that this worker's is the same."""
    client.hsetnx(keys.meta, "store", store)
    client.hsetnx(keys.meta, "created", str(int(time.time())))
    recorded = client.hget(keys.meta, "store").decode()
    if recorded != store:
        raise StoreMismatch(
            f"job {keys.name!r} stores into {recorded}, not {store}: give every worker "
            "the same IMAGES_STORE, or name another job with -s IGIMAGES_JOB=NAME"
        )


def feed(
    client: Any,
    keys: JobKeys,
    source: PostSource,
    max_images: int = 0,
    path_key_hosts: tuple[str, ...] = DEFAULT_PATH_KEY_HOSTS,
) -> Fed:
    """Queue every post of ``source`` that the job does not have yet."""
    script = client.register_script(scripts.FEED)
    retry = source.format is FORMATS["failures"]
    feeder = process_name()
    fed = Fed()
    try:
        for batch in _batches(
            post for post in source.entries(max_images) if isinstance(post, Post)
        ):
            client.zadd(keys.feeders, {feeder: now_ms() + FEEDER_LEASE_MS})
            args: list[Any] = ["1" if retry else "0"]
            for post in batch:
                image_keys = [image_key(url, path_key_hosts) for url in post.image_urls]
                args += [post.id, post_payload(post, image_keys), len(post.image_urls)]
            added, images, retried = script(
                [keys.order, keys.seq, keys.posts, keys.queue, keys.failed, keys.counts], args
            )
            fed.posts += added
            fed.images += images
            fed.retried += retried
            fed.known += len(batch) - added - retried
    finally:
        client.zrem(keys.feeders, feeder)
    return fed


def _batches(posts: Iterable[Post]) -> Iterable[list[Post]]:
    batch: list[Post] = []
    for post in posts:
        batch.append(post)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
