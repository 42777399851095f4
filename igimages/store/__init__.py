"""Where images are stored: ``IMAGES_STORE`` as a value, and stores behind one protocol.

A store writes whole images only (never a partial file where a complete one
is expected), stores identical bytes once, and keeps an index of what it
holds (``igimages.store.index``) so a later run needs neither a request nor a
read. Which class stores a URI is chosen by its scheme in ``IGIMAGES_STORES``,
as Scrapy chooses feed storages: a folder (``igimages.store.folder``), S3 or
GCS (``igimages.store.buckets``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

from scrapy.crawler import Crawler
from scrapy.settings import BaseSettings
from scrapy.utils.misc import build_from_crawler, load_object

from igimages.store.index import INDEX_DIR, ImageIndex, StoredImage, StoreError

__all__ = ["INDEX_DIR", "ImageStore", "StoreError", "StoreUri", "StoredImage", "open_store"]

FOLDER = ""  # the scheme of a folder, given as a path or file://PATH


@dataclass(frozen=True, slots=True)
class StoreUri:
    """``IMAGES_STORE``, read once: a folder or a bucket, and the names derived from it."""

    given: str  # as the user wrote it: files beside the images are named from it
    scheme: str  # FOLDER, "s3", "gs"... (lower case)
    location: str  # a folder's absolute path; a bucket's "bucket/prefix/"

    @classmethod
    def parse(cls, given: str) -> Self:
        scheme, separator, rest = given.partition("://")
        scheme = scheme.lower()
        if not separator or scheme == "file":
            return cls(given, FOLDER, os.path.abspath(rest if separator else given))
        # A prefix names a folder of objects, as Scrapy's stores expect.
        return cls(given, scheme, rest if rest.endswith("/") else f"{rest}/")

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> Self:
        return cls.parse(settings["IMAGES_STORE"])

    @property
    def identity(self) -> str:
        """The store as one name, however it was given: an absolute path or a bucket URI."""
        return self.location if self.scheme == FOLDER else f"{self.scheme}://{self.location}"

    @property
    def bucket(self) -> str:
        return self.location.partition("/")[0]

    @property
    def prefix(self) -> str:
        return self.location.partition("/")[2]

    def file(self, name: str) -> str:
        """Where a file beside the images goes (a feed, the summary): a path or a URI."""
        return f"{self.given.rstrip('/')}/{name}"

    def __str__(self) -> str:
        return self.given


class ImageStore(Protocol):
    """What the pipeline needs of a store (a class of ``IGIMAGES_STORES``).

    Its class also says where the store's local state is (``state_folder``):
    its index, and the lock of ``igimages.store.lock``.
    """

    index: ImageIndex

    @classmethod
    def state_folder(cls, uri: StoreUri, settings: BaseSettings) -> Path: ...

    def find_unindexed(self, post: str, prefix: str) -> str | None:
        """A complete image named ``<post>/<prefix>*`` that the index lacks."""

    def read(self, path: str) -> bytes: ...

    async def save(self, image: StoredImage, data: bytes) -> None:
        """Store ``data`` at ``image.path``, whole or not at all, and record it."""

    async def place(self, source: StoredImage, image: StoredImage) -> None:
        """Give ``image.path`` the content at ``source.path`` (a duplicate); record it."""

    async def close(self) -> None: ...


def store_class(uri: StoreUri, settings: BaseSettings) -> Any:
    """The class of ``IGIMAGES_STORES`` that stores ``uri``; StoreError if none does."""
    stores = settings.getdict("IGIMAGES_STORES")
    if not (path := stores.get(uri.scheme)):
        schemes = ", ".join(f"{scheme}://" for scheme in stores if scheme)
        raise StoreError(
            f"IMAGES_STORE={uri}: {uri.scheme}:// is not supported; give a folder or one of "
            f"{schemes} (for example s3://BUCKET/PREFIX/)"
        )
    return load_object(path)


def open_store(crawler: Crawler) -> ImageStore:
    """The crawl's store, opened: a store that cannot be used raises StoreError, in one line."""
    uri = StoreUri.from_settings(crawler.settings)
    return build_from_crawler(store_class(uri, crawler.settings), crawler, uri)


def state_folder(settings: BaseSettings) -> Path:
    """Where the crawl's store keeps its local state (its index, its lock)."""
    uri = StoreUri.from_settings(settings)
    return store_class(uri, settings).state_folder(uri, settings)
