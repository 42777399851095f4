"""The HTTP download handler: Scrapy's own aiohttp-based one.

Against the Twisted HTTP/1.1 handler, on the benchmark's corpus, a crawl
takes about a quarter less CPU, and aiohttp is already one of Scrapy's
dependencies. Scrapy 2.19 marks it experimental and logs a
warning on every run; igimages pins that Scrapy release and its tests run
every fault they care about (drops, truncation, timeouts, 429, 5xx, proxies)
through this handler, so the warning is left out.
"""

from __future__ import annotations

from typing import ClassVar

from scrapy.core.downloader.handlers._aiohttp import AiohttpDownloadHandler
from scrapy.crawler import Crawler

from igimages.addresses import GuardedResolver


class ImageDownloadHandler(AiohttpDownloadHandler):
    """Scrapy's aiohttp handler, resolving names through ``GuardedResolver``."""

    experimental: ClassVar[bool] = False
    # Made at the first request: a crawl that cannot start (a store that cannot
    # be opened) then leaves no client session open.
    lazy: ClassVar[bool] = True

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        # Scrapy builds the connector itself and aiohttp offers no setter.
        connector = self._session.connector
        connector._resolver = GuardedResolver(connector._resolver)  # type: ignore[union-attr]
