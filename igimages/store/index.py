"""What a store holds: a small SQLite index of its images.

Every store keeps one, so a later run can tell what is already stored, with
its hash, size and dimensions, without reading an image again. A folder keeps
it inside itself (``.igimages/index.sqlite3``); a bucket keeps it in a local
state folder and mirrors it into the bucket (``igimages.store.buckets``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from operator import attrgetter
from pathlib import Path
from typing import Self

from igimages.errors import OneLineError
from igimages.store.statedb import check, open_state

INDEX_DIR = ".igimages"
INDEX_NAME = "index.sqlite3"


class StoreError(OneLineError):
    """The store cannot be written (disk full, read-only, bucket refusing writes)."""


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One image in the store, as the index knows it."""

    post: str
    position: int
    key: str
    path: str  # relative to the store root, "/"-separated
    sha256: str
    bytes: int
    width: int
    height: int
    format: str
    # Perceptual hash (igimages.similar), 16 hex characters; '' for images
    # stored before igimages kept one. Last, with a default, so the records of
    # earlier versions (a job's Redis, a bucket's segments) still read.
    phash: str = ""


FIELDS = tuple(field.name for field in fields(StoredImage))
_COLUMNS = ", ".join(FIELDS)
_row = attrgetter(*FIELDS)  # astuple() deep-copies
_PLACES = ",".join("?" * len(FIELDS))
# Columns added since the first index: every index gains them as it is opened.
_ADDED = {"phash": "TEXT NOT NULL DEFAULT ''"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    post TEXT NOT NULL, position INTEGER NOT NULL, key TEXT NOT NULL,
    path TEXT NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, format TEXT NOT NULL,
    PRIMARY KEY (post, position, key)
);
CREATE INDEX IF NOT EXISTS images_sha256 ON images (sha256);
CREATE INDEX IF NOT EXISTS images_key ON images (key);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class ImageIndex:
    """Look-ups and records; ``intact`` tells whether an image is still really there.

    Each look-up returns the first intact match, so an image deleted or
    damaged by hand is fetched again rather than trusted. The index is
    derived from what is stored: a damaged one is set aside and a new one
    made, which ``rebuilt`` tells the user how it is filled again.
    """

    def __init__(
        self, db: sqlite3.Connection, intact: Callable[[StoredImage], bool], where: str
    ) -> None:
        self._db = db
        self.intact = intact
        self._where = where
        # An index that has not gained a column yet (read only) reads it as its default.
        present = {row[1] for row in db.execute("PRAGMA table_info(images)")}
        self._select = ", ".join(name if name in present else f"'' AS {name}" for name in FIELDS)

    @classmethod
    def open(
        cls, path: Path, intact: Callable[[StoredImage], bool], where: str, rebuilt: str
    ) -> Self:
        """The index at ``path``, made if new, set aside and made anew if damaged."""
        try:
            db = open_state(path, _SCHEMA, rebuilt)
            _add_columns(db)
            return cls(db, intact, where)
        except (OSError, sqlite3.Error) as exc:  # a full disk, no permission
            raise StoreError(f"cannot open the index of {where}: {exc}") from None

    @classmethod
    def read_only(
        cls, path: Path, intact: Callable[[StoredImage], bool], where: str
    ) -> Self | None:
        """The index at ``path`` for look-ups only: nothing is written, not even a
        journal; None if there is none, StoreError if it is damaged."""
        if not path.exists():
            return None
        # With no write-ahead log beside it, everything is in the file:
        # "immutable" reads it without creating the log's companion files.
        wal = path.with_name(f"{path.name}-wal").exists()
        db = sqlite3.connect(
            f"{path.absolute().as_uri()}?{'mode=ro' if wal else 'immutable=1'}", uri=True
        )
        try:
            check(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(str(exc)) from None
        return cls(db, intact, where)

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
        try:
            query = f"SELECT {self._select} FROM images WHERE {condition} LIMIT 4"
            rows = self._db.execute(query, args).fetchall()
        except sqlite3.Error as exc:  # damaged while the crawl runs: the next run sets it aside
            raise StoreError(
                f"cannot read the index of {self._where} ({exc}); run the same command "
                "again to set it aside and rebuild it"
            ) from None
        for row in rows:
            image = StoredImage(*row)
            if self.intact(image):
                return image
        return None

    def record(self, image: StoredImage) -> None:
        self.record_all([image])

    def record_all(self, images: Iterable[StoredImage]) -> None:
        try:
            with _transaction(self._db):
                self._db.executemany(
                    f"INSERT OR REPLACE INTO images ({_COLUMNS}) VALUES ({_PLACES})",
                    map(_row, images),
                )
        except sqlite3.Error as exc:
            full = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
            reason = "No space left on device" if full else str(exc)  # as a file write says it
            raise StoreError(f"cannot update the index of {self._where}: {reason}") from exc

    def forget(self, paths: Iterable[str]) -> None:
        with _transaction(self._db):
            self._db.executemany("DELETE FROM images WHERE path = ?", ((p,) for p in paths))

    def sizes(self) -> dict[str, int]:
        """Every recorded path and its size."""
        return dict(self._db.execute("SELECT path, bytes FROM images"))

    def last_rowid(self) -> int:
        return self._db.execute("SELECT coalesce(max(rowid), 0) FROM images").fetchone()[0]

    def since(self, rowid: int) -> tuple[int, list[StoredImage]]:
        """Images recorded after ``rowid`` (a replaced row gets a new one), and the last rowid."""
        rows = self._db.execute(
            f"SELECT rowid, {self._select} FROM images WHERE rowid > ? ORDER BY rowid", (rowid,)
        ).fetchall()
        last = rows[-1][0] if rows else rowid
        return last, [StoredImage(*row[1:]) for row in rows]

    def get_state(self, name: str, default: str = "") -> str:
        row = self._db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return row[0] if row else default

    def set_state(self, name: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (name, value))

    def close(self) -> None:
        self._db.close()


def _add_columns(db: sqlite3.Connection) -> None:
    """Give an index made by an earlier version the columns added since, with their
    defaults; in one transaction, so processes opening it together add each once."""
    with _transaction(db):
        present = {row[1] for row in db.execute("PRAGMA table_info(images)")}
        for name, definition in _ADDED.items():
            if name not in present:
                db.execute(f"ALTER TABLE images ADD COLUMN {name} {definition}")


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
