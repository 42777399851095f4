"""``scrapy job``: see a job on many machines, write its feeds again, or forget it.

    scrapy job status -s REDIS_URL=redis://HOST:6379/0 [-s IGIMAGES_JOB=NAME]
    scrapy job merge  ...   # the store's manifest, failure feed and summary, now
    scrapy job forget ...   # delete the job from Redis (not its images)

The job is named as its workers name it: ``IGIMAGES_JOB``, else the store.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from scrapy.utils.defer import deferred_from_coro

from igimages.items import CACHED, DOWNLOADED, DUPLICATE
from igimages.job import is_job
from igimages.redact import echo, install

if TYPE_CHECKING:
    from igimages.job.keys import JobKeys

ACTIONS = ("status", "merge", "forget")


class Command(ScrapyCommand):
    requires_project = True
    default_settings = {"LOG_LEVEL": "WARNING"}  # noqa: RUF012

    def syntax(self) -> str:
        return "[status|merge|forget]"

    def short_desc(self) -> str:
        return "See a job on many machines (REDIS_URL), write its feeds, or forget it"

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        install(self.settings)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        action = args[0] if args else "status"
        if action not in ACTIONS or len(args) > 1:
            raise UsageError(f"give one of {', '.join(ACTIONS)}")
        if not is_job(self.settings):
            raise UsageError("name the job's Redis: -s REDIS_URL=redis://HOST:6379/0")
        # The job's modules are imported by this command's run only: Scrapy imports
        # every command module whatever the command.
        from igimages.job.connection import REDIS_ERRORS, unavailable
        from igimages.job.keys import JobKeys, job_name

        keys = JobKeys(job_name(self.settings))
        try:
            if action == "status":
                self._status(keys)
            elif action == "forget":
                self._forget(keys)
            else:
                self._merge(keys)
        except REDIS_ERRORS as exc:
            echo(f"error: {unavailable(self.settings, exc)}", sys.stderr)
            self.exitcode = 1

    def _status(self, keys: JobKeys) -> None:
        from igimages.job.connection import blocking_client, describe
        from igimages.job.queue import read_status_blocking

        client = blocking_client(self.settings)
        status = read_status_blocking(client, keys)
        store = client.hget(keys.meta, "store")
        if store is None:
            echo(f"No job {keys.name!r} on {describe(self.settings)}")
            self.exitcode = 1
            return
        counts = status.counts
        done = sum(counts.get(f"images/{s}", 0) for s in (DOWNLOADED, CACHED, DUPLICATE))
        failed = counts.get("images/failed", 0)
        lines = [
            f"job {keys.name!r}, store {store.decode()}",
            f"  posts: {counts.get('posts/done', 0)} done of {counts.get('posts/total', 0)}; "
            f"{status.queued} queued, {status.leased} with {status.workers} live workers",
            f"  images: {done} stored, {failed} failed, of {counts.get('images/total', 0)}",
        ]
        reasons = {k[7:]: v for k, v in counts.items() if k.startswith("failed/")}
        if any(reasons.values()):
            lines.append(
                "  failed by reason: "
                + ", ".join(f"{name} {n}" for name, n in sorted(reasons.items()) if n)
            )
        lines.append("  finished" if status.finished else "  running")
        echo("\n".join(lines))

    def _forget(self, keys: JobKeys) -> None:
        from igimages.job.connection import blocking_client
        from igimages.job.queue import read_status_blocking

        client = blocking_client(self.settings)
        status = read_status_blocking(client, keys)
        if status.workers or status.feeders:
            echo(f"error: job {keys.name!r} has live workers; stop them first", sys.stderr)
            self.exitcode = 1
            return
        pattern = keys.prefix.replace("[", "\\[").replace("*", "\\*").replace("?", "\\?")
        names = list(client.scan_iter(match=f"{pattern}*", count=1000))
        for start in range(0, len(names), 1000):
            client.delete(*names[start : start + 1000])
        echo(f"Forgot job {keys.name!r}: {len(names)} keys deleted; the store is untouched")

    def _merge(self, keys: JobKeys) -> None:
        """The job's feeds, through the feed storages: that needs Scrapy's reactor."""
        from igimages.job.connection import REDIS_ERRORS, async_client
        from igimages.job.results import job_feeds, write_job_feeds

        assert self.crawler_process is not None
        crawler = self.crawler_process.create_crawler("post_images")
        from twisted.internet import reactor

        outcome: dict[str, Any] = {}

        async def merge() -> Any:
            client = async_client(self.settings)
            try:
                return await write_job_feeds(client, keys, crawler, job_feeds(crawler))
            finally:
                await client.aclose()

        def start() -> None:
            deferred = deferred_from_coro(merge())
            deferred.addCallbacks(
                lambda written: outcome.update(written=written),
                lambda failure: outcome.update(error=failure.value),
            )
            deferred.addBoth(lambda _: reactor.stop())

        reactor.callWhenRunning(start)
        reactor.run(installSignalHandlers=False)
        if (error := outcome.get("error")) is not None:
            if isinstance(error, REDIS_ERRORS):
                raise error
            echo(f"error: cannot write the job's feeds: {error}", sys.stderr)
            self.exitcode = 1
            return
        written = outcome["written"]
        echo(
            f"Job {keys.name!r}: {written.posts} posts ({written.failed_posts} with failed "
            f"images, {written.unfinished} not finished yet); wrote {', '.join(written.uris)}"
        )
