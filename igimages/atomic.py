"""Write a file under a temporary name, then rename it: never a partial file where a
complete one is expected.

Every file igimages writes into place (an image, a feed, a thumbnail, a report
page) goes through here. A temporary name carries the writer's process id, so
the leftovers of a killed run are told from those of a live one and removed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

PART = ".part"


def temporary_name(target: Path) -> Path:
    """A hidden name beside ``target``, this process's own: ``.<name>.<pid>-<random>.part``."""
    return target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PART}")


def publish(temporary: str | Path, target: str | Path) -> None:
    """Rename ``temporary`` to ``target`` at once, making ``target``'s folder if it has none."""
    try:
        os.replace(temporary, target)
    except FileNotFoundError:  # a new folder's first file (or no temporary: that fails again)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(temporary, target)


@contextmanager
def replacing(target: str | Path, temporary: str | Path | None = None) -> Iterator[str | Path]:
    """A temporary file that becomes ``target`` only if the block succeeds; else it is removed.

    Names are used as given (an image's are strings: it is written once per image)."""
    if temporary is None:
        temporary = temporary_name(Path(target))
    try:
        yield temporary
        publish(temporary, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


def owner(name: str) -> int | None:
    """The process id a temporary name carries (``.x.<pid>-…`` or ``<pid>-…``), if any."""
    number = name.removesuffix(PART).rpartition(".")[2].partition("-")[0]
    return int(number) if number.isdecimal() else None


def is_running(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs (its leftovers are then not orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(paths: Iterator[Path]) -> None:
    """Delete the temporary files among ``paths`` whose process no longer runs."""
    for path in paths:
        pid = owner(path.name)
        if pid is None or (pid != os.getpid() and not is_running(pid)):
            with suppress(OSError):
                path.unlink()
