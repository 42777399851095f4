"""``scrapy crawl`` with exit statuses a script can act on, and a plan.

0: every image is stored; 1: the crawl could not run or was stopped;
2: the posts input cannot be read (nothing was written); 3: the crawl
finished but some images failed (listed in the failure feed); 4: the crawl
finished but an output could not be written (a feed, the summary, or with
``IGIMAGES_REPORT=True`` the report), said in one line each
(``igimages.launch``, shared with the Python API).
With ``-a plan=1`` the input is read and what a crawl would do is printed;
nothing is downloaded or written. Where the posts come from is
``IGIMAGES_POSTS``'s: it prepares them before the crawl starts (the input is
read once, or, in a job, queued for the job's workers).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

from igimages.inputs import InputSpec, PostsFileError, PostSource
from igimages.launch import (
    EXIT_BAD_INPUT,
    CrawlNotRun,
    after_crawl,
    exit_status,
    prepare,
    why_not_started,
)
from igimages.plan import make_plan
from igimages.redact import echo, install


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        install(self.settings)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider: scrapy crawl post_images -a posts=PATH")
        if opts.spargs.get("plan", "0").lower() not in ("", "0", "no", "false"):
            try:
                echo(
                    make_plan(PostSource(InputSpec.from_args(opts.spargs)), self.settings).report()
                )
            except PostsFileError as exc:
                echo(f"error: {exc}", sys.stderr)
                self.exitcode = EXIT_BAD_INPUT
            return
        try:
            prepared = prepare(self.settings, opts.spargs)
        except CrawlNotRun as exc:
            echo(f"error: {exc}", sys.stderr)
            self.exitcode = exc.exit_status
            return
        assert self.crawler_process is not None
        crawler = self._create_crawler(args[0])
        task = self.crawler_process.crawl(crawler, **opts.spargs, **prepared)
        task.add_done_callback(_say_why_it_could_not_start)
        self.crawler_process.start()
        stats = crawler.stats.get_stats() if crawler.stats else {}
        status = exit_status(stats, started=not self.crawler_process.bootstrap_failed)
        self.exitcode = after_crawl(self.settings, stats, status)


def _say_why_it_could_not_start(task: asyncio.Task[None]) -> None:
    """A store that cannot be used (bad scheme, no bucket, denied, in use): one line, not a
    traceback. Anything else that stops a crawl from starting is said too, never silently."""
    if task.cancelled() or (error := task.exception()) is None:
        return
    echo(f"error: {why_not_started(error)}", sys.stderr)
