"""How long ``scrapy report`` takes over the benchmark corpus's store, and how big it is.

Builds the store with a real crawl of the corpus (550 posts, 2,048 images,
served by ``server.py`` on 127.0.0.1, 100 ms a response), then times
``scrapy report`` from outside, as a user runs it, start-up included:
cold (every thumbnail made) and warm (none made, the pages written again),
``--rounds`` times each, and prints the medians, the report's size and its
page count. ``--keep DIR`` leaves the store there (to look at the report);
``--screenshot PNG`` takes the first page in headless Chromium at 1280x900
(docs/report.md's picture; needs selenium, chromium and chromium-driver).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import corpus
from run import DEFAULT_POSTS, PROJECT, Server, busy_seconds, child_env, ram_folder


def folder_size(path: Path) -> tuple[int, int]:
    """Bytes and files under ``path``."""
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def timed(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, the machine's CPU seconds meanwhile, and what the command printed.

    The whole machine's (user mode), since the thumbnail workers are not the
    command's own children: on a quiet machine, CPU over wall time says how
    many cores the report kept busy.
    """
    cpu = busy_seconds() or 0.0
    began = time.perf_counter()
    done = subprocess.run(
        command, cwd=PROJECT, env=child_env(), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return seconds, (busy_seconds() or 0.0) - cpu, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--posts", type=int, default=DEFAULT_POSTS)
    parser.add_argument("--images", type=int, default=2000, help="distinct images in the pool")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.1, help="the server's, per response")
    parser.add_argument("--keep", type=Path, help="build the store here and leave it")
    parser.add_argument("--screenshot", type=Path, help="the first page as a PNG, 1280x900")
    args = parser.parse_args()

    data = corpus.load(args.posts, args.images)
    work = Path(tempfile.mkdtemp(prefix="igimages-report-", dir=ram_folder()))
    store = args.keep.resolve() if args.keep else work / "images"
    if store.exists():
        shutil.rmtree(store)
    posts_file = work / "posts.json"
    server = Server(data.pool_dir, len(data.images), args.latency, 2 * args.latency)
    try:
        data.write_posts(posts_file, server.base_url)
        crawl = [sys.executable, "-m", "scrapy", "crawl", "post_images"]
        crawl += ["-a", f"posts={posts_file}", "-s", f"IMAGES_STORE={store}"]
        crawl += ["-s", "LOG_LEVEL=WARNING"]
        seconds, _, _ = timed(crawl)
    finally:
        server.stop()
    images, _ = folder_size(store)
    print(
        f"store: {len(data.posts)} posts, {data.references} images, "
        f"{images / 2**20:.0f} MiB, crawled in {seconds:.1f} s"
    )

    report = [sys.executable, "-m", "scrapy", "report", "-s", f"IMAGES_STORE={store}"]
    thumbs = store / ".igimages" / "thumbs"
    cold: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        for runs, name in ((cold, "cold"), (warm, "warm")):
            if name == "cold":
                shutil.rmtree(thumbs, ignore_errors=True)
            seconds, cpu, said = timed(report)
            runs.append((seconds, cpu))
            print(f"  {name}: {seconds:.2f} s, CPU {cpu:.2f} s  ({said.partition('; open')[0]})")
    pages, page_files = folder_size(store / "report")
    thumb_bytes, thumb_files = folder_size(thumbs)
    page_count = len(list((store / "report").glob("*.html")))
    print(
        f"scrapy report, medians of {args.rounds}: cold {_median(cold)} (every thumbnail "
        f"made), warm {_median(warm)} (none made)\n"
        f"report/: {page_count} pages, {page_files} files, {pages / 2**20:.2f} MiB; "
        f"thumbnails: {thumb_files} files, {thumb_bytes / 2**20:.1f} MiB"
    )
    if args.screenshot:
        screenshot(store / "report" / "index.html", args.screenshot.resolve())
    shutil.rmtree(work, ignore_errors=True)


def screenshot(page: Path, png: Path) -> None:
    """The page as a reader first sees it, in headless Chromium, offline."""
    from selenium import webdriver  # only for this option
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="igimages-chromium-")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        "--window-size=1280,900",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(page.as_uri())
        time.sleep(1)  # the thumbnails in view
        png.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(png))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"screenshot: {png}")


def _median(runs: list[tuple[float, float]]) -> str:
    wall = statistics.median(seconds for seconds, _ in runs)
    cpu = statistics.median(cpu for _, cpu in runs)
    return f"{wall:.2f} s wall, {cpu:.2f} s CPU ({cpu / wall:.2f} cores busy)"


if __name__ == "__main__":
    main()
