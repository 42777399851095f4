"""Where the spider's posts come from: ``IGIMAGES_POSTS``, a class of this shape.

A plain crawl's posts are its input's, read in order (``InputPosts``); a
worker of a job takes them from the job's queue (``igimages.job.posts``).
``scrapy crawl`` asks the class to ``prepare`` before the crawl starts, so
an input that cannot be read stops it in one line, with nothing written.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, Self

from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider
from scrapy.settings import BaseSettings
from scrapy.statscollectors import StatsCollector

from igimages.inputs.reader import PostsFileError
from igimages.inputs.source import InputSpec, PostSource, Skipped, Survey, survey
from igimages.items import Post

logger = logging.getLogger(__name__)


class Posts(Protocol):
    @classmethod
    def prepare(cls, settings: BaseSettings, arguments: dict[str, str]) -> dict[str, Any]:
        """Before the crawl: open what the posts come from, given the spider's
        arguments (``-a``); what to pass the spider. Raises ``PostsFileError``
        for an input that cannot be read, ``OneLineError`` for anything else."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self: ...

    def posts(self, room: Callable[[], int]) -> AsyncIterator[Post]:
        """The posts, while ``room()`` says how many more the pipeline may take."""


class InputPosts:
    """The posts of ``-a posts=PATH``; bad ones are counted and reported, not yielded."""

    def __init__(self, crawler: Crawler, source: PostSource, found: Survey | None) -> None:
        self.stats: StatsCollector = crawler.stats
        self.source = source
        self.found = found
        self.max_images = crawler.settings.getint("IGIMAGES_MAX_IMAGES_PER_POST")

    @classmethod
    def prepare(cls, settings: BaseSettings, arguments: dict[str, str]) -> dict[str, Any]:
        """Open the input and count what it holds, for the progress' total. Standard
        input can be read only once, so it is not counted (progress then has no total)."""
        spec = InputSpec.from_args(arguments)
        source = PostSource(spec)
        max_images = settings.getint("IGIMAGES_MAX_IMAGES_PER_POST")
        return {"source": source, "survey": None if spec.reads_stdin else survey(spec, max_images)}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        spider = crawler.spider
        source = getattr(spider, "source", None)
        if source is None:
            raise PostsFileError("no posts input: give -a posts=PATH")
        return cls(crawler, source, getattr(spider, "survey", None))

    async def posts(self, room: Callable[[], int]) -> AsyncIterator[Post]:
        stats = self.stats
        if self.found is not None:
            stats.set_value("igimages/posts/total", self.found.posts)
            stats.set_value("igimages/images/total", self.found.images)
        logger.info("Reading %s", self.source.describe())
        try:
            for post in self.source.entries(self.max_images):
                if isinstance(post, Skipped):
                    stats.inc_value(f"igimages/posts/{post.kind}")
                    logger.log(logging.WARNING if post.kind == "bad" else logging.DEBUG, "%s", post)
                    continue
                yield post
        except PostsFileError as exc:
            logger.error("%s", exc)
            stats.set_value("igimages/input_error", str(exc))
            raise CloseSpider("bad_input") from None
        if repeats := stats.get_value("igimages/posts/duplicate_input"):
            logger.info(
                "%d posts were in %s more than once (same id): each was processed once",
                repeats,
                self.source.name,
            )
