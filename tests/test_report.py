"""``scrapy report``: a store made by a real crawl, its report opened in headless Chromium."""

from __future__ import annotations

import io
import itertools
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from igimages.report.reading import read_posts
from igimages.report.reposts import Reposts
from igimages.similar import similar_groups
from tests import images
from tests.conftest import PROJECT_ROOT, CrawlResult, crawl_command, crawl_env
from tests.imageserver import ImageServer, Route

EXIT_SOME_FAILED = 3
XSS_ID = "<img src=x onerror=alert(1)>"
XSS_URL = 'https://example.invalid/p/"><img src=x onerror=alert(2)>'
ODD_ID = "пост-ü-😀"  # outside the BMP: two UTF-16 code units in the page's script
PAGE_SIZE = 4


def report_command(store: Path, *settings: str) -> list[str]:
    command = [sys.executable, "-m", "scrapy", "report", "-s", f"IMAGES_STORE={store}"]
    for setting in settings:
        command += ["-s", setting]
    return command


def run_report(store: Path, *settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        report_command(store, *settings),
        cwd=PROJECT_ROOT,
        env=crawl_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def run_crawl(posts: Path, store: Path, *settings: str) -> CrawlResult:
    completed = subprocess.run(
        crawl_command(posts, store, *settings),
        cwd=PROJECT_ROOT,
        env=crawl_env(),
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    return CrawlResult(completed.returncode, completed.stderr, store, completed.stdout)


def seed_posts(posts: dict[str, list[str]], urls: dict[str, str] | None = None) -> list[Any]:
    return [
        {
            "id": post_id,
            "url": (urls or {}).get(post_id, f"https://example.invalid/p/{post_id}/"),
            "media": {"images": image_urls},
        }
        for post_id, image_urls in posts.items()
    ]


@dataclass
class Built:
    """A store from a real crawl, and the report ``scrapy report`` made of it."""

    crawl: CrawlResult
    report: subprocess.CompletedProcess[str]
    server: ImageServer
    posts: list[Any]
    posts_file: Path

    @property
    def store(self) -> Path:
        return self.crawl.store

    @property
    def pages(self) -> list[Path]:
        folder = self.store / "report"
        extra = sorted(folder.glob("page-*.html"), key=lambda p: int(p.stem.partition("-")[2]))
        return [folder / "index.html", *extra]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Iterator[Built]:
    """Eleven posts: a carousel, failures (404, a login page), duplicates, crafted ids."""
    tmp = tmp_path_factory.mktemp("report")
    with ImageServer() as server:
        carousel = [
            server.add("/c1.jpg", images.jpeg(1200, 900, seed=1)),  # draft mode's case
            server.add("/c2.png", images.png(seed=2, mode="RGBA")),
            server.add("/c3.webp", images.webp(seed=3)),
        ]
        copy = server.add("/copy-of-c1.jpg", images.jpeg(1200, 900, seed=1))
        login = server.add("/login.jpg", Route(images.html_page(), content_type="text/html"))
        gone = server.url("/gone.jpg")
        posts = {
            "carousel": carousel,
            "losses": [server.add("/l1.jpg", images.jpeg(seed=4)), gone, login],
            "copy": [copy, server.add("/own.gif", images.gif(seed=5))],
            XSS_ID: [server.add("/x.jpg", images.jpeg(seed=6))],
            "crafted-url": [server.add("/y.png", images.png(seed=7))],
            ODD_ID: [server.add("/z.jpg", images.jpeg(seed=8))],
            "empty": [],
        }
        # Slow enough for the timeline to have points between the start and the end.
        posts |= {
            f"plain{n}": [server.add(f"/p{n}.jpg", Route(images.jpeg(seed=10 + n), delay=0.2))]
            for n in range(4)
        }
        urls = {XSS_ID: "javascript:alert(3)", "crafted-url": XSS_URL}
        records = seed_posts(posts, urls)
        posts_file = tmp / "posts.json"
        posts_file.write_text(json.dumps(records))
        crawl = run_crawl(posts_file, tmp / "images", "CONCURRENT_REQUESTS=1")
        assert crawl.returncode == EXIT_SOME_FAILED, crawl.stderr
        report = run_report(crawl.store, f"IGIMAGES_REPORT_PAGE_SIZE={PAGE_SIZE}")
        assert report.returncode == 0, report.stderr
        yield Built(crawl, report, server, records, posts_file)


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the session, offline, its console log kept."""
    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    profile = tempfile.mkdtemp(prefix="igimages-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: webdriver.Chrome, page: Path) -> None:
    driver.get(page.as_uri())
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def severe_logs(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def post_ids(driver: webdriver.Chrome, visible_only: bool = False) -> list[str]:
    script = (
        "return Array.from(document.querySelectorAll('article.post'))"
        ".filter(p => !arguments[0] || !p.hidden).map(p => p.dataset.id)"
    )
    return driver.execute_script(script, visible_only)


def page_of(driver: webdriver.Chrome, built: Built, post_id: str) -> Path:
    for page in built.pages:
        open_page(driver, page)
        if post_id in post_ids(driver):
            return page
    raise AssertionError(f"post {post_id!r} is on no page")


def test_every_post_is_on_a_page_and_every_thumbnail_loads(built, browser):
    manifest = built.crawl.manifest
    assert len(built.pages) == 3  # 11 posts, 4 a page
    assert "report of 11 posts, 15 images on 3 pages" in built.report.stdout
    severe_logs(browser)  # forget what came before
    seen: list[str] = []
    for page in built.pages:
        open_page(browser, page)
        seen += post_ids(browser)
        # Thumbnails load lazily: bring each into view, then wait for all.
        browser.execute_script(
            "for (const img of document.images) img.scrollIntoView({block: 'center'})"
        )
        WebDriverWait(browser, 10).until(
            lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)")
        )
        widths = browser.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])"
        )
        expected = sum(
            1
            for post_id in post_ids(browser)
            for image in manifest[post_id]["images"]
            if image["status"] != "failed"
        )
        assert len(widths) == expected
        assert all(width > 0 for _, width in widths), widths
        assert severe_logs(browser) == [], page.name
    assert sorted(seen) == sorted(manifest)  # each post once, on some page


def test_a_contact_sheet_shows_the_post_in_order_with_failures_and_duplicates(built, browser):
    open_page(browser, page_of(browser, built, "losses"))
    post = browser.find_element(By.CSS_SELECTOR, 'article.post[data-id="losses"]')
    tiles = post.find_elements(By.CSS_SELECTOR, "li.tile")
    assert [t.get_attribute("data-status") for t in tiles] == ["downloaded", "failed", "failed"]
    assert [t.find_element(By.CSS_SELECTOR, ".position").text for t in tiles] == ["#1", "#2", "#3"]
    assert "http_404" in tiles[1].text
    assert "deleted" in tiles[1].text
    assert "not_image" in tiles[2].text
    assert "login wall" in tiles[2].text
    assert "64×48" in tiles[0].text  # noqa: RUF001
    link = tiles[0].find_element(By.CSS_SELECTOR, "a.frame").get_attribute("href")
    assert link == (built.store / built.crawl.image("losses", 1)["path"]).as_uri()
    heading = post.find_element(By.CSS_SELECTOR, "a.post-id")
    assert heading.get_attribute("href") == "https://example.invalid/p/losses/"

    open_page(browser, page_of(browser, built, "copy"))
    tile = browser.find_element(By.CSS_SELECTOR, 'article.post[data-id="copy"] li.tile')
    assert tile.get_attribute("data-status") == "duplicate"
    shared = tile.find_element(By.CSS_SELECTOR, ".caption a")
    original = built.crawl.image("copy", 1)["duplicate_of"]
    assert shared.text == original
    assert shared.get_attribute("href") == (built.store / original).as_uri()


def test_filters_by_status_and_reason_change_what_is_shown(built, browser):
    page = page_of(browser, built, "losses")
    everyone = post_ids(browser, visible_only=True)
    assert len(everyone) >= 2

    browser.find_element(By.CSS_SELECTOR, 'button[data-status="failed"]').click()
    assert post_ids(browser, visible_only=True) == ["losses"]
    dimmed = browser.find_elements(By.CSS_SELECTOR, 'article.post[data-id="losses"] li.tile.dim')
    assert [t.get_attribute("data-status") for t in dimmed] == ["downloaded"]
    assert browser.find_element(By.ID, "shown").text == f"1 of {len(everyone)} posts on this page"

    Select(browser.find_element(By.ID, "reason")).select_by_value("http_404")
    lit = browser.find_elements(By.CSS_SELECTOR, "article.post:not([hidden]) li.tile:not(.dim)")
    assert [t.get_attribute("data-reason") for t in lit] == ["http_404"]
    # The filter goes along to the other pages.
    other = browser.find_element(By.CSS_SELECTOR, "nav.pages a[data-page]")
    assert other.get_attribute("href").endswith("#status=failed&reason=http_404")

    browser.find_element(By.CSS_SELECTOR, 'button[data-status="downloaded"]').click()
    shown = post_ids(browser, visible_only=True)
    assert "losses" in shown
    assert "empty" not in shown
    browser.find_element(By.CSS_SELECTOR, 'button[data-status="all"]').click()
    assert post_ids(browser, visible_only=True) == everyone
    # Opened with a filter in its address, a page applies it.
    open_page(browser, page)
    browser.get(page.as_uri() + "#status=failed")
    browser.refresh()
    assert post_ids(browser, visible_only=True) == ["losses"]
    assert severe_logs(browser) == []


@pytest.mark.parametrize("wanted", ["plain3", ODD_ID, XSS_ID])
def test_a_post_is_found_by_id_from_any_page(built, browser, wanted):
    target = page_of(browser, built, wanted)
    start = built.pages[-1] if target == built.pages[0] else built.pages[0]
    open_page(browser, start)
    box = browser.find_element(By.ID, "find-id")
    box.send_keys(wanted, Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda d: d.current_url.startswith(target.as_uri()))
    found = WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "article.post.found")
    )
    assert [f.get_attribute("data-id") for f in found] == [wanted]

    box = browser.find_element(By.ID, "find-id")
    box.clear()
    box.send_keys("no-such-post", Keys.ENTER)
    message = browser.find_element(By.ID, "find-message")
    WebDriverWait(browser, 10).until(lambda d: message.text == "no post with this id")
    assert severe_logs(browser) == []


def test_a_post_id_or_url_written_as_html_is_shown_as_text(built, browser):
    open_page(browser, page_of(browser, built, XSS_ID))
    posts = browser.find_elements(By.CSS_SELECTOR, "article.post")
    post = next(p for p in posts if p.get_attribute("data-id") == XSS_ID)
    heading = post.find_element(By.CSS_SELECTOR, ".post-id")
    assert heading.get_attribute("textContent") == XSS_ID
    assert heading.tag_name == "span"  # javascript: is never made a link
    assert browser.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018

    open_page(browser, page_of(browser, built, "crafted-url"))
    link = browser.find_element(By.CSS_SELECTOR, 'article.post[data-id="crafted-url"] a.post-id')
    assert link.get_attribute("href") == XSS_URL.replace('"', "%22").replace("<", "%3C").replace(
        ">", "%3E"
    ).replace(" ", "%20")
    assert browser.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert severe_logs(browser) == []
    page_source = "".join(p.read_text() for p in built.pages)
    assert XSS_ID not in page_source  # escaped everywhere, also in the search index
    assert not any(XSS_ID in p.read_text() for p in (built.store / "report").rglob("*.js"))


def test_the_run_at_a_glance_gives_counts_reasons_and_charts(built, browser):
    open_page(browser, built.pages[0])
    figures = {
        f.find_element(By.CSS_SELECTOR, ".label").text: f.find_element(
            By.CSS_SELECTOR, ".value"
        ).text
        for f in browser.find_elements(By.CSS_SELECTOR, ".figure")
    }
    summary = built.crawl.summary
    assert figures["posts"] == "11"
    assert figures["failed"] == "2"
    assert figures["duplicate"] == str(summary["images/duplicate"])
    assert figures["downloaded"] == str(summary["images/downloaded"])
    rows = browser.find_elements(By.CSS_SELECTOR, "table.reasons tbody tr")
    reasons = {r.find_element(By.CSS_SELECTOR, "code").text: r.text for r in rows}
    assert set(reasons) == {"http_404", "not_image"}
    assert "deleted" in reasons["http_404"]
    assert "login wall" in reasons["not_image"]
    titles = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "svg.chart .chart-title")]
    assert titles == ["Images per second", "Failures per second", "Downloads in flight"]
    legends = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "svg.chart .legend")]
    assert "busiest host's limit" in legends
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline.limit")


def test_the_summary_has_the_run_over_time(built):
    summary = built.crawl.summary
    timeline = summary["timeline"]
    columns = timeline["columns"]
    assert columns == [
        "seconds",
        "downloaded",
        "cached",
        "duplicate",
        "failed",
        "in_flight",
        "host_limit",
    ]
    first, last = (
        dict(zip(columns, p, strict=True)) for p in (timeline["points"][0], timeline["points"][-1])
    )
    assert first["seconds"] < last["seconds"] <= summary["elapsed_seconds"] + 0.5
    for status in ("downloaded", "cached", "duplicate", "failed"):
        assert last[status] == summary.get(f"images/{status}", 0)
    assert first["downloaded"] == 0


def test_thumbnails_are_made_once_per_content_and_not_again(built):
    manifest = built.crawl.manifest
    stored = {
        image["sha256"]
        for post in manifest.values()
        for image in post["images"]
        if image["status"] != "failed"
    }
    thumbs = sorted((built.store / ".igimages" / "thumbs").rglob("*.jpg"))
    assert sorted(t.stem for t in thumbs) == sorted(stored)
    assert f"{len(stored)} thumbnails made" in built.report.stdout
    for thumb in thumbs:
        with Image.open(thumb) as image:
            assert image.format == "JPEG"
            assert max(image.size) <= 256
    big_sha = built.crawl.image("carousel", 1)["sha256"]
    with Image.open(built.store / ".igimages" / "thumbs" / big_sha[:2] / f"{big_sha}.jpg") as big:
        assert big.size == (256, 192)  # 1200x900, longest side 256
    before = {t: t.stat().st_mtime_ns for t in thumbs}

    again = run_report(built.store, f"IGIMAGES_REPORT_PAGE_SIZE={PAGE_SIZE}")

    assert again.returncode == 0, again.stderr
    assert "0 thumbnails made" in again.stdout
    assert {t: t.stat().st_mtime_ns for t in thumbs} == before


def test_a_grown_store_gets_thumbnails_of_its_new_images_only(built, tmp_path):
    store = tmp_path / "images"
    shutil.copytree(built.store, store)
    grown = [
        *built.posts,
        *seed_posts({"new": [built.server.add("/new.jpg", images.jpeg(seed=99))]}),
    ]
    posts = tmp_path / "grown.json"
    posts.write_text(json.dumps(grown))
    assert run_crawl(posts, store).returncode == EXIT_SOME_FAILED
    # One page now: the earlier pages 2 and 3 must go.
    report = run_report(store, "IGIMAGES_REPORT_PAGE_SIZE=50")

    assert report.returncode == 0, report.stderr
    assert "report of 12 posts" in report.stdout
    assert "1 thumbnails made" in report.stdout
    assert sorted(p.name for p in (store / "report").glob("*.html")) == ["index.html"]
    assert list((store / "report" / "find").iterdir()) == []
    assert not list((store / "report").glob(".staging-*"))


def test_a_crawl_asked_for_it_writes_the_report_and_keeps_its_exit_status(tmp_path):
    with ImageServer() as server:
        posts = tmp_path / "posts.json"
        good = server.add("/a.jpg", images.jpeg(seed=1))
        posts.write_text(json.dumps(seed_posts({"a": [good, server.url("/gone.jpg")]})))

        result = run_crawl(posts, tmp_path / "images", "IGIMAGES_REPORT=True")

    assert result.returncode == EXIT_SOME_FAILED, result.stderr
    assert "report of 1 posts, 2 images on 1 page: 1 thumbnails made" in result.stdout
    page = (tmp_path / "images" / "report" / "index.html").read_text()
    assert 'data-id="a"' in page
    assert "http_404" in page


def test_a_bucket_store_is_refused_before_the_crawl(tmp_path):
    posts = tmp_path / "posts.json"
    posts.write_text(json.dumps(seed_posts({"a": ["http://127.0.0.1:9/a.jpg"]})))

    result = run_crawl(posts, "s3://bucket/prefix/", "IGIMAGES_REPORT=True")  # type: ignore[arg-type]
    report = run_report("s3://bucket/prefix/")  # type: ignore[arg-type]

    assert result.returncode == 1
    assert "local stores only" in result.stderr
    assert "Spider opened" not in result.stderr
    assert report.returncode == 2
    assert report.stderr.strip().count("\n") == 0
    assert "local stores only" in report.stderr


def test_a_missing_or_malformed_manifest_is_one_line_naming_the_place(built, tmp_path):
    missing = run_report(tmp_path / "nothing-here")
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1
    assert "no such folder" in missing.stderr

    store = tmp_path / "images"
    store.mkdir()
    empty = run_report(store)
    assert empty.returncode == 2
    wanted = f"{store / 'manifest.jsonl'}: not found; run a crawl into {store} first"
    assert empty.stderr == f"error: report not written: {wanted}\n"

    lines = (built.store / "manifest.jsonl").read_text().splitlines()
    (store / "manifest.jsonl").write_text("\n".join([lines[0], lines[1][:40], *lines[2:]]) + "\n")
    broken = run_report(store)
    assert broken.returncode == 2
    assert broken.stderr.count("\n") == 1
    assert f"{store / 'manifest.jsonl'}, line 2, column " in broken.stderr
    assert not (store / "report" / "index.html").exists()

    (store / "manifest.jsonl").write_text('{"id": "a", "images": "not a list"}\n')
    wrong = run_report(store)
    assert wrong.returncode == 2
    assert f"{store / 'manifest.jsonl'}, line 1: not a manifest line" in wrong.stderr


def test_paths_from_the_manifest_stay_inside_the_store(tmp_path):
    store = tmp_path / "images"
    store.mkdir()
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(images.jpeg(seed=1))
    line = {
        "id": "p",
        "url": "https://example.invalid/p/",
        "images": [
            {
                "url": "http://x/1.jpg",
                "position": 1,
                "status": "downloaded",
                "path": "../outside.jpg",
                "sha256": "a" * 64,
            },
            {
                "url": "http://x/2.jpg",
                "position": 2,
                "status": "downloaded",
                "path": "p/2.jpg",
                "sha256": "../../../../tmp/evil",
            },
        ],
    }
    (store / "manifest.jsonl").write_text(json.dumps(line) + "\n")

    report = run_report(store)

    assert report.returncode == 0, report.stderr
    assert "0 thumbnails made" in report.stdout
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert all(p.parts[0] == "images" for p in written - {Path("outside.jpg")})
    page = (store / "report" / "index.html").read_text()
    assert "../outside.jpg" not in page
    assert "../../" not in page
    assert page.count("no preview") == 1  # the hash is not one
    assert page.count("no file: its path leaves the store") == 1


class _Stats(dict):
    def get_value(self, key: str, default: Any = None) -> Any:
        return self.get(key, default)

    def set_value(self, key: str, value: Any) -> None:
        self[key] = value


class _Task:
    running = True

    def start(self, interval: float, now: bool = True) -> None:
        pass

    def stop(self) -> None:
        self.running = False


def test_the_timeline_stays_bounded_and_evenly_spaced_however_long_the_run(monkeypatch):
    from igimages.outputs import timeline

    clock = [1000.0]
    monkeypatch.setattr(timeline, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(timeline, "create_looping_call", lambda call: _Task())
    stats = _Stats()
    crawler = SimpleNamespace(stats=stats, get_downloader_middleware=lambda cls: None)
    extension = timeline.RunTimeline(crawler, max_points=16)
    extension.spider_opened()
    for tick in range(1, 4001):  # 1,000 s in ticks of a quarter second
        clock[0] = 1000.0 + tick * 0.25
        stats["igimages/images/downloaded"] = tick
        extension.tick()
    clock[0] += 0.1
    extension.spider_closed()

    record = stats["igimages/timeline"]
    seconds = [point[0] for point in record["points"]]
    assert 8 <= len(seconds) <= 17
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(seconds[:-1])}
    assert gaps == {record["interval"]}  # evenly spaced, the interval doubled as it filled
    assert record["interval"] == 128  # 0.25 doubled: 16 points would have spanned 960 s
    assert seconds[0] == 0
    assert seconds[-1] == pytest.approx(1000.1)
    assert record["points"][-1][1] == 4000  # the last point is the end's counts


@pytest.fixture(scope="module")
def reposted(tmp_path_factory) -> CrawlResult:
    """A real crawl: one picture posted, then reposted twice resized and recompressed
    (WebP, a JPEG at low quality), and another picture of the same kind; two posts a page."""
    tmp = tmp_path_factory.mktemp("reposted")
    picture = images.jpeg(1080, 1350, seed=3)
    with ImageServer() as server:
        posts = {
            "original": [server.add("/original.jpg", picture)],
            "other": [server.add("/other.jpg", images.jpeg(1080, 1350, seed=4))],
            "repost": [server.add("/repost.webp", recompressed(picture, "WEBP", 0.6, 50))],
            "repost2": [server.add("/repost2.jpg", recompressed(picture, "JPEG", 0.75, 40))],
        }
        posts_file = tmp / "posts.json"
        posts_file.write_text(json.dumps(seed_posts(posts)))
        crawl = run_crawl(posts_file, tmp / "images", "CONCURRENT_REQUESTS=1")  # in order
        assert crawl.returncode == 0, crawl.stderr
    assert list(crawl.manifest) == list(posts)
    report = run_report(crawl.store, "IGIMAGES_REPORT_PAGE_SIZE=2")
    assert report.returncode == 0, report.stderr
    return crawl


def recompressed(data: bytes, format: str, scale: float, quality: int) -> bytes:
    image = Image.open(io.BytesIO(data))
    out = io.BytesIO()
    image.resize((round(image.width * scale), round(image.height * scale))).save(
        out, format, quality=quality
    )
    return out.getvalue()


@pytest.mark.timeout(120)
def test_manifest_and_index_carry_each_images_perceptual_hash(reposted):
    phash = {post: reposted.image(post, 1)["phash"] for post in reposted.manifest}
    assert all(len(value) == 16 and int(value, 16) >= 0 for value in phash.values())
    assert len({reposted.image(post, 1)["sha256"] for post in phash}) == 4  # no bytes alike
    groups = similar_groups((reposted.image(post, 1)["sha256"], phash[post]) for post in phash)
    group = {post: groups[reposted.image(post, 1)["sha256"]] for post in phash}
    assert group["original"] == group["repost"] == group["repost2"] != group["other"]
    with sqlite3.connect(reposted.store / ".igimages" / "index.sqlite3") as db:
        indexed = dict(db.execute("SELECT post, phash FROM images"))
    assert indexed == phash


@pytest.mark.timeout(120)
def test_an_image_reposted_elsewhere_links_to_those_posts(reposted, browser):
    folder = reposted.store / "report"
    open_page(browser, folder / "index.html")
    tile = browser.find_element(By.CSS_SELECTOR, 'article.post[data-id="original"] li.tile')
    also = tile.find_element(By.CSS_SELECTOR, ".also-in")
    assert also.text == "also in 2 posts: repost, repost2"
    links = also.find_elements(By.TAG_NAME, "a")
    targets = [link.get_attribute("href") for link in links]
    page = (folder / "page-2.html").as_uri()
    assert targets == [f"{page}#find=repost", f"{page}#find=repost2"]
    other = browser.find_element(By.CSS_SELECTOR, 'article.post[data-id="other"]')
    assert other.find_elements(By.CSS_SELECTOR, ".also-in") == []

    links[1].click()  # to the other page
    found = WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "article.post.found")
    )
    assert browser.current_url.startswith(page)
    assert [f.get_attribute("data-id") for f in found] == ["repost2"]
    tile = browser.find_element(By.CSS_SELECTOR, 'article.post[data-id="repost2"] li.tile')
    also = tile.find_element(By.CSS_SELECTOR, ".also-in")
    assert also.text == "also in 2 posts: original, repost"

    also.find_elements(By.TAG_NAME, "a")[1].click()  # to a post of this same page
    WebDriverWait(browser, 10).until(
        lambda d: (
            [
                f.get_attribute("data-id")
                for f in d.find_elements(By.CSS_SELECTOR, "article.post.found")
            ]
            == ["repost"]
        )
    )
    also.find_elements(By.TAG_NAME, "a")[0].click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.startswith(folder.as_uri() + "/index"))
    assert severe_logs(browser) == []


def test_a_manifest_without_perceptual_hashes_still_links_posts_holding_the_same_bytes(tmp_path):
    """As a store crawled before igimages kept a ``phash`` has it: its exact copies are
    found by their ``sha256``, every other image stands alone."""
    same, other = "ab" * 32, "cd" * 32
    lines = [
        {
            "id": post,
            "url": "",
            "images": [{"position": 1, "status": status, "path": f"{post}/1.jpg", "sha256": sha}],
        }
        for post, status, sha in (
            ("a", "downloaded", same),
            ("b", "failed", same),
            ("c", "duplicate", same),
            ("d", "downloaded", other),
        )
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))

    reposts = Reposts.read(read_posts([manifest]), page_size=2)

    posts = {post.id: post for post in read_posts([manifest])}
    assert reposts.posts == 4
    assert reposts.others(posts["a"].images[0], "a") == [("c", 2)]  # post c is on page 2
    assert reposts.others(posts["c"].images[0], "c") == [("a", 1)]
    assert reposts.others(posts["d"].images[0], "d") == []
