"""Keeping an image: finding it stored, storing its bytes once, placing a duplicate.

``ImageKeeper`` is the pipeline's one service over the catalog (what is
stored, and who stores which content: ``igimages.store.catalog``) and the
store (where the bytes go: a folder or a bucket). Each method answers with
the image's entry in its post's results.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from igimages.items import CACHED, DOWNLOADED, DUPLICATE
from igimages.store import ImageStore
from igimages.store.catalog import Catalog
from igimages.store.index import StoredImage
from igimages.validation import ImageInfo, ImageRejected, inspect_image


@dataclass(frozen=True, slots=True)
class Place:
    """Where one image of one post goes: ``<post>/<position>_<key>.<extension>``."""

    post: str
    position: int
    key: str

    @property
    def prefix(self) -> str:
        return f"{self.position}_{self.key}."

    def path(self, extension: str) -> str:
        return f"{self.post}/{self.prefix}{extension}"

    def holds(self, path: str) -> bool:
        return path.startswith(f"{self.post}/{self.position}_")


class ImageKeeper:
    def __init__(
        self,
        store: ImageStore,
        catalog: Catalog,
        image_hash: Callable[[bytes], str] | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        # ``IGIMAGES_PERCEPTUAL_HASH``; None: no hash, images are grouped by bytes only.
        self.image_hash = image_hash
        # A thread per core for the hash's decodes (Pillow lets go of the GIL): asyncio's
        # shared pool has four threads more, whose decodes crowd the loop's core.
        self._hashing = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="igimages-hash")

    async def find(self, place: Place, url: str) -> dict[str, Any] | None:
        """The image, if it needs no request: stored there, stored by a killed run
        but not recorded, or stored elsewhere under the same key (then placed)."""
        stored = await self.catalog.find(place.post, place.position, place.key)
        if stored is not None and (stored.post, stored.position) == (place.post, place.position):
            return result(stored, CACHED, url)
        if (adopted := self._adopt(place)) is not None:
            await self.catalog.stored(adopted)
            return result(adopted, CACHED, url)
        if stored is not None:
            return await self.place(stored, place, url)
        return None

    async def keep(self, place: Place, body: bytes, image: ImageInfo, url: str) -> dict[str, Any]:
        """Store ``body`` for ``place``, or place the same bytes stored already."""
        stored = describe(place, body, image)
        if (same := await self.catalog.claim(stored)) is not None:
            return await self.place(same, place, url)
        try:
            if self.image_hash is not None:  # a decode: off the loop
                loop = asyncio.get_running_loop()
                phash = await loop.run_in_executor(self._hashing, self.image_hash, body)
                stored = replace(stored, phash=phash)
            await self.store.save(stored, body)
        except BaseException:
            await self.catalog.abandon(stored)
            raise
        await self.catalog.stored(stored)
        return result(stored, DOWNLOADED, url)

    async def place(self, source: StoredImage, place: Place, url: str) -> dict[str, Any]:
        """Give ``place`` the content already stored at ``source``: a duplicate."""
        path = place.path(source.path.rpartition(".")[2])
        if path == source.path:
            return result(source, CACHED, url)
        if stored := await self.catalog.lookup(place.post, place.position, place.key):
            return result(stored, CACHED, url)  # it shared another post's request
        placed = replace(source, post=place.post, position=place.position, key=place.key, path=path)
        await self.store.place(source, placed)
        await self.catalog.stored(placed)
        return {**result(placed, DUPLICATE, url), "duplicate_of": source.path}

    async def place_result(self, shared: dict[str, Any], place: Place, url: str) -> dict[str, Any]:
        """Place the image of another post's result (the same URL, fetched once for both)."""
        names = StoredImage.__dataclass_fields__.keys() - {"post"}
        source = StoredImage(post="", **{name: shared[name] for name in names})
        return await self.place(source, place, url)

    def _adopt(self, place: Place) -> StoredImage | None:
        """Index a file that a killed run stored but did not get to record."""
        path = self.store.find_unindexed(place.post, place.prefix)
        if path is None:
            return None
        body = self.store.read(path)
        try:
            image = inspect_image(body)
        except ImageRejected:
            return None  # fetch it again; the new file replaces this one
        stored = describe(place, body, image, path)
        if self.image_hash is not None:
            stored = replace(stored, phash=self.image_hash(body))
        self.store.index.record(stored)
        return stored

    async def close(self) -> None:
        self._hashing.shutdown(wait=False)
        await self.store.close()


def describe(place: Place, body: bytes, image: ImageInfo, path: str | None = None) -> StoredImage:
    """What the index records of ``body``, stored for ``place``, but its perceptual
    hash: that costs a decode, worth it only for bytes not stored yet."""
    return StoredImage(
        post=place.post,
        position=place.position,
        key=place.key,
        path=path or place.path(image.extension),
        sha256=hashlib.sha256(body).hexdigest(),
        bytes=len(body),
        width=image.width,
        height=image.height,
        format=image.format,
    )


def perceptual_hash(body: bytes) -> str:
    """``igimages.similar``'s, imported when the first image is stored: a run that
    stores nothing new does not load numpy (0.12 s of CPU)."""
    from igimages.similar import perceptual_hash

    return perceptual_hash(body)


def result(stored: StoredImage, status: str, url: str) -> dict[str, Any]:
    """The image's entry in its post's results."""
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
        "phash": stored.phash,
    }
