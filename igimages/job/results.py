"""The job's feeds: every post's last result, from Redis into the store.

Workers acknowledge each finished post with its manifest line (merged by
position with an earlier one, when a retry redid some images). When the job
has nothing queued or leased, the worker that finished last writes
the store's feeds, the very ones a crawl writes (``store_feeds``: the manifest
and failure feed, and the data set's with ``IGIMAGES_DATASET``) with the same
exporters, and ``summary.json``, in the order the posts were queued, each
replacing the previous file only once whole; ``scrapy job merge`` writes them
again at any time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from scrapy.crawler import Crawler
from scrapy.exporters import BaseItemExporter
from scrapy.extensions.feedexport import ItemFilter
from scrapy.utils.misc import build_from_crawler, load_object

from igimages.items import Post, has_failures
from igimages.job.keys import JobKeys
from igimages.job.queue import read_status, unpack_result
from igimages.outputs.feeds import SUMMARY, store_feeds
from igimages.outputs.storages import WholeFile, store_whole
from igimages.store import StoreUri

CHUNK = 1000  # posts read from Redis at a time


@dataclass(slots=True)
class Written:
    posts: int = 0
    unfinished: int = 0  # queued, but with no result yet
    failed_posts: int = 0
    uris: tuple[str, ...] = ()


def job_feeds(crawler: Crawler) -> dict[str, dict[str, Any]]:
    """The feeds the job writes into its store: a crawl's own (``store_feeds``). Asked
    for when a worker starts, so that one the job could not write stops it then."""
    return store_feeds(StoreUri.from_settings(crawler.settings), crawler.settings)


@dataclass(slots=True)
class JobFeed:
    """One of the store's feeds, as the job writes it: its file, exporter and filter."""

    uri: str
    whole: WholeFile
    exporter: BaseItemExporter
    filter: ItemFilter

    @classmethod
    def open(cls, crawler: Crawler, uri: str, options: dict[str, Any]) -> JobFeed:
        whole = WholeFile(crawler, uri)
        exporter_class = load_object(
            crawler.settings.getwithbase("FEED_EXPORTERS")[options["format"]]
        )
        exporter = build_from_crawler(
            exporter_class,
            crawler,
            whole.file,
            fields_to_export=options.get("fields"),
            encoding="utf-8",
        )
        item_filter = load_object(options.get("item_filter") or ItemFilter)(options)
        exporter.start_exporting()
        return cls(uri, whole, exporter, item_filter)

    def export(self, post: Post) -> None:
        if self.filter.accepts(post):
            self.exporter.export_item(post)

    async def store(self) -> None:
        self.exporter.finish_exporting()
        await self.whole.store()


async def write_job_feeds(
    client: redis.asyncio.Redis, keys: JobKeys, crawler: Crawler, feeds: dict[str, dict[str, Any]]
) -> Written:
    """Write the job's ``feeds`` (``job_feeds``) and summary into its store."""
    store = StoreUri.from_settings(crawler.settings)
    opened = [JobFeed.open(crawler, uri, options) for uri, options in feeds.items()]
    written = Written()
    start = 0
    while ids := await client.zrange(keys.order, start, start + CHUNK - 1):
        start += len(ids)
        for blob in await client.hmget(keys.results, ids):
            if blob is None:
                written.unfinished += 1
                continue
            line = unpack_result(blob)
            post = Post(line["id"], line["url"], [], line["images"])
            written.posts += 1
            written.failed_posts += has_failures(post.images)
            for feed in opened:
                feed.export(post)
    status = await read_status(client, keys)
    summary = {
        **status.counts,
        "job": keys.name,
        "finish_reason": "finished" if status.finished and not written.unfinished else "unfinished",
        "posts/unfinished": written.unfinished,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for feed in opened:
        await feed.store()
    summary_uri = store.file(SUMMARY)
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    await store_whole(crawler, summary_uri, text.encode())
    written.uris = (*feeds, summary_uri)
    return written
