"""The pipeline: every image of a post requested, checked and kept, once per content.

``PostImagesPipeline`` is a ``MediaPipeline``, Scrapy's base of its files and
images pipelines: it makes the requests and shares one download between the
posts that want the same URL at once. ``FilesPipeline`` is not its base
because nothing of it would be used: the original bytes are kept (Pillow only
checks them, ``igimages.validation``), files are named by post, position and
a key that survives re-scrapes, what is stored is found in the store's index
without a request, and every failure keeps its real reason. Finding, storing
and placing an image is ``igimages.store.keeper``'s; which store and which
catalog, the settings' (``IGIMAGES_STORES``, ``IGIMAGES_CATALOG``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from typing import Any, Self

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.http import Response
from scrapy.pipelines.media import MediaPipeline
from scrapy.utils.misc import build_from_crawler, load_object
from twisted.python.failure import Failure

from igimages import signals as igimages_signals
from igimages.fetch.addresses import AddressPolicy
from igimages.fetch.gate import ATTEMPTS, Attempts
from igimages.fetch.reasons import ImageFailed, expired_link, failed_answer
from igimages.items import DOWNLOADED, FAILED, INTERRUPTED, Post
from igimages.keys import image_key, is_signed_cdn, link_expiry, safe_post_dir
from igimages.store import StoreError, open_store
from igimages.store.catalog import CatalogUnavailable
from igimages.store.keeper import ImageKeeper, Place
from igimages.validation import ImageRejected, inspect_image

logger = logging.getLogger(__name__)

#: Request meta key: the ``Place`` an image request is for.
PLACE = "igimages_place"


class _NoResultCache(dict):
    """Stands in for ``MediaPipeline``'s result cache, which never shrinks.

    Requests for the same URL that are in flight together still share one
    download (``info.downloading`` and ``info.waiting``); an image seen again
    later is found in the store's index instead of in memory.
    """

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class _HideHandledFailures(logging.Filter):
    """Drop Scrapy's traceback for failures this pipeline reports itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ImageFailed | StoreError | CatalogUnavailable)


class PostImagesPipeline(MediaPipeline):
    LOG_FAILED_RESULTS = False

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler=crawler)
        settings = crawler.settings
        self.min_width = settings.getint("IMAGES_MIN_WIDTH")
        self.min_height = settings.getint("IMAGES_MIN_HEIGHT")
        self.max_pixels = settings.getint("IGIMAGES_MAX_PIXELS")
        self.path_key_hosts = tuple(settings.getlist("IGIMAGES_PATH_KEY_HOSTS"))
        self.address_policy = AddressPolicy.from_settings(settings)
        self.stats = crawler.stats
        store = open_store(crawler)
        catalog_class = load_object(settings["IGIMAGES_CATALOG"])
        catalog = build_from_crawler(catalog_class, crawler, store.index)
        image_hash = settings.get("IGIMAGES_PERCEPTUAL_HASH")
        self.keeper = ImageKeeper(store, catalog, load_object(image_hash) if image_hash else None)
        self.store_error: StoreError | None = None
        self._log_filter = _HideHandledFailures()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def open_spider(self) -> None:
        super().open_spider()
        self.spiderinfo.downloaded = _NoResultCache()
        logging.getLogger("scrapy.pipelines.media").addFilter(self._log_filter)

    async def close_spider(self) -> None:
        logging.getLogger("scrapy.pipelines.media").removeFilter(self._log_filter)
        try:
            await self.keeper.close()
        except StoreError as exc:
            self._stop_on_store_error(exc)

    async def process_item(self, item: Post) -> Post:
        if item.resumed:  # finished in an earlier run of this job
            self._count(item, interrupted=False)
            return item
        # MediaPipeline returns what item_completed returns: here a coroutine.
        completed = await super().process_item(item)
        return await completed

    # Requests

    def get_media_requests(self, item: Post, info: MediaPipeline.SpiderInfo) -> list[Request]:
        """One request per http(s) URL; other URLs fail here, unrequested.

        ``item.images`` gets one slot per URL: a result now for a URL that is
        never requested, ``None`` for ``item_completed`` to fill.
        """
        post_dir = safe_post_dir(item.id)
        item.images = []
        requests = []
        for index, url in enumerate(item.image_urls):
            position = item.position(index)
            failure = None
            if verdict := self.address_policy.judge_url(url):
                failure = ImageFailed(*verdict)
            else:
                place = Place(post_dir, position, image_key(url, self.path_key_hosts))
                try:
                    requests.append(Request(url, meta={PLACE: place, ATTEMPTS: Attempts()}))
                except ValueError as exc:
                    failure = ImageFailed("invalid_url", str(exc))
            item.images.append(None if failure is None else failure.result(url, position))
        return requests

    def file_path(
        self,
        request: Request,
        response: Response | None = None,
        info: MediaPipeline.SpiderInfo | None = None,
        *,
        item: Any = None,
    ) -> str:
        """Where the image goes, up to its extension, which the bytes tell."""
        place: Place = request.meta[PLACE]
        return f"{place.post}/{place.prefix}"

    async def media_to_download(
        self, request: Request, info: MediaPipeline.SpiderInfo, *, item: Any = None
    ) -> dict[str, Any] | None:
        if (found := await self.keeper.find(request.meta[PLACE], request.url)) is not None:
            return found
        if (expiry := link_expiry(request.url, self.path_key_hosts)) and expiry < time.time():
            raise expired_link(expiry)  # not worth a request: the CDN refuses it
        return None

    # Outcomes

    async def media_downloaded(
        self,
        response: Response,
        request: Request,
        info: MediaPipeline.SpiderInfo,
        *,
        item: Any = None,
    ) -> dict[str, Any]:
        attempts = request.meta[ATTEMPTS].count
        if response.status != 200:
            raise failed_answer(response, attempts, self._signed_cdn, self.address_policy.judge_url)
        try:
            image = inspect_image(
                response.body,
                min_width=self.min_width,
                min_height=self.min_height,
                max_pixels=self.max_pixels,
            )
        except ImageRejected as exc:
            raise ImageFailed(exc.reason, exc.detail, attempts=attempts) from exc
        kept = await self.keeper.keep(request.meta[PLACE], response.body, image, request.url)
        return {**kept, "attempts": attempts}

    def media_failed(
        self, failure: Failure, request: Request, info: MediaPipeline.SpiderInfo
    ) -> None:
        raise self._image_failed(failure.value, request.meta[ATTEMPTS].count)

    def _signed_cdn(self, host: str | None) -> bool:
        return is_signed_cdn(host, self.path_key_hosts)

    def _image_failed(self, exc: BaseException, attempts: int = 0) -> ImageFailed:
        """The failure as the feed reports it; a store error stops the crawl."""
        if isinstance(exc, StoreError):
            self._stop_on_store_error(exc)
        if not isinstance(exc, ImageFailed) and (
            self.store_error is not None or isinstance(exc, CatalogUnavailable)
        ):
            # Whatever else broke, it broke as the crawl stopped.
            return ImageFailed.interrupted(exc, attempts)
        return ImageFailed.of(exc, attempts)

    def _stop_on_store_error(self, exc: StoreError) -> None:
        if self.store_error is not None:
            return
        self.store_error = exc
        self.stats.set_value("igimages/store_error", str(exc))
        logger.error(
            "Stopping: %s. Nothing stored so far is lost; make room (or fix the "
            "store's permissions or endpoint) and run the same command again.",
            exc,
        )
        igimages_signals.stop_crawl(self.crawler, "store_error")

    def item_completed(
        self, results: list[tuple[bool, Any]], item: Post, info: MediaPipeline.SpiderInfo
    ) -> Coroutine[Any, Any, Post]:
        return self._completed(results, item)

    async def _completed(self, results: list[tuple[bool, Any]], item: Post) -> Post:
        outcomes = iter(results)
        post_dir = safe_post_dir(item.id)
        for index, image in enumerate(item.images):
            if image is not None:
                continue
            url, position = item.image_urls[index], item.position(index)
            ok, value = next(outcomes)
            if not ok:
                image = self._image_failed(value.value).result(url, position)
            elif not (place := Place(post_dir, position, value["key"])).holds(value["path"]):
                # Shared with another post's request for the same URL in flight.
                try:
                    image = await self.keeper.place_result(value, place, url)
                except (StoreError, CatalogUnavailable) as exc:
                    image = self._image_failed(exc).result(url, position)
            else:
                image = value
            item.images[index] = image
        interrupted = any(image["status"] == INTERRUPTED for image in item.images)
        self._count(item, interrupted)
        if interrupted:  # out of the feeds: the next run completes the post
            raise DropItem(f"post {item.id} was interrupted", log_level="DEBUG")
        return item

    def _count(self, item: Post, interrupted: bool) -> None:
        inc = self.stats.inc_value
        inc("igimages/posts/interrupted" if interrupted else "igimages/posts/done")
        if not item.images:
            inc("igimages/posts/no_images")
        for image in item.images:
            status = image["status"]
            inc(f"igimages/images/{status}")
            if status == DOWNLOADED:
                inc("igimages/bytes", image["bytes"])
            elif status == FAILED:
                inc(f"igimages/failed/{image['reason']}")
                logger.warning(
                    "Image %d of post %s failed (%s): %s",
                    image["position"],
                    item.id,
                    image["reason"],
                    image["url"],
                )
