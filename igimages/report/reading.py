"""What a crawl left in a store, read back for the report.

The manifest (one line per post) says what happened to every image; the
summary has the run's counts, time and timeline (a job's summary, written
from Redis when the job ends, has its counts only).

Everything here comes from files a posts input shaped, so nothing is
trusted: a path must stay inside the store, a hash must be a hash, and a
line that is not a manifest line stops the report with its place named.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from igimages.items import FAILED

_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_PHASH = re.compile(r"[0-9a-f]{16}\Z")


class ReportError(Exception):
    """The report cannot be made; the message says why in one line."""

    def __init__(self, message: str, exit_status: int = 2) -> None:
        super().__init__(message)
        self.exit_status = exit_status


@dataclass(frozen=True, slots=True)
class RunFiles:
    """The feeds of a store's latest run."""

    manifests: list[Path]
    summaries: list[Path]


def run_files(store: Path) -> RunFiles:
    """The manifest and the summary (if any) of the latest run in ``store``."""
    if not store.is_dir():
        raise ReportError(f"{store}: no such folder (IMAGES_STORE)")
    manifest, summary = store / "manifest.jsonl", store / "summary.json"
    if not manifest.is_file():
        raise ReportError(f"{manifest}: not found; run a crawl into {store} first")
    return RunFiles([manifest], [summary] if summary.is_file() else [])


@dataclass(slots=True)
class ReportImage:
    """One image of a post as the manifest has it; fields that fail checks are None."""

    position: int
    status: str
    url: str
    path: str | None = None  # relative to the store, checked to stay inside it
    sha256: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    format: str = ""
    reason: str = ""
    detail: str = ""
    http_status: int | None = None
    duplicate_of: str | None = None
    phash: str = ""  # '' if the manifest has none (stored by an earlier version)


@dataclass(slots=True)
class ReportPost:
    id: str
    url: str
    images: list[ReportImage]

    @property
    def statuses(self) -> list[str]:
        return sorted({image.status for image in self.images})

    @property
    def reasons(self) -> list[str]:
        return sorted({image.reason for image in self.images if image.status == FAILED})


def read_posts(manifests: list[Path]) -> Iterator[ReportPost]:
    """Every post of the manifests, in order, one line at a time."""
    for path in manifests:
        with _open(path) as lines:
            for number, line in enumerate(lines, 1):
                if line.isspace():
                    continue
                try:
                    value = json.loads(line)
                except (ValueError, RecursionError) as exc:  # a hostile copy of a manifest
                    raise ReportError(f"{path}, line {number}{_json_error(exc)}") from None
                post = _post(value)
                if post is None:
                    raise ReportError(
                        f"{path}, line {number}: not a manifest line "
                        '(an object with an "id" and a list of "images")'
                    )
                yield post


def read_summaries(paths: list[Path]) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Each summary by file name, and a warning for each that cannot be read.

    A summary only adds the run's time and timeline to the report, so one
    that is damaged is left out rather than stopping it.
    """
    summaries, warnings = [], []
    for path in paths:
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            warnings.append(f"{path}: left out, cannot be read ({exc})")
            continue
        if isinstance(value, dict):
            summaries.append((path.name, value))
        else:
            warnings.append(f"{path}: left out, not a JSON object")
    return summaries, warnings


def _json_error(exc: ValueError | RecursionError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f", column {exc.colno}: not JSON ({exc.msg})"
    return f": not JSON ({exc})"


def _open(path: Path) -> Any:
    try:
        return open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ReportError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _post(value: Any) -> ReportPost | None:
    if not isinstance(value, dict):
        return None
    post_id, images = value.get("id"), value.get("images")
    if isinstance(post_id, int) and not isinstance(post_id, bool):
        post_id = str(post_id)
    if not isinstance(post_id, str) or not isinstance(images, list):
        return None
    parsed = []
    for number, image in enumerate(images, 1):
        if not isinstance(image, dict):
            return None
        parsed.append(_image(image, number))
    return ReportPost(post_id, _text(value.get("url")), parsed)


def _image(value: dict[str, Any], number: int) -> ReportImage:
    return ReportImage(
        position=_int(value.get("position")) or number,
        status=_text(value.get("status")) or "unknown",
        url=_text(value.get("url")),
        path=safe_path(value.get("path")),
        sha256=sha if isinstance(sha := value.get("sha256"), str) and _SHA256.match(sha) else None,
        bytes=_int(value.get("bytes")),
        width=_int(value.get("width")),
        height=_int(value.get("height")),
        format=_text(value.get("format")),
        reason=_text(value.get("reason")),
        detail=_text(value.get("detail")),
        http_status=_int(value.get("http_status")),
        duplicate_of=safe_path(value.get("duplicate_of")),
        phash=phash if isinstance(phash := value.get("phash"), str) and _PHASH.match(phash) else "",
    )


def safe_path(value: Any) -> str | None:
    """``value`` if it is a relative path that stays inside the store, else None."""
    if not isinstance(value, str) or not value or "\\" in value or "\0" in value:
        return None
    if any(part in ("", ".", "..") for part in value.split("/")):  # also "/abs" and "a//b"
        return None
    return value


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
