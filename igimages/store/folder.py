"""A store in a local folder: ``IMAGES_STORE=PATH`` or ``file://PATH``."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from scrapy.crawler import Crawler
from scrapy.settings import BaseSettings

from igimages.atomic import PART, remove_orphans, replacing
from igimages.store import StoreUri
from igimages.store.index import INDEX_DIR, INDEX_NAME, ImageIndex, StoredImage, StoreError


class FolderStore:
    """Files under ``basedir``, written atomically, duplicates as hard links.

    It takes the place of Scrapy's ``FSFilesStore``. Look-ups check that the
    file is still there with the recorded size, so a file deleted or damaged
    by hand is fetched again.
    """

    def __init__(self, uri: StoreUri) -> None:
        self.basedir = Path(uri.location).resolve()
        self.tmpdir = self.basedir / INDEX_DIR / "tmp"
        try:
            self.tmpdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot write {self.basedir}: {exc.strerror or exc}") from exc
        # Whether earlier runs left post folders, where unindexed files may be.
        with os.scandir(self.basedir) as entries:
            self._had_posts = any(e.name != INDEX_DIR and e.is_dir() for e in entries)
        remove_orphans(self.tmpdir.glob(f"*{PART}"))
        self._tmp_names = itertools.count()
        self.index = ImageIndex.open(
            self.basedir / INDEX_DIR / INDEX_NAME,
            self._intact,
            str(self.basedir),
            rebuilt="from the stored files, each read once as the crawl meets it",
        )

    @classmethod
    def from_crawler(cls, crawler: Crawler, uri: StoreUri) -> Self:
        return cls(uri)

    @classmethod
    def state_folder(cls, uri: StoreUri, settings: BaseSettings) -> Path:
        return Path(uri.location, INDEX_DIR)

    def find_unindexed(self, post: str, prefix: str) -> str | None:
        """A complete file named ``<post>/<prefix>*`` that the index lacks.

        A run killed between renaming a file into place and committing the
        index leaves such a file; the caller adopts it rather than fetch the
        image again. A folder that had no posts when this run began has none.
        """
        if not self._had_posts:
            return None
        try:
            with os.scandir(f"{self.basedir}/{post}") as entries:
                names = [entry.name for entry in entries if entry.name.startswith(prefix)]
        except OSError:
            return None
        return f"{post}/{min(names)}" if names else None

    def read(self, path: str) -> bytes:
        return (self.basedir / path).read_bytes()

    def _intact(self, image: StoredImage) -> bool:
        return file_intact(self.basedir, image)

    # Writes: on the event loop, as they take ~0.1 ms each.

    async def save(self, image: StoredImage, data: bytes) -> None:
        self.write(image.path, data)
        self.index.record(image)

    async def place(self, source: StoredImage, image: StoredImage) -> None:
        self.link(source.path, image.path)
        self.index.record(image)

    def write(self, path: str, data: bytes) -> None:
        """Store ``data`` at ``path``: a temporary name first, then a rename."""
        with self._replacing(path) as tmp, open(tmp, "wb") as file:
            file.write(data)

    def link(self, source: str, path: str) -> None:
        """Make ``path`` the same file as ``source`` (a copy if linking fails)."""
        target = self.basedir / path
        if target.exists() and os.path.samefile(self.basedir / source, target):
            return
        with self._replacing(path) as tmp:
            try:
                os.link(self.basedir / source, tmp)
            except OSError:
                shutil.copyfile(self.basedir / source, tmp)

    @contextmanager
    def _replacing(self, path: str) -> Iterator[str | Path]:
        """``igimages.atomic.replacing``, with the temporary files in one folder of
        the store's own (named by process: a killed run's are removed at the next
        start), and a failure told as the store's."""
        target = f"{self.basedir}/{path}"
        try:
            with replacing(
                target, f"{self.tmpdir}/{os.getpid()}-{next(self._tmp_names)}{PART}"
            ) as tmp:
                yield tmp
        except OSError as exc:
            raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        self.index.close()


def file_intact(basedir: Path, image: StoredImage) -> bool:
    """Whether the file of ``image`` is still there, with the size the index recorded."""
    try:
        return os.stat(f"{basedir}/{image.path}").st_size == image.bytes
    except OSError:
        return False
