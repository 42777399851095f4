"""The crawl's core, in this process: the gate, retries, the keeper and the catalog.

Each test runs a real crawl (engine, download handler, gate, retry and
pipeline as configured in ``igimages.settings``) inside the test process, on
an asyncio loop without Twisted's reactor, against the loopback image server:
no process to start, so the whole file runs in seconds. What is asserted is
what the server saw, the files in the store and the feeds. The end-to-end
tests (``test_crawl`` and the others) run ``scrapy crawl`` itself.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pytest
from scrapy.crawler import AsyncCrawlerRunner, Crawler
from scrapy.settings import Settings
from scrapy.utils.misc import load_object
from scrapy.utils.test import get_crawler

from igimages.fetch.gate import DownloadGateMiddleware
from igimages.fetch.limits import HostLimits
from igimages.items import CACHED, DOWNLOADED, DUPLICATE, FAILED
from igimages.store import StoreUri
from igimages.store.catalog import LocalCatalog
from igimages.store.folder import FolderStore
from igimages.store.index import StoredImage
from tests import images
from tests.conftest import read_jsonl, sha256
from tests.imageserver import ImageServer, Route

pytestmark = pytest.mark.timeout(30)


@dataclass
class Crawled:
    """A finished in-process crawl: its stats, and what it left in the store."""

    crawler: Crawler
    store: Path

    @property
    def stats(self) -> dict[str, Any]:
        assert self.crawler.stats is not None
        return self.crawler.stats.get_stats()

    @property
    def images(self) -> dict[str, list[dict[str, Any]]]:
        return {line["id"]: line["images"] for line in read_jsonl(self.store / "manifest.jsonl")}

    @property
    def failures(self) -> list[dict[str, Any]]:
        return read_jsonl(self.store / "failures.jsonl")

    def stored_bytes(self, image: dict[str, Any]) -> bytes:
        return (self.store / image["path"]).read_bytes()


def project_settings(store: Path, **values: Any) -> Settings:
    settings = Settings()
    settings.setmodule("igimages.settings", priority="project")
    settings.setdict(
        {"TWISTED_REACTOR_ENABLED": False, "IMAGES_STORE": str(store), **values},
        priority="cmdline",
    )
    return settings


def crawl_here(posts: dict[str, list[str]], store: Path, **settings: Any) -> Crawled:
    """Crawl ``posts`` (``{post_id: [url, ...]}``) into ``store``, as ``scrapy crawl``
    would with ``-s`` for each of ``settings``, and wait for it to finish."""
    path = store.parent / f"{store.name}-posts.json"
    path.write_text(
        json.dumps(
            [
                {"id": post, "url": f"https://example.invalid/p/{post}/", "media": {"images": urls}}
                for post, urls in posts.items()
            ]
        )
    )
    return crawl_input({"posts": str(path)}, store, **settings)


def crawl_input(arguments: dict[str, str], store: Path, **settings: Any) -> Crawled:
    """Crawl the input the spider ``arguments`` (``-a``) name into ``store``, as
    ``scrapy crawl`` would, and wait for it to finish."""
    values = project_settings(store, **settings)

    async def crawl() -> Crawler:
        runner = AsyncCrawlerRunner(values)
        crawler = runner.create_crawler("post_images")
        prepared = load_object(values["IGIMAGES_POSTS"]).prepare(values, arguments)
        await runner.crawl(crawler, **arguments, **prepared)
        return crawler

    crawled = Crawled(asyncio.run(crawl()), store)
    assert crawled.stats["finish_reason"] == "finished"
    return crawled


@pytest.fixture(scope="module")
def server():
    with ImageServer() as started:
        yield started


@pytest.fixture(autouse=True)
def fresh_counters(server):
    server.reset_counters()


# --- The gate and its limits ------------------------------------------------------------


def test_the_gate_spaces_a_hosts_requests_by_its_rate_cap(server, tmp_path):
    urls = [server.add(f"/rate/{i}.jpg", images.jpeg(seed=i)) for i in range(6)]

    crawled = crawl_here({"p": urls}, tmp_path / "store", IGIMAGES_MAX_RATE_PER_HOST=10)

    times = sorted(record.time for record in server.requests)
    # Ten a second: 0.5 s from first to last, less what a socket's timing takes off
    # (at once without the cap).
    assert times[-1] - times[0] >= 0.4
    assert [image["status"] for image in crawled.images["p"]] == [DOWNLOADED] * 6


class AtMostTwo:
    """A limit of two within the chain's: a class of ``IGIMAGES_HOST_LIMITS`` as a
    third party would write one."""

    def __init__(self, within: HostLimits) -> None:
        self.within = within

    @classmethod
    def from_crawler(cls, crawler: Crawler, within: HostLimits, gate: object) -> Self:
        return cls(within)

    def limit(self, slot: str) -> float:
        return min(2, self.within.limit(slot))

    def answered(self, slot: str, sent_at: float, in_flight: int, status: int) -> None:
        self.within.answered(slot, sent_at, in_flight, status)

    def failed(self, slot: str, sent_at: float, in_flight: int, exception: Exception) -> None:
        self.within.failed(slot, sent_at, in_flight, exception)

    def refused_elsewhere(self, slot: str, in_flight: int) -> None:
        self.within.refused_elsewhere(slot, in_flight)


def test_a_limit_named_in_the_settings_is_composed_into_the_gate_and_holds(server, tmp_path):
    urls = [server.add(f"/two/{i}.jpg", Route(images.jpeg(seed=i), delay=0.15)) for i in range(6)]

    crawled = crawl_here(
        {"p": urls},
        tmp_path / "store",
        CONCURRENT_REQUESTS_PER_DOMAIN=8,
        IGIMAGES_HOST_LIMITS={f"{__name__}.AtMostTwo": 1000},
    )

    assert max(server.max_in_flight_per_host.values()) == 2  # reached, never passed
    assert [image["status"] for image in crawled.images["p"]] == [DOWNLOADED] * 6


@pytest.mark.parametrize(("adaptive", "limit"), [(True, 1), (False, 2)])
def test_the_chain_is_built_once_around_the_ceiling_leaving_out_what_is_off(
    tmp_path, adaptive, limit
):
    settings = project_settings(
        tmp_path,
        AUTOTHROTTLE_ENABLED=adaptive,
        IGIMAGES_START_CONCURRENCY=1,
        CONCURRENT_REQUESTS_PER_DOMAIN=16,
        IGIMAGES_HOST_LIMITS={f"{__name__}.AtMostTwo": 1000},
    )
    gate = DownloadGateMiddleware(get_crawler(settings_dict=settings.copy_to_dict()))

    assert gate.ceiling("host") == 16
    # The adaptive limit starts a host at IGIMAGES_START_CONCURRENCY and grows it
    # from answers; without it (NotConfigured), the chain is the ceiling within two.
    assert gate.limit("host") == limit


# --- Retries ---------------------------------------------------------------------------


def test_a_retry_waits_for_retry_after_and_a_404_is_not_retried(server, tmp_path):
    refusal = Route(b"slow down\n", 429, "text/plain", headers={"Retry-After": "1"})
    later = server.add("/retry/later.jpg", Route(images.jpeg(seed=1), first=[refusal]))
    outage = Route(b"down\n", 503, "text/plain")
    flaky = server.add("/retry/flaky.jpg", Route(images.jpeg(seed=2), first=[outage, outage]))
    gone = server.url("/retry/gone.jpg")

    crawled = crawl_here(
        {"p": [later, flaky, gone]},
        tmp_path / "store",
        RETRY_TIMES=2,
        IGIMAGES_RETRY_BACKOFF_BASE=0.3,
    )

    asked = [record for record in server.requests if record.path == "/retry/later.jpg"]
    assert [record.status for record in asked] == [429, 200]
    assert asked[1].time - asked[0].time >= 0.95  # what Retry-After asked, not at once
    tries = [record.time for record in server.requests if record.path == "/retry/flaky.jpg"]
    assert len(tries) == 3
    # Backed off: at least half of 0.3 s, then of 0.6 s (a random 50-100 % of each).
    assert tries[1] - tries[0] >= 0.14
    assert tries[2] - tries[1] >= 0.29
    assert server.hits("/retry/gone.jpg") == 1
    assert [image["status"] for image in crawled.images["p"]] == [DOWNLOADED, DOWNLOADED, FAILED]
    [failure] = crawled.failures
    assert failure | {"reason": "http_404", "http_status": 404, "attempts": 1} == failure


def test_retries_give_up_after_retry_times_with_every_attempt_counted(server, tmp_path):
    down = server.add("/retry/down.jpg", Route(b"down\n", 503, "text/plain"))

    crawled = crawl_here(
        {"p": [down]}, tmp_path / "store", RETRY_TIMES=2, IGIMAGES_RETRY_BACKOFF_BASE=0.05
    )

    assert server.hits("/retry/down.jpg") == 3
    [failure] = crawled.failures
    assert failure | {"reason": "http_503", "attempts": 3} == failure


# --- The keeper and the catalog ----------------------------------------------------------


def test_the_same_bytes_are_stored_once_and_placed_in_every_other_post(server, tmp_path):
    body = images.png(seed=7)
    urls = [server.add(f"/same/{i}.png", body) for i in range(4)]
    posts = {f"post{i}": [url] for i, url in enumerate(urls)}

    crawled = crawl_here(posts, tmp_path / "store")

    results = [crawled.images[post][0] for post in posts]
    assert sorted(image["status"] for image in results) == [DOWNLOADED] + [DUPLICATE] * 3
    [first] = [image for image in results if image["status"] == DOWNLOADED]
    for post, image in zip(posts, results, strict=True):
        assert image["path"].startswith(f"{post}/")
        assert sha256(crawled.stored_bytes(image)) == sha256(body) == image["sha256"]
        if image is not first:
            assert image["duplicate_of"] == first["path"]
    assert crawled.stats["igimages/images/duplicate"] == 3


def test_a_second_crawl_finds_everything_stored_and_asks_for_nothing(server, tmp_path):
    urls = [server.add(f"/again/{i}.jpg", images.jpeg(seed=20 + i)) for i in range(3)]
    crawl_here({"p": urls}, tmp_path / "store")
    server.reset_counters()

    again = crawl_here({"p": urls, "q": urls[:1]}, tmp_path / "store")

    assert server.requests == []
    assert [image["status"] for image in again.images["p"]] == [CACHED] * 3
    assert [image["status"] for image in again.images["q"]] == [DUPLICATE]


def stored(sha: str, post: str) -> StoredImage:
    return StoredImage(post, 1, "k" + post, f"{post}/1_k.jpg", sha, 3, 16, 16, "JPEG")


def test_a_claim_on_bytes_being_saved_waits_and_takes_over_if_they_are_abandoned(tmp_path):
    store = FolderStore(StoreUri.parse(str(tmp_path)))
    catalog = LocalCatalog(store.index)
    first, second, third = stored("ab" * 32, "a"), stored("ab" * 32, "b"), stored("ab" * 32, "c")

    async def claims() -> list[Any]:
        assert await catalog.claim(first) is None  # first to claim: its to save
        waiting = asyncio.ensure_future(catalog.claim(second))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the same bytes are being saved
        await catalog.abandon(first)  # ...and could not be
        taken_over = await waiting
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "1_k.jpg").write_bytes(b"abc")  # as its save would leave it
        store.index.record(second)
        await catalog.stored(second)
        return [taken_over, await catalog.claim(third)]

    taken_over, placed = asyncio.run(claims())
    assert taken_over is None  # the waiting claim became the saver
    assert placed == second  # the next one is placed from what was stored


def test_the_perceptual_hash_runs_on_the_keepers_own_threads_off_the_loop(tmp_path):
    """A decode must not hold the crawl's loop, nor crowd asyncio's shared pool."""
    import threading

    from igimages.store.keeper import ImageKeeper, Place
    from igimages.validation import inspect_image

    store = FolderStore(StoreUri.parse(str(tmp_path)))
    threads: list[str] = []

    def image_hash(body: bytes) -> str:
        threads.append(threading.current_thread().name)
        return "0123456789abcdef"

    keeper = ImageKeeper(store, LocalCatalog(store.index), image_hash)
    body = images.jpeg(seed=41)

    async def keep() -> dict[str, Any]:
        try:
            return await keeper.keep(Place("p", 1, "k"), body, inspect_image(body), "http://x/")
        finally:
            await keeper.close()

    kept = asyncio.run(keep())

    assert [name.partition("_")[0] for name in threads] == ["igimages-hash"]
    assert kept["phash"] == "0123456789abcdef"
    assert sha256((tmp_path / kept["path"]).read_bytes()) == sha256(body)


def test_a_bucket_store_uploads_and_copies_on_the_loop_without_a_reactor(server, s3_bucket):
    # The bucket's calls are awaitables of the running asyncio loop: no
    # reactor, no thread pool is needed to store into it.
    body = images.jpeg(seed=31)
    urls = [server.add(f"/bucket/{i}.jpg", body) for i in range(3)]
    settings = dict(setting.split("=", 1) for setting in s3_bucket.settings)

    crawled = crawl_here({f"p{i}": [url] for i, url in enumerate(urls)}, s3_bucket.state_dir, **{
        **settings, "IMAGES_STORE": s3_bucket.uri,
    })  # fmt: skip

    objects = s3_bucket.objects()
    manifest = {
        line["id"]: line["images"]
        for line in map(json.loads, objects["manifest.jsonl"].decode().splitlines())
    }
    assert (
        sorted(image[0]["status"] for image in manifest.values()) == [DOWNLOADED] + [DUPLICATE] * 2
    )
    for images_of_post in manifest.values():
        assert sha256(objects[images_of_post[0]["path"]]) == sha256(body)
    calls = [c for c in s3_bucket.calls() if c.key.endswith(".jpg")]
    assert len([c for c in calls if c.is_upload]) == 1
    assert len([c for c in calls if c.is_copy]) == 2
    assert crawled.stats["igimages/images/duplicate"] == 2
