"""Advisory locks on files: one writer per store, and short sections one at a time.

``flock`` locks belong to an open file and end with the process that holds
them, however it ends: a crashed or killed run never blocks the next one.
They hold between the processes of one machine (and on most network file
systems between machines, as locks emulated by the server).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def try_lock(path: Path, *, shared: bool = False) -> IO[bytes] | None:
    """The open lock file, locked; None if another process holds it in a way that excludes us.

    The lock lasts until the returned file is closed, or the process ends.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    file = open(path, "a+b")  # noqa: SIM115 - held for as long as the lock
    try:
        fcntl.flock(file, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        return None
    except BaseException:
        file.close()
        raise
    return file


@contextmanager
def exclusively(path: Path) -> Iterator[None]:
    """Wait for, then hold, the lock at ``path`` for the block: a short section one at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield


def rewrite(file: IO[bytes], data: bytes) -> None:
    """Replace what the open lock ``file`` says about its holder."""
    file.seek(0)
    file.truncate()
    file.write(data)
    file.flush()


def read(path: Path) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read(4096)
    except OSError:
        return b""
