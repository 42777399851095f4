"""``scrapy crawl`` with exit statuses a script can act on, and a plan.

0: every image is stored; 1: the crawl could not run or was stopped;
2: the posts input cannot be read (nothing was written); 3: the crawl
finished but some images failed (listed in the failure feed); 4: the crawl
finished but an output could not be written (a feed, the summary, or with
``IGIMAGES_REPORT=True`` the report), said in one line each.
With ``-a plan=1`` the input is read and what a crawl would do is printed;
nothing is downloaded or written. With ``REDIS_URL`` the crawl is a worker
of a job (``igimages.job``): an input given is queued for the job first.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError
from scrapy.settings import BaseSettings

from igimages.commands.report import write_report
from igimages.exporters import UNWRITTEN, error_text
from igimages.inputs import InputSpec, PostsFileError, PostSource, survey
from igimages.job import JOB_FEEDS_WRITTEN, JobError, JobKeys, is_job, job_name, store_identity
from igimages.plan import make_plan
from igimages.redact import echo, install
from igimages.store import StoreError

logger = logging.getLogger(__name__)

EXIT_STOPPED, EXIT_BAD_INPUT, EXIT_SOME_FAILED, EXIT_NOT_WRITTEN = 1, 2, 3, 4


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        install(self.settings)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider: scrapy crawl post_images -a posts=PATH")
        if self.settings.getbool("IGIMAGES_REPORT"):
            from igimages.report import ReportError, ReportOptions  # only when asked for

            try:  # a store the report cannot be made of is said before any download
                ReportOptions.from_settings(self.settings)
            except ReportError as exc:
                echo(f"error: IGIMAGES_REPORT=True: {exc}", sys.stderr)
                self.exitcode = EXIT_STOPPED
                return
        max_images = self.settings.getint("IGIMAGES_MAX_IMAGES_PER_POST")
        in_job = is_job(self.settings)
        source, found = None, None
        try:
            if not in_job or opts.spargs.get("posts"):
                spec = InputSpec.from_args(opts.spargs)
                if opts.spargs.get("plan", "0").lower() not in ("", "0", "no", "false"):
                    echo(make_plan(PostSource(spec), self.settings).report())
                    return
                # The crawl's own reading is opened first: standard input can
                # only be read once, so it is not surveyed (progress then has no total).
                source = PostSource(spec)
                found = None if spec.reads_stdin else survey(spec, max_images)
        except PostsFileError as exc:
            echo(f"error: {exc}", sys.stderr)
            self.exitcode = EXIT_BAD_INPUT
            return
        if in_job:
            try:
                _join_job(self.settings, source, max_images)
            except JobError as exc:
                echo(f"error: {exc}", sys.stderr)
                self.exitcode = EXIT_STOPPED
                return
            source, found = None, None  # the worker takes its posts from the job
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
        elif stats.get(UNWRITTEN):
            self.exitcode = EXIT_NOT_WRITTEN
        elif stats.get("igimages/images/failed"):
            self.exitcode = EXIT_SOME_FAILED
        if self.settings.getbool("IGIMAGES_REPORT"):
            self._report(stats)

    def _report(self, stats: dict[str, object]) -> None:
        """The report of the store, once the feeds it reads are complete on disk.

        Of a job's workers, the one that wrote the job's feeds writes it.
        """
        if stats.get("finish_reason") != "finished":
            echo(
                "report not written: the crawl did not finish (scrapy report makes it)", sys.stderr
            )
        elif is_job(self.settings) and not stats.get(JOB_FEEDS_WRITTEN):
            return
        elif write_report(self.settings) != 0:
            self.exitcode = EXIT_NOT_WRITTEN


def _join_job(settings: BaseSettings, source: PostSource | None, max_images: int) -> None:
    """Check the job's Redis and store, and queue ``source``'s posts that are new to it."""
    # Redis's client is imported by a job's crawls only.
    from igimages.job.connection import REDIS_ERRORS, blocking_client, unavailable
    from igimages.job.feeder import feed, join_job

    keys = JobKeys(job_name(settings))
    client = blocking_client(settings)
    try:
        join_job(client, keys, store_identity(settings["IMAGES_STORE"]))
        if source is not None:
            fed = feed(client, keys, source, max_images)
            logger.info(
                "Job %r: queued %d new posts (%d images) from %s%s; %d were in the job already",
                keys.name,
                fed.posts,
                fed.images,
                source.name,
                f", and {fed.retried} posts again to retry their failures" if fed.retried else "",
                fed.known,
            )
    except REDIS_ERRORS as exc:
        raise unavailable(settings, exc) from None
    finally:
        client.close()


def _say_why_it_could_not_start(task: asyncio.Task[None]) -> None:
    """A store that cannot be used (bad scheme, no bucket, denied, in use): one line, not a
    traceback. Anything else that stops a crawl from starting is said too, never silently."""
    if task.cancelled() or (error := task.exception()) is None:
        return
    if isinstance(error, StoreError):
        echo(f"error: {error}", sys.stderr)
        return
    logger.error("The crawl could not start", exc_info=error)
    reason = f"{type(error).__name__}: {error_text(error)}"
    echo(f"error: the crawl could not start: {reason}", sys.stderr)
