"""``scrapy crawl`` with exit statuses a script can act on, and a plan.

0: every image is stored; 1: the crawl could not run or was stopped;
2: the posts input cannot be read (nothing was written); 3: the crawl
finished but some images failed (listed in the failure feed); 4: the crawl
finished but an output could not be written (a feed, the summary, or with
``IGIMAGES_REPORT=True`` the report), said in one line each.
With ``-a plan=1`` the input is read and what a crawl would do is printed;
nothing is downloaded or written. Where the posts come from is
``IGIMAGES_POSTS``'s: it prepares them before the crawl starts (the input is
read once, or, in a job, queued for the job's workers).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError
from scrapy.utils.misc import load_object

from igimages import compat
from igimages.commands.report import write_report
from igimages.errors import OneLineError
from igimages.inputs import InputSpec, PostsFileError, PostSource
from igimages.outputs.feeds import MANIFEST
from igimages.outputs.storages import UNWRITTEN, WRITTEN, error_text
from igimages.plan import make_plan
from igimages.redact import echo, install
from igimages.store import StoreUri

logger = logging.getLogger(__name__)

EXIT_STOPPED, EXIT_BAD_INPUT, EXIT_SOME_FAILED, EXIT_NOT_WRITTEN = 1, 2, 3, 4


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        install(self.settings)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider: scrapy crawl post_images -a posts=PATH")
        if (unknown := compat.check()) is not None:
            echo(f"error: {unknown}", sys.stderr)
            self.exitcode = EXIT_STOPPED
            return
        if self.settings.getbool("IGIMAGES_REPORT"):
            from igimages.report import ReportError, ReportOptions  # only when asked for

            try:  # a store the report cannot be made of is said before any download
                ReportOptions.from_settings(self.settings)
            except ReportError as exc:
                echo(f"error: IGIMAGES_REPORT=True: {exc}", sys.stderr)
                self.exitcode = EXIT_STOPPED
                return
        if opts.spargs.get("plan", "0").lower() not in ("", "0", "no", "false"):
            try:
                echo(
                    make_plan(PostSource(InputSpec.from_args(opts.spargs)), self.settings).report()
                )
            except PostsFileError as exc:
                echo(f"error: {exc}", sys.stderr)
                self.exitcode = EXIT_BAD_INPUT
            return
        posts = load_object(self.settings["IGIMAGES_POSTS"])
        try:
            prepared = posts.prepare(self.settings, opts.spargs)
        except PostsFileError as exc:
            echo(f"error: {exc}", sys.stderr)
            self.exitcode = EXIT_BAD_INPUT
            return
        except OneLineError as exc:
            echo(f"error: {exc}", sys.stderr)
            self.exitcode = EXIT_STOPPED
            return
        assert self.crawler_process is not None
        crawler = self._create_crawler(args[0])
        task = self.crawler_process.crawl(crawler, **opts.spargs, **prepared)
        task.add_done_callback(_say_why_it_could_not_start)
        self.crawler_process.start()
        # A crawl refused as it was set up (an add-on's OneLineError) has no stats.
        failed_to_start = self.crawler_process.bootstrap_failed
        stats = {} if failed_to_start else crawler.stats.get_stats()
        if failed_to_start:
            self.exitcode = EXIT_STOPPED
        elif stats.get("finish_reason") == "bad_input":
            self.exitcode = EXIT_BAD_INPUT
        elif stats.get("finish_reason") != "finished":
            self.exitcode = EXIT_STOPPED
        elif stats.get(UNWRITTEN):
            self.exitcode = EXIT_NOT_WRITTEN
        elif stats.get("igimages/images/failed"):
            self.exitcode = EXIT_SOME_FAILED
        if self.settings.getbool("IGIMAGES_REPORT"):
            self._report(stats)

    def _report(self, stats: dict[str, Any]) -> None:
        """The report of the store, once the feeds it reads are complete on disk.

        It is this crawl's to write if this crawl wrote (or tried to write) the
        store's manifest: of a job's workers, only the one that wrote the job's feeds.
        """
        manifest = StoreUri.from_settings(self.settings).file(MANIFEST)
        if stats.get("finish_reason") != "finished":
            echo(
                "report not written: the crawl did not finish (scrapy report makes it)", sys.stderr
            )
        elif manifest not in stats.get(WRITTEN, []) and not any(
            line.startswith(f"{manifest}: ") for line in stats.get(UNWRITTEN, [])
        ):
            return  # another worker of the job wrote the store's feeds
        elif write_report(self.settings) != 0:
            self.exitcode = EXIT_NOT_WRITTEN


def _say_why_it_could_not_start(task: asyncio.Task[None]) -> None:
    """A store that cannot be used (bad scheme, no bucket, denied, in use): one line, not a
    traceback. Anything else that stops a crawl from starting is said too, never silently."""
    if task.cancelled() or (error := task.exception()) is None:
        return
    if isinstance(error, OneLineError):
        echo(f"error: {error}", sys.stderr)
        return
    logger.error("The crawl could not start", exc_info=error)
    reason = f"{type(error).__name__}: {error_text(error)}"
    echo(f"error: the crawl could not start: {reason}", sys.stderr)
