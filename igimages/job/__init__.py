"""One job over many crawl processes and machines, shared through Redis.

``-s REDIS_URL=redis://host:6379/0`` makes a crawl a worker of the job named
``IGIMAGES_JOB`` (by default, its ``IMAGES_STORE``). Every worker of a job
stores into the same store; Redis holds, under ``igimages:<job>:``:

* the job's posts: a queue, and a lease on each post a worker has taken,
  kept while the worker lives (``igimages.job.queue``);
* the store's index, by image key and by sha256, so that identical bytes
  fetched by two workers are stored once (``igimages.job.catalog``);
* each host's share of the per-host limit and its cool-downs, so the job is
  one client as a server sees it (``igimages.job.limits``);
* each finished post's manifest line and the job's counts, which become the
  store's ``manifest.jsonl``, ``failures.jsonl`` and ``summary.json`` when the
  job ends (``igimages.job.results``).

``JobWorker`` (``igimages.job.worker``) is the extension that makes a crawl a
worker; ``scrapy crawl`` queues a posts input first (``igimages.job.feeder``).
This module is all that a crawl that is not a worker imports: Redis's client
is loaded by a job's crawls only.
"""

from typing import Any

from scrapy.crawler import Crawler
from scrapy.settings import BaseSettings

from igimages.job.keys import JobKeys, job_name, store_identity

__all__ = [
    "JOB_FEEDS_WRITTEN",
    "WORKER",
    "JobError",
    "JobKeys",
    "is_job",
    "job_name",
    "job_worker",
    "store_identity",
]

#: The extension that makes a crawl a worker (added to EXTENSIONS in a job).
WORKER = "igimages.job.worker.JobWorker"
#: The stat set on the worker that wrote the job's feeds (and then its report).
JOB_FEEDS_WRITTEN = "igimages/job/feeds_written"


class JobError(Exception):
    """The job cannot be joined (its Redis unreachable, another store): one line."""


def is_job(settings: BaseSettings) -> bool:
    """Whether a crawl with these settings is a worker of a job (``REDIS_URL``)."""
    return bool(settings.get("REDIS_URL") or settings.get("REDIS_HOST"))


def job_worker(crawler: Crawler) -> Any:
    """The crawl's ``JobWorker``: a crawl with ``REDIS_URL`` has one."""
    from igimages.job.worker import JobWorker  # Redis's client: imported by jobs only

    return crawler.get_extension(JobWorker)
