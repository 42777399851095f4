"""``scrapy crawl`` with exit statuses a script can act on, and a plan.

0: every image is stored; 1: the crawl could not run or was stopped;
2: the posts input cannot be read (nothing was written); 3: the crawl
finished but some images failed (listed in the failure feed); 4: with
``IGIMAGES_REPORT=True``, the crawl finished but its report could not be made.
With ``-a plan=1`` the input is read and what a crawl would do is printed;
nothing is downloaded or written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

from igimages import redact
from igimages.commands.report import write_report
from igimages.inputs import InputSpec, PostsFileError, PostSource, Shard, survey
from igimages.plan import make_plan
from igimages.report import ReportError, ReportOptions
from igimages.store import StoreError

EXIT_STOPPED, EXIT_BAD_INPUT, EXIT_SOME_FAILED, EXIT_NO_REPORT = 1, 2, 3, 4


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        redact.install()
        try:
            shard = Shard.from_setting(self.settings.get("IGIMAGES_SHARD"))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if shard is not None and (jobdir := self.settings.get("JOBDIR")):
            # Processes splitting one input may be given one JOBDIR: each keeps
            # its records in a folder of its own.
            self.settings.set("JOBDIR", os.path.join(jobdir, f"shard-{shard}"), "cmdline")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider: scrapy crawl post_images -a posts=PATH")
        if self.settings.getbool("IGIMAGES_REPORT"):
            try:  # a store the report cannot be made of is said before any download
                ReportOptions.from_settings(self.settings)
            except ReportError as exc:
                print(f"error: IGIMAGES_REPORT=True: {exc}", file=sys.stderr)
                self.exitcode = EXIT_STOPPED
                return
        max_images = self.settings.getint("IGIMAGES_MAX_IMAGES_PER_POST")
        shard = Shard.from_setting(self.settings.get("IGIMAGES_SHARD"))
        try:
            spec = InputSpec.from_args(opts.spargs)
            if opts.spargs.get("plan", "0").lower() not in ("", "0", "no", "false"):
                print(make_plan(PostSource(spec, shard), self.settings).report())
                return
            # The crawl's own reading is opened first: standard input can only
            # be read once, so it is not surveyed (progress then has no total).
            source = PostSource(spec, shard)
            found = None if spec.reads_stdin else survey(spec, max_images, shard)
        except PostsFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exitcode = EXIT_BAD_INPUT
            return
        assert self.crawler_process is not None
        crawler = self._create_crawler(args[0])
        task = self.crawler_process.crawl(crawler, **opts.spargs, survey=found, source=source)
        task.add_done_callback(_say_why_it_could_not_start)
        self.crawler_process.start()
        stats = crawler.stats.get_stats() if crawler.stats else {}
        if self.crawler_process.bootstrap_failed:
            self.exitcode = EXIT_STOPPED
        elif stats.get("finish_reason") == "bad_input":
            self.exitcode = EXIT_BAD_INPUT
        elif stats.get("finish_reason") != "finished":
            self.exitcode = EXIT_STOPPED
        elif stats.get("igimages/images/failed"):
            self.exitcode = EXIT_SOME_FAILED
        if self.settings.getbool("IGIMAGES_REPORT"):
            self._report(stats)

    def _report(self, stats: dict[str, object]) -> None:
        """The report of the store, once the feeds it reads are complete on disk."""
        if stats.get("finish_reason") != "finished":
            print(
                "report not written: the crawl did not finish (scrapy report makes it)",
                file=sys.stderr,
            )
        elif write_report(self.settings) != 0:
            self.exitcode = EXIT_NO_REPORT


def _say_why_it_could_not_start(task: asyncio.Task[None]) -> None:
    """A store that cannot be opened (bad scheme, no bucket, denied): one line, not a traceback."""
    if not task.cancelled() and isinstance(error := task.exception(), StoreError):
        print(f"error: {error}", file=sys.stderr)
