"""Resume a job (``-s JOBDIR=DIR``) without going through finished posts again.

Scrapy's own job state does not help here: image downloads never pass the
scheduler, and ``spider.state`` is saved only at a clean close. This spider
middleware keeps, in ``JOBDIR/igimages-posts.sqlite3``, the results of every
post the job finished (committed every few seconds, so a ``kill -9`` loses
at most those seconds), and hands them back when the same post comes again:
the post is not re-checked image by image, and it is in the new manifest
exactly once, with its results.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.job import job_dir

from igimages.items import Post


class JobResumeMiddleware:
    COMMIT_INTERVAL = 2.0  # seconds

    def __init__(self, path: Path, crawler: Crawler) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS posts (id TEXT PRIMARY KEY, images TEXT)")
        self.stats = crawler.stats
        self.last_commit = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        jobdir = job_dir(crawler.settings)
        if not jobdir:
            raise NotConfigured
        middleware = cls(Path(jobdir, "igimages-posts.sqlite3"), crawler)
        crawler.signals.connect(middleware.post_finished, signal=signals.item_scraped)
        crawler.signals.connect(middleware.close, signal=signals.spider_closed)
        return middleware

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for item in start:
            if isinstance(item, Post):
                row = self.db.execute("SELECT images FROM posts WHERE id = ?", (item.id,))
                if (found := row.fetchone()) is not None:
                    item.images, item.resumed = json.loads(found[0]), True
                    self.stats.inc_value("igimages/posts/resumed")
            yield item

    def post_finished(self, item: Any) -> None:
        if not isinstance(item, Post) or item.resumed:
            return
        self.db.execute(
            "INSERT OR REPLACE INTO posts VALUES (?, ?)", (item.id, json.dumps(item.images))
        )
        if time.monotonic() - self.last_commit >= self.COMMIT_INTERVAL:
            self.db.commit()
            self.last_commit = time.monotonic()

    def close(self) -> None:
        self.db.commit()
        self.db.close()
