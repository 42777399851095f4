"""Resume a job (``-s JOBDIR=DIR``) without going through finished posts again.

Scrapy's own job state does not help here: image downloads never pass the
scheduler, and ``spider.state`` is saved only at a clean close. This spider
middleware keeps, in ``JOBDIR/igimages-posts.sqlite3``, the results of every
post the job finished with all its images stored (committed every few
seconds, so a ``kill -9`` loses at most those seconds), and hands them back
when the same post comes again: the post is not re-checked image by image,
and it is in the new manifest exactly once, with its results. A post with a
failed image is not remembered: a resumed job tries it again, and a retry of
failures never replays one as done.

Those results hold for one store and one input: the folder remembers which,
and a crawl with another store or another input is refused in one line.
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

from igimages.items import Post, has_failures
from igimages.store import StoreUri
from igimages.store.index import StoreError
from igimages.store.statedb import open_state

STATE_FILE = "igimages-posts.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS posts (id TEXT PRIMARY KEY, images TEXT);
CREATE TABLE IF NOT EXISTS made_for (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class ResumeStateMismatch(StoreError):
    """A ``JOBDIR`` made for another store or another input."""


class JobResumeMiddleware:
    COMMIT_INTERVAL = 2.0  # seconds

    def __init__(self, path: Path, crawler: Crawler, made_for: dict[str, str]) -> None:
        try:
            self.db = open_state(path, _SCHEMA, "empty: finished posts are gone through again")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open JOBDIR's {path}: {exc}") from None
        _check_made_for(self.db, path.parent, made_for)
        self.db.execute("BEGIN")
        self.stats = crawler.stats
        self.last_commit = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        jobdir = job_dir(crawler.settings)
        if not jobdir:
            raise NotConfigured
        made_for = {"store": StoreUri.from_settings(crawler.settings).identity}
        source = getattr(crawler.spider, "source", None)
        if source is not None:  # a worker of a job takes its posts from the job
            made_for["input"] = source.identity
        middleware = cls(Path(jobdir, STATE_FILE), crawler, made_for)
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
        if has_failures(item.images):
            self.db.execute("DELETE FROM posts WHERE id = ?", (item.id,))
        else:
            images = json.dumps(item.images)
            self.db.execute("INSERT OR REPLACE INTO posts VALUES (?, ?)", (item.id, images))
        if time.monotonic() - self.last_commit >= self.COMMIT_INTERVAL:
            self.db.execute("COMMIT")
            self.db.execute("BEGIN")
            self.last_commit = time.monotonic()

    def close(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()


def _check_made_for(db: sqlite3.Connection, jobdir: Path, made_for: dict[str, str]) -> None:
    """Refuse a ``JOBDIR`` made for another store or input; remember them in a new one."""
    known = dict(db.execute("SELECT name, value FROM made_for"))
    if not known:  # new (or from a version that did not say): from now on it says
        db.executemany("INSERT INTO made_for VALUES (?, ?)", made_for.items())
        return
    differs = {name: value for name, value in made_for.items() if known.get(name) != value}
    if differs:
        then = ", ".join(f"{name} {known.get(name, '(none)')}" for name in differs)
        now = ", ".join(f"{name} {value}" for name, value in differs.items())
        raise ResumeStateMismatch(
            f"JOBDIR={jobdir} was made for {then}, not {now}: give this crawl a JOBDIR of its "
            "own (or delete that folder to start it afresh)"
        )
