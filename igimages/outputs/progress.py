"""The crawl's progress while it runs, and its summary at the end (log and ``summary.json``)."""

from __future__ import annotations

import html
import json
import logging
import sys
import time
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.extensions.feedexport import FeedExporter
from scrapy.utils.asyncio import create_looping_call
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred

from igimages import signals as igimages_signals
from igimages.fetch.adaptive import pushback_summary
from igimages.fetch.gate import DownloadGateMiddleware
from igimages.fetch.limits import GateView
from igimages.items import STATUSES
from igimages.outputs.storages import UNWRITTEN, error_text, store_whole
from igimages.redact import redact
from igimages.units import duration, size

logger = logging.getLogger(__name__)


class ImageProgress:
    """Report image counts while the crawl runs and sum them up at the end.

    The counts themselves are Scrapy stats under ``igimages/`` kept by the
    pipeline; this only reads them. Every ``IGIMAGES_PROGRESS_INTERVAL`` the
    line is shown where the user is looking (``progress_view``).
    """

    def __init__(self, crawler: Crawler, interval: float) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.interval = interval
        self.view = progress_view(crawler.settings.getbool("IGIMAGES_PROGRESS_LIVE"))
        self.started = time.monotonic()
        self.task: Any = None
        self.gate: GateView | None = None
        # The feeds are stored as the spider closes, beside this extension: the
        # summary waits for them, to say which were written.
        self.feeds_stored: Deferred[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        extension = cls(crawler, crawler.settings.getfloat("IGIMAGES_PROGRESS_INTERVAL"))
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(extension.feeds_closed, signal=signals.feed_exporter_closed)
        return extension

    def spider_opened(self) -> None:
        self.started = time.monotonic()
        if self.crawler.get_extension(FeedExporter) is not None:
            self.feeds_stored = Deferred()
        self.gate = self.crawler.get_downloader_middleware(DownloadGateMiddleware)
        if self.interval > 0:  # 0: no progress, only the summary
            self.task = create_looping_call(self.report)
            self.task.start(self.interval, now=False)

    def counts(self) -> dict[str, int]:
        return {status: self.stats.get_value(f"igimages/images/{status}", 0) for status in STATUSES}

    def report(self) -> None:
        counts = self.counts()
        done = sum(counts.values())
        total = self.stats.get_value("igimages/images/total")
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        if total:
            eta = duration((total - done) / rate) if rate else "?"
            head = f"{done}/{total} images ({100 * done / total:.0f}%)"
            tail = f", ETA {eta}"
        else:
            head, tail = f"{done} images", ""
        line = (
            f"{head}: {counts['downloaded']} downloaded, {counts['cached']} cached, "
            f"{counts['duplicate']} duplicate, {counts['failed']} failed; "
            f"{rate:.1f} images/s{tail}{self._in_flight()}{self._more()}"
        )
        self.view.show(done, total, line)

    def _in_flight(self) -> str:
        """Downloads in flight, and the busiest host's share and limit."""
        if self.gate is None:
            return ""
        text = f"; {self.gate.in_flight} in flight"
        if (busiest := self.gate.busiest()) is not None:
            slot, count, limit = busiest
            text += f" ({slot}: {count}, limit {limit:.0f})"
        return text

    def _more(self) -> str:
        """What others add to the line (``progress_asked``): a job's own progress."""
        said = self.crawler.signals.send_catch_log(igimages_signals.progress_asked)
        return "".join(f"; {text}" for _, text in said if isinstance(text, str) and text)

    def feeds_closed(self) -> None:
        if self.feeds_stored is not None and not self.feeds_stored.called:
            self.feeds_stored.callback(None)

    async def spider_closed(self, reason: str) -> None:
        if self.task is not None and self.task.running:
            self.task.stop()
        if self.task is not None:
            if self.view.redrawn:
                self.report()  # the last word: 100%, where the user is looking
            self.view.close()
        if self.feeds_stored is not None:
            await maybe_deferred_to_future(self.feeds_stored)
        counts = self.counts()
        elapsed = time.monotonic() - self.started
        done = sum(counts.values())
        self.stats.set_value("igimages/elapsed_seconds", round(elapsed, 3))
        lines = [
            f"igimages finished ({reason}) in {duration(elapsed)}: {done} images "
            f"of {self.stats.get_value('igimages/posts/done', 0)} posts, "
            f"{done / elapsed if elapsed else 0:.1f} images/s",
            f"  downloaded {counts['downloaded']} "
            f"({size(self.stats.get_value('igimages/bytes', 0))}), cached {counts['cached']}, "
            f"duplicate {counts['duplicate']}, failed {counts['failed']}",
        ]
        reasons = {
            key.rpartition("/")[2]: value
            for key, value in self.stats.get_stats().items()
            if key.startswith("igimages/failed/")
        }
        if reasons:
            lines.append(
                "  failed by reason: "
                + ", ".join(f"{name} {count}" for name, count in sorted(reasons.items()))
            )
        if pushed := pushback_summary(self.stats.get_stats()):
            lines.append("  hosts that pushed back (their limit was cut):")
            lines += [f"    {line}" for line in pushed]
        if expired := self.stats.get_value("igimages/failed/expired"):
            lines.append(
                f"  {expired} images have expired links: only a fresh scrape of their "
                "posts gives working ones"
            )
        if resumed := self.stats.get_value("igimages/posts/resumed"):
            lines.append(f"  {resumed} posts were finished earlier in this job (JOBDIR)")
        if interrupted := self.stats.get_value("igimages/posts/interrupted"):
            lines.append(
                f"  stopped with {interrupted} posts unfinished: the same command completes them"
            )
        if bad := self.stats.get_value("igimages/posts/bad"):
            lines.append(f"  skipped {bad} bad posts (see the warnings above)")
        unwritten = self.stats.get_value(UNWRITTEN, [])
        for uri in self.crawler.settings.getdict("FEEDS"):
            if not any(line.startswith(f"{uri}: ") for line in unwritten):
                lines.append(f"  wrote {uri}")
        if summary := await self.write_summary(reason):
            lines.append(f"  summary in {summary}")
        lines += [f"  could not write {line}" for line in self.stats.get_value(UNWRITTEN, [])]
        logger.info("\n".join(lines))

    async def write_summary(self, reason: str) -> str | None:
        """Leave the run's counts as JSON for scripts, through Scrapy's feed storages.

        So it goes where the feeds go (a folder, s3://, gs://) and, like
        them, replaces the previous summary only once written whole.
        """
        uri = self.crawler.settings["IGIMAGES_SUMMARY_FILE"]
        if not uri:  # a job's worker: the job's summary is written when it ends
            return None
        summary = {
            key.removeprefix("igimages/"): value
            for key, value in self.stats.get_stats().items()
            if key.startswith("igimages/")
        }
        summary["finish_reason"] = reason
        text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
        try:
            await store_whole(self.crawler, uri, text.encode())
        except Exception as exc:  # a full disk, a bucket refusing: one line, the old one stays
            logger.error("Cannot write the summary %s: %s", uri, error_text(exc))
            return None
        return uri


class LogLines:
    """Progress as a log line each time: a log file, a job's worker."""

    redrawn = False

    def show(self, done: int, total: int | None, line: str) -> None:
        logger.info(line)

    def close(self) -> None:
        pass


class TerminalLine:
    """One line with a bar, redrawn in place on the terminal."""

    redrawn = True

    def show(self, done: int, total: int | None, line: str) -> None:
        if total:
            filled = round(20 * done / total)
            line = f"[{'#' * filled}{'.' * (20 - filled)}] {line}"
        sys.stderr.write(f"\r{line}\x1b[K")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


class NotebookBar:
    """A progress bar in the notebook's output, under the cell that started the crawl."""

    redrawn = True

    def __init__(self) -> None:
        from IPython.display import HTML, display

        self.html = HTML
        self.handle = display(self.html(""), display_id=True)

    def show(self, done: int, total: int | None, line: str) -> None:
        bar = f'<progress value="{done}" max="{total}"></progress> ' if total else ""
        text = html.escape(redact(line))
        self.handle.update(self.html(f'<div class="igimages-progress">{bar}{text}</div>'))

    def close(self) -> None:
        pass


def progress_view(live: bool) -> LogLines | TerminalLine | NotebookBar:
    """Where progress goes: a notebook's bar, a terminal's line redrawn in place, or the log.

    ``live`` False (``IGIMAGES_PROGRESS_LIVE``: a job's workers, which share a
    terminal) keeps it in the log.
    """
    if live and _in_notebook():
        return NotebookBar()
    if live and sys.stderr.isatty():
        return TerminalLine()
    return LogLines()


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel, whose front end shows rich output."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
