"""Scrapy's own cost per image, with nothing done to the images.

Run as ``scrapy runspider benchmarks/floor.py -a posts=PATH`` from the project
root, so the project's settings apply: the same download handler, downloader
middlewares and extensions as ``scrapy crawl post_images``. Every distinct
image URL of the posts is fetched the way the images pipeline fetches it
(``engine.download_async``, outside the scheduler), CONCURRENT_REQUESTS at a
time, and the body is dropped: no item pipeline, no Pillow, no hashing, no
files, no index, no feeds. What this costs is the least any crawl built on
Scrapy's engine can cost on this route.

It writes ``floor.json`` (responses, 200s, body bytes) to IMAGES_STORE.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from scrapy import Request, Spider


class FloorSpider(Spider):
    name = "floor"
    custom_settings = {"ITEM_PIPELINES": {}}  # noqa: RUF012

    def __init__(self, posts: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.posts = posts
        self.counts = {"responses": 0, "ok": 0, "bytes": 0}

    async def start(self) -> AsyncIterator[Any]:
        with open(self.posts, encoding="utf-8") as file:
            posts = json.load(file)
        urls = dict.fromkeys(url for post in posts for url in post["media"]["images"])
        slots = asyncio.Semaphore(self.settings.getint("CONCURRENT_REQUESTS"))
        await asyncio.gather(*(self._fetch(url, slots) for url in urls))
        return
        yield  # an async generator that yields nothing: no items, no requests

    async def _fetch(self, url: str, slots: asyncio.Semaphore) -> None:
        async with slots:
            response = await self.crawler.engine.download_async(Request(url))
        self.counts["responses"] += 1
        if response.status == 200:
            self.counts["ok"] += 1
            self.counts["bytes"] += len(response.body)

    def closed(self, reason: str) -> None:
        out = Path(self.settings["IMAGES_STORE"], "floor.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.counts))
