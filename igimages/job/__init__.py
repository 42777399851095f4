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
"""

from igimages.job.keys import JobKeys, job_name, store_identity

__all__ = ["JobKeys", "job_name", "store_identity"]
