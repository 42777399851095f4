"""The Redis keys of one job, the job's name, and the names of its processes."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from scrapy.settings import BaseSettings

from igimages.store import StoreUri


@dataclass(frozen=True, slots=True)
class JobKeys:
    """Every key of the job ``name``; all start with ``igimages:<name>:``."""

    name: str

    def _key(self, suffix: str) -> str:
        return f"igimages:{self.name}:{suffix}"

    @property
    def prefix(self) -> str:
        return self._key("")

    # The posts (queue.py)
    @property
    def meta(self) -> str:  # hash: store, created
        return self._key("meta")

    @property
    def order(self) -> str:  # sorted set: every post id ever queued, by its order in the inputs
        return self._key("order")

    @property
    def seq(self) -> str:  # counter behind ``order``
        return self._key("seq")

    @property
    def posts(self) -> str:  # hash: post id -> the post, while queued or leased
        return self._key("posts")

    @property
    def queue(self) -> str:  # list of post ids waiting for a worker
        return self._key("queue")

    @property
    def leases(self) -> str:  # hash: post id -> the worker that has it
        return self._key("leases")

    @property
    def workers(self) -> str:  # sorted set: worker -> the time its leases expire (ms)
        return self._key("workers")

    @property
    def feeders(self) -> str:  # sorted set: processes queueing an input -> deadline (ms)
        return self._key("feeders")

    # What the job has done (results.py)
    @property
    def results(self) -> str:  # hash: post id -> its manifest line, compressed
        return self._key("results")

    @property
    def failed(self) -> str:  # set: ids of posts whose last result has a failed image
        return self._key("failed")

    @property
    def counts(self) -> str:  # hash: the job's counters
        return self._key("counts")

    @property
    def version(self) -> str:  # counter: changes with every acknowledgement
        return self._key("version")

    @property
    def merging(self) -> str:  # lock: the worker writing the job's feeds
        return self._key("merging")

    @property
    def merged(self) -> str:  # the version the feeds in the store were written at
        return self._key("merged")

    # The store's index (catalog.py)
    @property
    def index(self) -> str:  # hash: image key -> an image stored under it
        return self._key("index")  # not "keys": earlier versions kept pointers there

    @property
    def contents(self) -> str:  # hash: sha256 -> the image key holding it, or its claim
        return self._key("contents")

    # Politeness (limits.py)
    def allotments(self, slot: str) -> str:  # hash: a:<worker> allotted, w:<worker> wanted
        return self._key(f"allot:{slot}")

    @property
    def events(self) -> str:  # channel: host pauses, as they happen
        return self._key("events")

    @property
    def pauses(self) -> str:  # hash: host -> until when it is paused (Unix time)
        return self._key("pauses")


def job_name(settings: BaseSettings) -> str:
    """``IGIMAGES_JOB``, or else the store: workers of one store are one job."""
    return settings.get("IGIMAGES_JOB") or StoreUri.from_settings(settings).identity


def process_name() -> str:
    """This process, as the job's keys name it (a worker, a feeder): host, pid, and a
    random part, so a pid reused after a restart is another name."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
