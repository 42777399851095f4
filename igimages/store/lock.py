"""One crawl writes a store at a time: ``StoreLock``, the extension that sees to it.

Two crawls over one store would each rewrite its manifest, failure feed and
summary from the posts they went through, and the second to finish would
silently drop the first one's posts. So a crawl locks its store before
anything is opened and keeps the lock until the engine stops; a second
crawl on the same store is refused at start, in one line that names the
first. The workers of a job (``IGIMAGES_STORE_LOCK = "shared"``, which the
job sets) coordinate through Redis and share the lock: a plain crawl is
refused while they run, and they while it runs.

A folder's lock is ``.igimages/lock`` inside it. A bucket's is in its local
state folder, so it keeps a second crawl off the bucket from this machine;
crawls on several machines over one bucket are the workers of a job.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Self

from scrapy import signals
from scrapy.crawler import Crawler

from igimages.store import locking, state_folder
from igimages.store.index import StoreError

LOCK_NAME = "lock"


class StoreInUse(StoreError):
    """Another live crawl holds the store."""


class StoreLock:
    def __init__(self, path: Path, store: str, job: str | None = None) -> None:
        """Lock ``store`` at ``path``: alone, or shared by the workers of ``job``."""
        self.path = path
        self.file: IO[bytes] | None = locking.try_lock(path, shared=job is not None)
        if self.file is None:
            raise StoreInUse(f"IMAGES_STORE={store} is in use by {_holder(path)}: {_ADVICE}")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        if job is not None:
            holder["job"] = job
        locking.rewrite(self.file, json.dumps(holder).encode())

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        path = state_folder(settings) / LOCK_NAME  # a store of no known kind: StoreError
        store = settings["IMAGES_STORE"]
        job = settings.get("IGIMAGES_JOB") or store
        shared = settings.get("IGIMAGES_STORE_LOCK") == "shared"
        lock = cls(path, store, job if shared else None)
        crawler.signals.connect(lock.release, signal=signals.engine_stopped)
        return lock

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # the lock goes with it
            self.file = None


_ADVICE = (
    "two crawls writing one store would overwrite each other's manifest; wait for it to end, "
    "or run both as workers of one job (REDIS_URL)"
)


def _holder(path: Path) -> str:
    """Who holds the lock, as its holder wrote it."""
    try:
        holder = json.loads(locking.read(path))
        pid, host = int(holder["pid"]), str(holder["host"])
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder["since"])))
    except (ValueError, KeyError, TypeError):
        return "another crawl"
    who = f"process {pid} on {host}, since {since}"
    if job := holder.get("job"):
        return f"the workers of job {job!r} ({who})"
    return f"another crawl ({who})"
