"""A local image folder that never shows a partial file and stores bytes once.

Each stored image is recorded in a small SQLite index kept inside the folder
(``.igimages/index.sqlite3``), so a later run can tell what is already there,
and its hash and size, without reading or hashing the image files again.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from operator import attrgetter
from pathlib import Path

INDEX_DIR = ".igimages"


class StoreError(Exception):
    """The folder cannot be written (disk full, read-only, no permission)."""


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One image file in the store, as the index knows it."""

    post: str
    position: int
    key: str
    path: str  # relative to the store root, "/"-separated
    sha256: str
    bytes: int
    width: int
    height: int
    format: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    post TEXT NOT NULL, position INTEGER NOT NULL, key TEXT NOT NULL,
    path TEXT NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, format TEXT NOT NULL,
    PRIMARY KEY (post, position, key)
);
CREATE INDEX IF NOT EXISTS images_sha256 ON images (sha256);
CREATE INDEX IF NOT EXISTS images_key ON images (key);
"""
_COLUMNS = "post, position, key, path, sha256, bytes, width, height, format"
_row = attrgetter(*(field.name for field in fields(StoredImage)))  # astuple() deep-copies


class ImageStore:
    """Files under ``basedir``, written atomically and indexed.

    It takes the place of Scrapy's ``FSFilesStore`` in the pipeline (the
    pipeline's ``STORE_SCHEMES``); only local folders are supported because
    duplicates become hard links.
    """

    def __init__(self, basedir: str) -> None:
        self.basedir = Path(basedir.removeprefix("file://")).resolve()
        self.tmpdir = self.basedir / INDEX_DIR / "tmp"
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        # Whether earlier runs left post folders, where unindexed files may be.
        with os.scandir(self.basedir) as entries:
            self._had_posts = any(e.name != INDEX_DIR and e.is_dir() for e in entries)
        _remove_orphans(self.tmpdir)
        self._tmp_names = itertools.count()
        self._db = _open_index(self.basedir / INDEX_DIR / "index.sqlite3")

    # Look-ups: each checks the file is still there with the recorded size, so
    # a file deleted or damaged by hand is fetched again.

    def lookup(self, post: str, position: int, key: str) -> StoredImage | None:
        return self._first("post = ? AND position = ? AND key = ?", (post, position, key))

    def find_by_key(self, key: str, post: str, position: int) -> StoredImage | None:
        """The image stored under ``key``, for this post and position if it is there."""
        first_this = "ORDER BY post = ? AND position = ? DESC"
        return self._first(f"key = ? {first_this}", (key, post, position))

    def find_by_sha256(self, sha256: str) -> StoredImage | None:
        return self._first("sha256 = ?", (sha256,))

    def _first(self, condition: str, args: tuple) -> StoredImage | None:
        """The first intact image of those matching ``condition`` (WHERE and ORDER BY)."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM images WHERE {condition} LIMIT 4", args)
        for row in rows:
            image = StoredImage(*row)
            if self._intact(image):
                return image
        return None

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

    def _intact(self, image: StoredImage) -> bool:
        try:
            return os.stat(f"{self.basedir}/{image.path}").st_size == image.bytes
        except OSError:
            return False

    # Writes

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

    def record(self, image: StoredImage) -> None:
        try:
            self._db.execute(
                f"INSERT OR REPLACE INTO images ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                _row(image),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot update the index in {self.basedir}: {exc}") from exc

    def close(self) -> None:
        self._db.close()


def _open_index(path: Path, timeout: float = 60) -> sqlite3.Connection:
    """The index, in WAL mode, with its tables.

    Each record is its own transaction (no fsync in WAL mode: ~50 us), so
    several crawl processes can share the index without waiting long. When
    they start together on a new folder, switching it to WAL needs the file
    to itself, and SQLite then fails at once instead of waiting: so this waits.
    """
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            break
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.05)
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _remove_orphans(tmpdir: Path) -> None:
    """Delete temporary files left by processes that no longer run."""
    for tmp in tmpdir.glob("*.part"):
        pid = tmp.name.partition("-")[0]
        if not pid.isdigit() or (int(pid) != os.getpid() and not _running(int(pid))):
            tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
