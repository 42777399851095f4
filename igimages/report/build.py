"""Put the report together: read the manifests, make thumbnails, write the pages.

A first pass counts the posts and groups near-copies across them
(``igimages.report.reposts``). Then posts are read one page at a time and
each page is written as soon as its thumbnails are made, a few pages behind
the thumbnail workers, so memory does not grow with the store (but for the
small index that finds a post by id, and the content hashes of the first
pass) and every core is busy. The first page, with the overview of the whole
store, is written last. Everything is written into a folder of its own
first and moved into ``report/`` at the end: a failure leaves the previous
report whole, and pages of an earlier, longer report are removed.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from itertools import islice
from pathlib import Path
from typing import Any, Self

from igimages.atomic import is_running, publish
from igimages.items import FAILED
from igimages.report.pages import Overview, PageInfo, json_for_html, page_name, render_page
from igimages.report.reading import (
    ReportError,
    ReportPost,
    read_posts,
    read_summaries,
    run_files,
)
from igimages.report.reposts import Reposts
from igimages.report.thumbs import Batch, Job, ThumbnailMaker
from igimages.store import FOLDER, StoreUri
from igimages.store.locking import exclusively

REPORT_DIR = "report"
STATIC = ("report.css", "report.js")
FIND_DIR = "find"
IDS_PER_FIND_FILE = 2000  # a find/<bucket>.js file is then about 60 KB
LOOKAHEAD = 3  # pages whose thumbnails are being made while one is written


@dataclass(frozen=True, slots=True)
class ReportOptions:
    store: Path
    page_size: int = 200
    workers: int = 0  # thumbnail processes; 0: one per core

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        """The options from Scrapy settings; a bucket store is refused in one line."""
        uri = StoreUri.parse(str(settings.get("IMAGES_STORE") or "images"))
        if uri.scheme != FOLDER:
            raise ReportError(
                f"IMAGES_STORE={uri}: the report is made of local stores only "
                "(a folder or file://PATH); copy the bucket to a folder first"
            )
        page_size = settings.getint("IGIMAGES_REPORT_PAGE_SIZE")
        if page_size < 1:
            raise ReportError(f"IGIMAGES_REPORT_PAGE_SIZE={page_size}: give 1 or more posts a page")
        workers = max(0, settings.getint("IGIMAGES_REPORT_WORKERS"))
        return cls(Path(uri.location).resolve(), page_size, workers)


@dataclass
class ReportResult:
    index: Path
    posts: int
    images: int
    pages: int
    thumbnails_made: int
    thumbnails_failed: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"report of {self.posts:,} posts, {self.images:,} images on {self.pages:,} "
            f"page{'s' if self.pages != 1 else ''}: {self.thumbnails_made:,} thumbnails made"
            + (f" ({self.thumbnails_failed:,} could not be)" if self.thumbnails_failed else "")
            + f", in {self.seconds:.1f} s; open {self.index.as_uri()}"
        )


def build_report(options: ReportOptions) -> ReportResult:
    started = time.perf_counter()
    store = options.store
    feeds = run_files(store)
    summaries, warnings = read_summaries(feeds.summaries)
    reposts = Reposts.read(read_posts(feeds.manifests), options.page_size)
    total = reposts.posts
    pages = max(1, -(-total // options.page_size))
    buckets = -(-total // IDS_PER_FIND_FILE) if pages > 1 else 0
    report_dir = store / REPORT_DIR
    staging = _staging_dir(report_dir)
    thumbs = ThumbnailMaker(store, options.workers)
    try:
        writer = _PageWriter(staging, thumbs, reposts, store.name, pages, buckets)
        overview = Overview(summaries=summaries)
        find: list[list[str]] = [[] for _ in range(buckets)]
        window: deque[tuple[int, list[ReportPost], Batch]] = deque()
        first: tuple[list[ReportPost], Batch] | None = None
        for number, chunk in enumerate(_chunks(read_posts(feeds.manifests), options.page_size), 1):
            for post in chunk:
                overview.add(post, number)
                if buckets:
                    find[bucket_of(post.id, buckets)].append(json_for_html([post.id, number]))
            batch = thumbs.submit(_thumbnail_jobs(chunk))
            if number == 1:
                first = (chunk, batch)
                continue
            window.append((number, chunk, batch))
            while len(window) > LOOKAHEAD:
                writer.write(*window.popleft())
        while window:
            writer.write(*window.popleft())
        if overview.posts != total:  # the manifest changed as it was read
            raise ReportError(
                f"{feeds.manifests[0]}: changed while the report was made; run it again"
            )
        for bucket, entries in enumerate(find):
            writer.put(
                f"{FIND_DIR}/{bucket}.js",
                f"igimagesFindIndex({bucket}, [\n" + ",\n".join(entries) + "\n]);\n",
            )
        for name in STATIC:
            writer.put(name, (files("igimages.report") / "static" / name).read_text("utf-8"))
        chunk, batch = first or ([], Batch())
        writer.write(1, chunk, batch, overview)
        with exclusively(report_dir / ".publishing"):  # two reports at once take turns
            _publish(staging, report_dir, pages, buckets)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        thumbs.close()
    return ReportResult(
        report_dir / page_name(1),
        overview.posts,
        sum(overview.images.values()),
        pages,
        thumbs.made,
        len(thumbs.failed),
        time.perf_counter() - started,
        warnings,
    )


def bucket_of(post_id: str, buckets: int) -> int:
    """Which find/<bucket>.js holds ``post_id``: FNV-1a over UTF-16 code units, as report.js."""
    data = post_id.encode("utf-16-le", "surrogatepass")
    value = 0x811C9DC5
    for index in range(0, len(data), 2):
        value = ((value ^ (data[index] | data[index + 1] << 8)) * 0x01000193) & 0xFFFFFFFF
    return value % buckets


class _PageWriter:
    def __init__(
        self,
        staging: Path,
        thumbs: ThumbnailMaker,
        reposts: Reposts,
        store_name: str,
        pages: int,
        buckets: int,
    ) -> None:
        self.staging = staging
        self.thumbs = thumbs
        self.reposts = reposts
        self.store_name = store_name
        self.pages = pages
        self.buckets = buckets
        self.generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    def write(
        self, number: int, posts: list[ReportPost], batch: Batch, overview: Overview | None = None
    ) -> None:
        self.thumbs.wait(batch)
        info = PageInfo(number, self.pages, self.store_name, self.generated, self.buckets)
        page = render_page(info, posts, self.thumbs.failed, self.reposts, overview)
        self.put(page_name(number), page)

    def put(self, name: str, text: str) -> None:
        path = self.staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.write_text(text, encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ReportError(f"cannot write {path}: {exc.strerror or exc}", 1) from None


def _chunks(posts: Iterator[ReportPost], size: int) -> Iterator[list[ReportPost]]:
    while chunk := list(islice(posts, size)):
        yield chunk


def _thumbnail_jobs(posts: Iterable[ReportPost]) -> Iterator[Job]:
    for post in posts:
        for image in post.images:
            if image.status != FAILED and image.sha256 and image.path:
                yield image.sha256, image.path


def _staging_dir(report_dir: Path) -> Path:
    """A new folder for this report's files, after removing those of dead processes."""
    try:
        report_dir.mkdir(exist_ok=True)
        for old in report_dir.glob(".staging-*"):
            pid = old.name.removeprefix(".staging-")
            if not pid.isdigit() or not is_running(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        staging = report_dir / f".staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as exc:
        raise ReportError(f"cannot write {report_dir}: {exc.strerror or exc}", 1) from None
    return staging


def _publish(staging: Path, report_dir: Path, pages: int, buckets: int) -> None:
    """Move the new files into place, the first page last; remove what no longer applies."""
    try:
        (report_dir / FIND_DIR).mkdir(exist_ok=True)
        names = sorted(
            (str(path.relative_to(staging)) for path in staging.rglob("*") if path.is_file()),
            key=lambda name: name == page_name(1),
        )
        for name in names:
            publish(staging / name, report_dir / name)
        for path in report_dir.glob("page-*.html"):
            number = path.name.removeprefix("page-").removesuffix(".html")
            if not number.isdigit() or not 2 <= int(number) <= pages:
                path.unlink()
        for path in (report_dir / FIND_DIR).glob("*.js"):
            if not path.stem.isdigit() or int(path.stem) >= buckets:
                path.unlink()
        shutil.rmtree(staging)
    except OSError as exc:
        raise ReportError(f"cannot write {report_dir}: {exc.strerror or exc}", 1) from None
