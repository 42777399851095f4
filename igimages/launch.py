"""What is checked before a crawl starts, and the exit status it ends with.

Shared by ``scrapy crawl`` (``igimages.commands.crawl``) and the Python API
(``igimages.api``), so both refuse the same things in the same words and end
with the same statuses: 0 every image is stored; 1 the crawl could not run or
was stopped; 2 the posts input cannot be read (nothing was written); 3 the
crawl finished but some images failed; 4 the crawl finished but an output
could not be written.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from scrapy.settings import BaseSettings
from scrapy.utils.misc import load_object

from igimages import compat
from igimages.errors import OneLineError
from igimages.inputs import PostsFileError
from igimages.outputs.feeds import MANIFEST
from igimages.outputs.storages import UNWRITTEN, WRITTEN, error_text
from igimages.redact import echo
from igimages.store import StoreUri

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_STOPPED, EXIT_BAD_INPUT, EXIT_SOME_FAILED, EXIT_NOT_WRITTEN = 0, 1, 2, 3, 4

#: The stats that say, in one line, why a crawl stopped before its end.
STOP_MESSAGES = ("igimages/input_error", "igimages/store_error", "igimages/job_error")


class CrawlNotRun(OneLineError):
    """The crawl cannot start (or could not finish); ``str()`` is the line to show."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def prepare(settings: BaseSettings, arguments: dict[str, Any]) -> dict[str, Any]:
    """Check everything that would stop the crawl before its first download.

    Returns the spider arguments ``IGIMAGES_POSTS`` adds (the input is read
    once here, or, in a job, queued for its workers).
    """
    if (unknown := compat.check()) is not None:
        raise CrawlNotRun(unknown, EXIT_STOPPED)
    if settings.getbool("IGIMAGES_REPORT"):
        from igimages.report import ReportError, ReportOptions  # only when asked for

        try:
            ReportOptions.from_settings(settings)
        except ReportError as exc:
            raise CrawlNotRun(f"IGIMAGES_REPORT=True: {exc}", EXIT_STOPPED) from None
    posts = load_object(settings["IGIMAGES_POSTS"])
    try:
        return posts.prepare(settings, arguments)
    except PostsFileError as exc:
        raise CrawlNotRun(str(exc), EXIT_BAD_INPUT) from None
    except OneLineError as exc:
        raise CrawlNotRun(str(exc), EXIT_STOPPED) from None


def exit_status(stats: dict[str, Any], started: bool = True) -> int:
    """The exit status of a crawl that ended with ``stats``; ``started``: it got going."""
    reason = stats.get("finish_reason")
    if not started:
        return EXIT_STOPPED
    if reason == "bad_input":
        return EXIT_BAD_INPUT
    if reason != "finished":
        return EXIT_STOPPED
    if stats.get(UNWRITTEN):
        return EXIT_NOT_WRITTEN
    if stats.get("igimages/images/failed"):
        return EXIT_SOME_FAILED
    return EXIT_OK


def stop_message(stats: dict[str, Any]) -> str:
    """Why a crawl that did not finish stopped, in one line."""
    for name in STOP_MESSAGES:
        if message := stats.get(name):
            return str(message)
    reason = stats.get("finish_reason") or "not started"
    if reason == "shutdown":
        return "the crawl was stopped (Ctrl-C or SIGTERM); run it again to finish"
    return f"the crawl stopped ({reason}); run it again to finish"


def wrote_manifest(settings: BaseSettings, stats: dict[str, Any]) -> bool:
    """Whether this crawl wrote (or tried to write) the store's manifest: of a job's
    workers, only the one that wrote the job's feeds did."""
    manifest = StoreUri.from_settings(settings).file(MANIFEST)
    return manifest in stats.get(WRITTEN, []) or any(
        line.startswith(f"{manifest}: ") for line in stats.get(UNWRITTEN, [])
    )


def after_crawl(settings: BaseSettings, stats: dict[str, Any], status: int) -> int:
    """What follows a crawl (with ``IGIMAGES_REPORT=True``, its report); the final status.

    The report reads the feeds once they are complete on disk, so it is made
    here and not by an extension; it is this crawl's to make only if this crawl
    wrote the store's manifest.
    """
    if not settings.getbool("IGIMAGES_REPORT"):
        return status
    from igimages.commands.report import write_report  # imports the report's modules

    if stats.get("finish_reason") != "finished":
        echo("report not written: the crawl did not finish (scrapy report makes it)", sys.stderr)
    elif wrote_manifest(settings, stats) and write_report(settings) != 0:
        return EXIT_NOT_WRITTEN
    return status


def why_not_started(error: BaseException) -> str:
    """The line that says why a crawl could not start; a surprise is logged in full too."""
    if isinstance(error, OneLineError):
        return str(error)
    logger.error("The crawl could not start", exc_info=error)
    return f"the crawl could not start: {type(error).__name__}: {error_text(error)}"
