"""The SQLite files of derived state: opened checked, set aside when damaged.

The store's index and a ``JOBDIR``'s record of finished posts are both made
from something else (the stored files, the posts already done), so a damaged
one is not the end of a run: it is renamed out of the way (kept, for whoever
wants to look at it), a new one takes its place and is rebuilt as the crawl
goes, and the user is told in one line.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import time
from pathlib import Path

from igimages.store import locking

logger = logging.getLogger(__name__)


class DamagedState(sqlite3.DatabaseError):
    """A state file that is not a sound SQLite database."""


def open_state(path: Path, schema: str, rebuilt: str, timeout: float = 60) -> sqlite3.Connection:
    """``path`` in WAL mode with ``schema``; a damaged file is set aside first.

    ``rebuilt`` says, for the user, how the new one is filled. Processes that
    open the same file together (the workers of a job) take turns, so one of
    them sets a damaged file aside and the others open the new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with locking.exclusively(path.with_name(f"{path.name}.lock")):
        try:
            return _open(path, schema, timeout)
        except DamagedState as exc:
            aside = set_aside(path)
            logger.warning(
                "%s is damaged (%s): set aside as %s and made anew, %s",
                path,
                exc,
                aside.name,
                rebuilt,
            )
        return _open(path, schema, timeout)


def check(db: sqlite3.Connection) -> None:
    """Raise ``DamagedState`` unless SQLite finds ``db``'s structure sound (``quick_check``:
    about half a second for an index of a million images)."""
    try:
        verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            raise DamagedState(str(exc)) from None
        raise
    if verdict != "ok":
        raise DamagedState(verdict)


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file is damaged (not busy, not a full disk, not denied)."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return isinstance(exc, DamagedState) or code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def set_aside(path: Path) -> Path:
    """Rename ``path`` (and its write-ahead log) out of the way; never delete it."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    for again in itertools.count(2):  # one set aside earlier in the same second is kept too
        if not aside.exists():
            break
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{again}")
    for suffix in ("-wal", "-shm", ""):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.replace(aside.with_name(aside.name + suffix))
    return aside


def _open(path: Path, schema: str, timeout: float) -> sqlite3.Connection:
    """Open in WAL mode and check. When several processes open a new file
    together, switching it to WAL needs it to itself, and SQLite then fails at
    once instead of waiting: so this waits."""
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                check(db)
                db.executescript(schema)
                break
            except sqlite3.DatabaseError as exc:
                if is_damage(exc):
                    raise DamagedState(str(exc)) from None
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    except BaseException:
        db.close()
        raise
    db.execute("PRAGMA synchronous=NORMAL")
    return db
