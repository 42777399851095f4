"""Thumbnails of a store's images: made once per distinct content, on every core.

A thumbnail is a JPEG whose longest side is at most ``THUMB_SIZE`` pixels,
kept at ``.igimages/thumbs/<sha256[:2]>/<sha256>.jpg``: named by content, so
an image stored under several posts has one, and a report over a grown
store only makes those of the new images. JPEGs are decoded at a fraction
of their size (Pillow's draft mode: the decoder skips what the thumbnail
would throw away), so one costs a few milliseconds. Each is written under a
temporary name and renamed: a thumbnail under its final name is whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from PIL import Image, ImageOps

from igimages.atomic import replacing

THUMB_SIZE = 256
THUMBS_DIR = ".igimages/thumbs"
QUALITY = 80
#: Below this many to make, the report makes them itself rather than start processes.
POOL_THRESHOLD = 16

Job = tuple[str, str]  # (sha256, source path relative to the store)


def thumb_path(sha256: str) -> str:
    """Where the thumbnail of this content goes, relative to the store."""
    return f"{THUMBS_DIR}/{sha256[:2]}/{sha256}.jpg"


def make_thumbnail(source: Path, target: Path) -> None:
    """Write the thumbnail of the image at ``source`` to ``target``, whole or not at all."""
    with Image.open(source) as image:
        if image.format == "JPEG":
            image.draft("RGB", (THUMB_SIZE, THUMB_SIZE))
        image.seek(0)  # the first frame of an animation
        image = ImageOps.exif_transpose(image)
        image.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        image = _flatten(image)
        target.parent.mkdir(parents=True, exist_ok=True)
        with replacing(target) as tmp:
            image.save(tmp, "JPEG", quality=QUALITY, optimize=False)


def _flatten(image: Image.Image) -> Image.Image:
    """RGB for JPEG: transparency over white, as a page shows it."""
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def make_batch(store: str, jobs: list[Job]) -> list[tuple[str, str]]:
    """Make the thumbnails of ``jobs``; the ones that failed, with why (in a worker)."""
    failed = []
    root = Path(store)
    for sha256, source in jobs:
        try:
            make_thumbnail(root / source, root / thumb_path(sha256))
        except Exception as exc:  # an image Pillow cannot read: the page shows no preview
            failed.append((sha256, f"{type(exc).__name__}: {exc}".splitlines()[0]))
    return failed


@dataclass
class Batch:
    """The thumbnails one report page waits for: its own, and content queued before."""

    futures: list[Future[list[tuple[str, str]]]] = field(default_factory=list)


class ThumbnailMaker:
    """Makes the missing thumbnails of each page in worker processes, a few pages ahead.

    ``submit`` queues a page's missing thumbnails and returns at once;
    ``wait`` returns when they are made. Content queued for an earlier page
    is not queued again. The processes start only once enough work is
    waiting, so a small store, or a report with nothing new, starts none.
    """

    def __init__(self, store: Path, workers: int = 0) -> None:
        self.store = store
        self.workers = workers or os.cpu_count() or 1
        self.made = 0
        self.failed: dict[str, str] = {}  # sha256 -> why, in this report
        self._pending: dict[str, Future[list[tuple[str, str]]]] = {}
        self._chunks: dict[Future[list[tuple[str, str]]], list[str]] = {}
        self._pool: Executor | None = None

    def submit(self, jobs: Iterable[Job]) -> Batch:
        batch = Batch()
        missing: dict[str, str] = {}
        for sha256, source in jobs:
            if (future := self._pending.get(sha256)) is not None:
                batch.futures.append(future)
            elif (
                sha256 not in missing
                and sha256 not in self.failed
                and not os.path.exists(f"{self.store}/{thumb_path(sha256)}")
            ):
                missing[sha256] = source
        if not missing:
            return batch
        if self._pool is None and len(missing) >= POOL_THRESHOLD and self.workers > 1:
            # Workers forked from a fresh server process: the caller may be a
            # crawl with threads still about, which a plain fork would copy mid-step.
            context = get_context("forkserver")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
        todo = list(missing.items())
        if self._pool is None:
            self._account(list(missing), make_batch(str(self.store), todo))
            return batch
        size = max(4, -(-len(todo) // (2 * self.workers)))  # two chunks a worker
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            future = self._pool.submit(make_batch, str(self.store), chunk)
            self._chunks[future] = [sha256 for sha256, _ in chunk]
            self._pending.update((sha256, future) for sha256, _ in chunk)
            batch.futures.append(future)
        return batch

    def wait(self, batch: Batch) -> None:
        for future in dict.fromkeys(batch.futures):
            failed = future.result()
            if (shas := self._chunks.pop(future, None)) is not None:
                for sha256 in shas:
                    del self._pending[sha256]
                self._account(shas, failed)

    def _account(self, shas: list[str], failed: list[tuple[str, str]]) -> None:
        self.failed.update(failed)
        self.made += len(shas) - len(failed)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
