"""Where images are stored, behind one small protocol, and the local folder.

A store writes whole images only (never a partial file where a complete one
is expected), stores identical bytes once, and keeps an index of what it
holds (``igimages.index``) so a later run needs neither a request nor a read.
``FolderStore`` is a local folder; ``igimages.buckets`` has S3 and GCS.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Protocol

from igimages.index import INDEX_DIR, INDEX_NAME, ImageIndex, StoredImage, StoreError
from igimages.locking import is_running

__all__ = ["INDEX_DIR", "FolderStore", "ImageStore", "StoreError", "StoredImage"]


class ImageStore(Protocol):
    """What the pipeline needs of a store (the pipeline's ``STORE_SCHEMES``)."""

    index: ImageIndex

    def find_unindexed(self, post: str, prefix: str) -> str | None:
        """A complete image named ``<post>/<prefix>*`` that the index lacks."""

    def read(self, path: str) -> bytes: ...

    async def save(self, image: StoredImage, data: bytes) -> None:
        """Store ``data`` at ``image.path``, whole or not at all, and record it."""

    async def place(self, source: StoredImage, image: StoredImage) -> None:
        """Give ``image.path`` the content at ``source.path`` (a duplicate); record it."""

    async def close(self) -> None: ...


def store_identity(store: str) -> str:
    """The store as one name, however it was given: a bucket URI or an absolute path."""
    if "://" in store and not store.lower().startswith("file://"):
        return store if store.endswith("/") else f"{store}/"
    return os.path.abspath(store.removeprefix("file://"))


def store_file(store_uri: str, name: str) -> str:
    """Where a file beside the images goes: a path, or a bucket URI."""
    return f"{store_uri.rstrip('/')}/{name}"


class FolderStore:
    """Files under ``basedir``, written atomically, duplicates as hard links.

    It takes the place of Scrapy's ``FSFilesStore``. Look-ups check that the
    file is still there with the recorded size, so a file deleted or damaged
    by hand is fetched again.
    """

    def __init__(self, basedir: str) -> None:
        self.basedir = Path(basedir.removeprefix("file://")).resolve()
        self.tmpdir = self.basedir / INDEX_DIR / "tmp"
        try:
            self.tmpdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot write {self.basedir}: {exc.strerror or exc}") from exc
        # Whether earlier runs left post folders, where unindexed files may be.
        with os.scandir(self.basedir) as entries:
            self._had_posts = any(e.name != INDEX_DIR and e.is_dir() for e in entries)
        _remove_orphans(self.tmpdir)
        self._tmp_names = itertools.count()
        self.index = ImageIndex(
            self.basedir / INDEX_DIR / INDEX_NAME,
            self._intact,
            str(self.basedir),
            rebuilt="from the stored files, each read once as the crawl meets it",
        )

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
        try:
            return os.stat(f"{self.basedir}/{image.path}").st_size == image.bytes
        except OSError:
            return False

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
    def _replacing(self, path: str) -> Iterator[str]:
        """A temporary file that becomes ``path`` only if the block succeeds.

        Temporary files live in one folder, named by process, so those of a
        killed run are found and removed at the next start.
        """
        target = f"{self.basedir}/{path}"
        tmp = f"{self.tmpdir}/{os.getpid()}-{next(self._tmp_names)}.part"
        try:
            yield tmp
            try:
                os.replace(tmp, target)
            except FileNotFoundError:  # the post's first file: make its folder
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(tmp, target)
        except BaseException as exc:
            with suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from exc
            raise

    async def close(self) -> None:
        self.index.close()


def _remove_orphans(tmpdir: Path) -> None:
    """Delete temporary files left by processes that no longer run."""
    for tmp in tmpdir.glob("*.part"):
        pid = tmp.name.partition("-")[0]
        if not pid.isdigit() or (int(pid) != os.getpid() and not is_running(int(pid))):
            tmp.unlink(missing_ok=True)
