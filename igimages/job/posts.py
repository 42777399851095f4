"""Where a worker's posts come from: the job's queue (``IGIMAGES_POSTS`` in a job).

Before the crawl, ``scrapy crawl`` joins the job (its Redis reachable, its
store this worker's) and queues the posts input it was given, if any
(``igimages.job.feeder``); the spider then takes the job's posts from the
worker (``igimages.job.worker``) until the job has none left.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

from scrapy.crawler import Crawler
from scrapy.settings import BaseSettings

from igimages.inputs import InputSpec, PostSource
from igimages.items import Post
from igimages.job.connection import REDIS_ERRORS, blocking_client, unavailable
from igimages.job.feeder import feed, join_job
from igimages.job.keys import JobKeys, job_name
from igimages.job.worker import JobWorker
from igimages.store import StoreUri

logger = logging.getLogger(__name__)


class JobPosts:
    def __init__(self, worker: JobWorker) -> None:
        self.worker = worker

    @classmethod
    def prepare(cls, settings: BaseSettings, arguments: dict[str, str]) -> dict[str, Any]:
        """Join the job and queue ``-a posts=`` for it, if given: the posts' ids new to
        the job (a failure feed's: those that still have failed images)."""
        source = PostSource(InputSpec.from_args(arguments)) if arguments.get("posts") else None
        keys = JobKeys(job_name(settings))
        client = blocking_client(settings)
        try:
            join_job(client, keys, StoreUri.from_settings(settings).identity)
            if source is not None:
                max_images = settings.getint("IGIMAGES_MAX_IMAGES_PER_POST")
                path_key_hosts = tuple(settings.getlist("IGIMAGES_PATH_KEY_HOSTS"))
                fed = feed(client, keys, source, max_images, path_key_hosts)
                logger.info(
                    "Job %r: queued %d new posts (%d images) from %s%s; %d were in the job already",
                    keys.name,
                    fed.posts,
                    fed.images,
                    source.name,
                    f", and {fed.retried} posts again to retry their failures"
                    if fed.retried
                    else "",
                    fed.known,
                )
        except REDIS_ERRORS as exc:
            raise unavailable(settings, exc) from None
        finally:
            client.close()
        return {}  # the spider takes its posts from the job

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler.get_extension(JobWorker))

    def posts(self, room: Callable[[], int]) -> AsyncIterator[Post]:
        return self.worker.posts(room)
