"""``scrapy crawl`` with exit statuses a script can act on.

0: every image is stored; 1: the crawl could not run or was stopped;
2: the posts file cannot be read (nothing was written); 3: the crawl
finished but some images failed (listed in the failure feed).
"""

from __future__ import annotations

import argparse
import sys

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

from igimages.posts import PostsFileError, survey

EXIT_STOPPED, EXIT_BAD_INPUT, EXIT_SOME_FAILED = 1, 2, 3


class Command(ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider: scrapy crawl post_images -a posts=PATH")
        posts = opts.spargs.get("posts")
        try:
            if not posts:
                raise PostsFileError("no posts file given: use -a posts=PATH")
            found = survey(posts, self.settings.getint("IGIMAGES_MAX_IMAGES_PER_POST"))
        except PostsFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exitcode = EXIT_BAD_INPUT
            return
        assert self.crawler_process is not None
        crawler = self._create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs, survey=found)
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
