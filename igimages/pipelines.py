"""Store every image of a post, byte for byte, once per distinct content.

``PostImagesPipeline`` is Scrapy's ``FilesPipeline`` with the parts that an
image archive needs done differently (see the project's notes on Scrapy):

* the original bytes are kept; Pillow only checks them (``ImagesPipeline``
  would re-encode);
* files are named ``<post>/<position>_<key>.<ext>``, the extension taken from
  the bytes and the key from a URL part that survives re-scrapes;
* what is already stored is found in the store's index, without a request
  and without reading the file;
* the store is a folder or a bucket (``igimages.store``, ``igimages.buckets``);
  identical bytes are stored once, other places become hard links or
  server-side copies;
* every failure keeps its real reason instead of a bare ``FileException``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urljoin

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.http import Response
from scrapy.pipelines.files import FilesPipeline
from scrapy.pipelines.media import FileException, MediaPipeline
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.httpobj import urlparse_cached
from twisted.python.failure import Failure

from igimages import signals as igimages_signals
from igimages.addresses import AddressPolicy
from igimages.buckets import GCSStore, S3Store, configure_buckets
from igimages.catalog import Catalog, CatalogUnavailable, LocalCatalog
from igimages.items import Post
from igimages.job import is_job, job_worker
from igimages.keys import image_key, is_signed_cdn, link_expiry, safe_post_dir
from igimages.reasons import failure_reason
from igimages.store import FolderStore, ImageStore, StoredImage, StoreError
from igimages.validation import ImageInfo, ImageRejected, inspect_image

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ImageTarget:
    """Where one image of one post goes; shared by all retries of its request."""

    post_dir: str
    position: int
    key: str
    attempts: int = 0


class ImageFailed(FileException):
    """An image that cannot be stored, with a reason the failure feed keeps."""

    def __init__(
        self, reason: str, detail: str = "", http_status: int | None = None, attempts: int = 0
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.http_status = http_status
        self.attempts = attempts


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


class PostImagesPipeline(FilesPipeline):
    STORE_SCHEMES = {  # noqa: RUF012
        "": FolderStore,
        "file": FolderStore,
        "s3": S3Store,
        "gs": GCSStore,
    }
    LOG_FAILED_RESULTS = False

    store: ImageStore

    def __init__(self, store_uri: str, *, crawler: Crawler) -> None:
        super().__init__(store_uri, crawler=crawler)
        settings = crawler.settings
        self.min_width = settings.getint("IMAGES_MIN_WIDTH")
        self.min_height = settings.getint("IMAGES_MIN_HEIGHT")
        self.max_pixels = settings.getint("IGIMAGES_MAX_PIXELS")
        self.path_key_hosts = tuple(settings.getlist("IGIMAGES_PATH_KEY_HOSTS"))
        self.address_policy = AddressPolicy.from_settings(settings)
        self.stats = crawler.stats
        self.store_error: StoreError | None = None
        self._log_filter = _HideHandledFailures()
        self.catalog: Catalog = LocalCatalog(self.store.index)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        configure_buckets(crawler.settings)
        return cls(crawler.settings["IMAGES_STORE"], crawler=crawler)

    def _get_store(self, uri: str) -> ImageStore:
        scheme = uri.partition("://")[0].lower() if "://" in uri else ""
        if scheme not in self.STORE_SCHEMES:
            raise StoreError(
                f"IMAGES_STORE={uri}: {scheme}:// is not supported; give a folder, "
                "file://PATH, s3://BUCKET/PREFIX/ or gs://BUCKET/PREFIX/"
            )
        if scheme in ("s3", "gs") and not uri.endswith("/"):
            uri += "/"  # a prefix names a folder of objects, as Scrapy's stores expect
        return self.STORE_SCHEMES[scheme](uri)

    def open_spider(self) -> None:
        super().open_spider()
        self.spiderinfo.downloaded = _NoResultCache()
        if is_job(self.crawler.settings):  # the job's index, shared by its workers
            self.catalog = job_worker(self.crawler).catalog(self.store.index)
        logging.getLogger("scrapy.pipelines.media").addFilter(self._log_filter)

    async def close_spider(self) -> None:
        logging.getLogger("scrapy.pipelines.media").removeFilter(self._log_filter)
        try:
            await self.store.close()
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
                target = ImageTarget(post_dir, position, image_key(url, self.path_key_hosts))
                try:
                    requests.append(Request(url, meta={"igimages": target}))
                except ValueError as exc:
                    failure = ImageFailed("invalid_url", str(exc))
            item.images.append(None if failure is None else _failed(url, position, failure))
        return requests

    async def media_to_download(
        self, request: Request, info: MediaPipeline.SpiderInfo, *, item: Any = None
    ) -> dict[str, Any] | None:
        target: ImageTarget = request.meta["igimages"]
        stored = await self.catalog.find(target.post_dir, target.position, target.key)
        if stored is not None and (stored.post, stored.position) == (
            target.post_dir,
            target.position,
        ):
            return _result(stored, "cached", request.url)
        if (adopted := self._adopt(target)) is not None:
            await self.catalog.stored(adopted)
            return _result(adopted, "cached", request.url)
        if stored is not None:
            return await self._place(stored, target, request.url)
        if (expiry := link_expiry(request.url, self.path_key_hosts)) and expiry < time.time():
            # Not worth a request: the CDN refuses it; only a new scrape helps.
            raise ImageFailed("expired", f"signed link expired {_utc(expiry)}")
        return None

    def _adopt(self, target: ImageTarget) -> StoredImage | None:
        """Index a file that a killed run stored but did not get to record."""
        path = self.store.find_unindexed(target.post_dir, f"{target.position}_{target.key}.")
        if path is None:
            return None
        body = self.store.read(path)
        try:
            image = inspect_image(body)
        except ImageRejected:
            return None  # fetch it again; the new file replaces this one
        stored = _describe(target, body, image, path)
        self.store.index.record(stored)
        return stored

    # Outcomes

    async def media_downloaded(
        self,
        response: Response,
        request: Request,
        info: MediaPipeline.SpiderInfo,
        *,
        item: Any = None,
    ) -> dict[str, Any]:
        target: ImageTarget = request.meta["igimages"]
        if response.status != 200:
            raise self._http_failure(response, target)
        body = response.body
        try:
            image = inspect_image(
                body,
                min_width=self.min_width,
                min_height=self.min_height,
                max_pixels=self.max_pixels,
            )
        except ImageRejected as exc:
            raise ImageFailed(exc.reason, exc.detail, attempts=target.attempts) from exc
        stored = _describe(target, body, image)
        if (same := await self.catalog.claim(stored)) is not None:
            result = await self._place(same, target, request.url)
        else:
            try:
                await self.store.save(stored, body)
            except BaseException:
                await self.catalog.abandon(stored)
                raise
            await self.catalog.stored(stored)
            result = _result(stored, "downloaded", request.url)
        return {**result, "attempts": target.attempts}

    def _http_failure(self, response: Response, target: ImageTarget) -> ImageFailed:
        status, reason, detail = response.status, f"http_{response.status}", ""
        if status == 403 and is_signed_cdn(urlparse_cached(response).hostname, self.path_key_hosts):
            reason, detail = "expired", "the CDN refused the signed link; rescrape the post"
        elif 300 <= status < 400 and (location := response.headers.get(b"Location")):
            # Not followed: judged as a posts file's URL is, to say why.
            to = location.decode("latin-1")
            if verdict := self.address_policy.judge_url(urljoin(response.url, to)):
                reason, detail = verdict[0], f"redirect to {to}"
        return ImageFailed(reason, detail, http_status=status, attempts=target.attempts)

    def media_failed(
        self, failure: Failure, request: Request, info: MediaPipeline.SpiderInfo
    ) -> None:
        raise self._image_failed(failure.value, request.meta["igimages"].attempts)

    def _image_failed(self, exc: BaseException, attempts: int = 0) -> ImageFailed:
        """The failure as the feed reports it; a store error stops the crawl."""
        if isinstance(exc, ImageFailed):
            return exc
        if isinstance(exc, StoreError):
            self._stop_on_store_error(exc)
        if self.store_error is not None or isinstance(exc, CatalogUnavailable):
            # Whatever else broke, it broke as the crawl stopped.
            return ImageFailed("interrupted", str(exc), attempts=attempts)
        return ImageFailed(failure_reason(exc), str(exc) or type(exc).__name__, attempts=attempts)

    def _stop_on_store_error(self, exc: StoreError) -> None:
        if self.store_error is not None:
            return
        self.store_error = exc
        logger.error(
            "Stopping: %s. Nothing stored so far is lost; make room (or fix the "
            "store's permissions or endpoint) and run the same command again.",
            exc,
        )
        self.crawler.signals.send_catch_log(igimages_signals.stop_downloads)
        deferred_from_coro(self.crawler.engine.close_spider_async(reason="store_error"))

    async def _place(self, source: StoredImage, target: ImageTarget, url: str) -> dict[str, Any]:
        """Give ``target`` the content already stored at ``source``: a duplicate."""
        extension = source.path.rpartition(".")[2]
        path = f"{target.post_dir}/{target.position}_{target.key}.{extension}"
        if path == source.path:
            return _result(source, "cached", url)
        if stored := await self.catalog.lookup(target.post_dir, target.position, target.key):
            return _result(stored, "cached", url)  # it shared another post's request
        placed = replace(
            source, post=target.post_dir, position=target.position, key=target.key, path=path
        )
        await self.store.place(source, placed)
        await self.catalog.stored(placed)
        return {**_result(placed, "duplicate", url), "duplicate_of": source.path}

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
                image = _failed(url, position, self._image_failed(value.value))
            elif not value["path"].startswith(f"{post_dir}/{position}_"):
                # Shared with another post's request for the same URL in flight.
                target = ImageTarget(post_dir, position, value["key"])
                shared = StoredImage(post="", **_stored_fields(value))
                try:
                    image = await self._place(shared, target, url)
                except (StoreError, CatalogUnavailable) as exc:
                    image = _failed(url, position, self._image_failed(exc))
            else:
                image = value
            item.images[index] = image
        interrupted = any(image["status"] == "interrupted" for image in item.images)
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
            if status == "downloaded":
                inc("igimages/bytes", image["bytes"])
            elif status == "failed":
                inc(f"igimages/failed/{image['reason']}")
                logger.warning(
                    "Image %d of post %s failed (%s): %s",
                    image["position"],
                    item.id,
                    image["reason"],
                    image["url"],
                )


def _describe(
    target: ImageTarget, body: bytes, image: ImageInfo, path: str | None = None
) -> StoredImage:
    """What the index records of ``body``, stored for ``target``."""
    return StoredImage(
        post=target.post_dir,
        position=target.position,
        key=target.key,
        path=path or f"{target.post_dir}/{target.position}_{target.key}.{image.extension}",
        sha256=hashlib.sha256(body).hexdigest(),
        bytes=len(body),
        width=image.width,
        height=image.height,
        format=image.format,
    )


def _result(stored: StoredImage, status: str, url: str) -> dict[str, Any]:
    return {
        "url": url,
        "position": stored.position,
        "status": status,
        "key": stored.key,
        "path": stored.path,
        "sha256": stored.sha256,
        "bytes": stored.bytes,
        "width": stored.width,
        "height": stored.height,
        "format": stored.format,
    }


def _stored_fields(result: dict[str, Any]) -> dict[str, Any]:
    names = StoredImage.__dataclass_fields__.keys() - {"post"}
    return {name: result[name] for name in names}


def _failed(url: str, position: int, exc: ImageFailed) -> dict[str, Any]:
    # An image the crawl stopped before fetching has not failed: a later run
    # fetches it.
    return {
        "url": url,
        "position": position,
        "status": "interrupted" if exc.reason == "interrupted" else "failed",
        "reason": exc.reason,
        "http_status": exc.http_status,
        "attempts": exc.attempts,
        "detail": exc.detail,
    }


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
