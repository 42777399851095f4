"""The job's feeds: every post's last result, from Redis into the store.

Workers acknowledge each finished post with its manifest line (merged by
position with an earlier one, when a retry redid some images). When the job
has nothing queued or leased, the worker that finished last writes
``manifest.jsonl``, ``failures.jsonl`` and ``summary.json`` into the store,
in the order the posts were queued, each replacing the previous file only
once whole; ``scrapy job merge`` writes them again at any time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis.asyncio
from scrapy.crawler import Crawler
from scrapy.exporters import JsonLinesItemExporter

from igimages.items import Post, has_failures
from igimages.job.keys import JobKeys
from igimages.job.queue import read_status, unpack_result
from igimages.outputs.feeds import FAILURES, MANIFEST, MANIFEST_FIELDS, SUMMARY, FailuresExporter
from igimages.outputs.storages import WholeFile, store_whole
from igimages.store import StoreUri

CHUNK = 1000  # posts read from Redis at a time


@dataclass(slots=True)
class Written:
    posts: int = 0
    unfinished: int = 0  # queued, but with no result yet
    failed_posts: int = 0
    uris: tuple[str, ...] = ()


async def write_job_feeds(client: redis.asyncio.Redis, keys: JobKeys, crawler: Crawler) -> Written:
    """Write the job's manifest, failure feed and summary into its store."""
    store = StoreUri.from_settings(crawler.settings)
    manifest_uri, failures_uri, summary_uri = (store.file(n) for n in (MANIFEST, FAILURES, SUMMARY))
    written = Written()
    manifest = WholeFile(crawler, manifest_uri)
    failures = WholeFile(crawler, failures_uri)
    manifest_lines = JsonLinesItemExporter(
        manifest.file, fields_to_export=MANIFEST_FIELDS, encoding="utf-8"
    )
    failure_lines = FailuresExporter(failures.file, encoding="utf-8")
    start = 0
    while ids := await client.zrange(keys.order, start, start + CHUNK - 1):
        start += len(ids)
        for blob in await client.hmget(keys.results, ids):
            if blob is None:
                written.unfinished += 1
                continue
            line = unpack_result(blob)
            written.posts += 1
            manifest_lines.export_item(line)
            if has_failures(line["images"]):
                written.failed_posts += 1
                failure_lines.export_item(Post(line["id"], line["url"], [], line["images"]))
    status = await read_status(client, keys)
    summary = {
        **status.counts,
        "job": keys.name,
        "finish_reason": "finished" if status.finished and not written.unfinished else "unfinished",
        "posts/unfinished": written.unfinished,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    await manifest.store()
    await failures.store()
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    await store_whole(crawler, summary_uri, text.encode())
    written.uris = (manifest_uri, failures_uri, summary_uri)
    return written
