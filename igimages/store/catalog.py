"""What the pipeline asks before it stores an image: is it, or its content, stored?

A ``Catalog`` answers from the store's index, and hands out claims on
content: of several images with the same bytes arriving together, the first
is stored and the others wait for it, then become copies or links. Which
catalog is ``IGIMAGES_CATALOG``'s class, built with the store's index: the
``LocalCatalog`` does this within one crawl process; a job's
(``igimages.job.catalog``) across every worker of the job.
"""

from __future__ import annotations

from typing import Protocol, Self

from scrapy.crawler import Crawler
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred

from igimages.store.index import ImageIndex, StoredImage


class CatalogUnavailable(Exception):
    """The catalog cannot answer (a job's Redis is gone): the crawl is stopping."""


class Catalog(Protocol):
    async def find(self, post: str, position: int, key: str) -> StoredImage | None:
        """The image stored for this post and position, else one stored under ``key``."""

    async def lookup(self, post: str, position: int, key: str) -> StoredImage | None:
        """The image stored for this post and position under ``key``."""

    async def claim(self, image: StoredImage) -> StoredImage | None:
        """The image that already holds ``image``'s bytes, or None: they are the caller's
        to store, and it must then call ``stored`` or ``abandon``."""

    async def stored(self, image: StoredImage) -> None:
        """``image`` is in the store (saved or placed)."""

    async def abandon(self, image: StoredImage) -> None:
        """The claimed bytes of ``image`` could not be stored."""


class LocalCatalog:
    """The store's own index, and claims within this process."""

    def __init__(self, index: ImageIndex) -> None:
        self.index = index
        self._saving: dict[str, Deferred[None]] = {}  # sha256 -> its save under way

    @classmethod
    def from_crawler(cls, crawler: Crawler, index: ImageIndex) -> Self:
        return cls(index)

    async def find(self, post: str, position: int, key: str) -> StoredImage | None:
        return self.index.find_by_key(key, post, position)

    async def lookup(self, post: str, position: int, key: str) -> StoredImage | None:
        return self.index.lookup(post, position, key)

    async def claim(self, image: StoredImage) -> StoredImage | None:
        while (saving := self._saving.get(image.sha256)) is not None:
            await maybe_deferred_to_future(saving)
        same = self.index.find_by_sha256(image.sha256)
        if same is not None and same.path != image.path:
            return same
        self._saving[image.sha256] = Deferred()
        return None

    async def stored(self, image: StoredImage) -> None:
        self._settle(image)

    async def abandon(self, image: StoredImage) -> None:
        self._settle(image)

    def _settle(self, image: StoredImage) -> None:
        if (saving := self._saving.pop(image.sha256, None)) is not None:
            saving.callback(None)
