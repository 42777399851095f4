"""The two reference clients the crawl is measured against.

``seed``: the seed analysis's recommended design, a ThreadPoolExecutor with
12 workers, one task per post, each downloading its post's images one after
another with requests (one Session per thread, so connections are reused).
``aiohttp``: a bare asyncio client, one ClientSession, 100 requests in flight.

Both are written plainly and correctly, as fair baselines: they check the
HTTP status, keep the bytes as sent, and store ``<out>/<post id>/<n>.<ext>``
(n from 1, the extension from the URL). Like the seed, neither validates
images, resumes, or deduplicates. The exit status is 1 if any image failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 30


def target_path(out: Path, post_id: str, number: int, url: str) -> Path:
    """Where a reference client stores image ``number`` (from 1) of a post."""
    ext = urlsplit(url).path.rpartition(".")[2] or "bin"
    return out / post_id / f"{number}.{ext}"


def run_seed(posts: list[dict[str, Any]], out: Path, workers: int) -> int:
    import requests

    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    def download_post(post: dict[str, Any]) -> int:
        failed = 0
        (out / post["id"]).mkdir(parents=True, exist_ok=True)
        for number, url in enumerate(post["media"]["images"], start=1):
            try:
                response = session().get(url, timeout=TIMEOUT)
                response.raise_for_status()
                target_path(out, post["id"], number, url).write_bytes(response.content)
            except (requests.RequestException, OSError) as exc:
                print(f"failed {url}: {exc}", file=sys.stderr)
                failed += 1
        return failed

    with ThreadPoolExecutor(max_workers=workers) as executor:
        futures = [executor.submit(download_post, post) for post in posts]
        return sum(future.result() for future in as_completed(futures))


async def run_aiohttp(posts: list[dict[str, Any]], out: Path, in_flight: int) -> int:
    import aiohttp

    room = asyncio.Semaphore(in_flight)
    connector = aiohttp.TCPConnector(limit=in_flight)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def download(path: Path, url: str) -> bool:
            try:
                async with room, session.get(url) as response:
                    response.raise_for_status()
                    data = await response.read()
                path.write_bytes(data)
                return True
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                print(f"failed {url}: {exc!r}", file=sys.stderr)
                return False

        jobs = []
        for post in posts:
            (out / post["id"]).mkdir(parents=True, exist_ok=True)
            for number, url in enumerate(post["media"]["images"], start=1):
                jobs.append(download(target_path(out, post["id"], number, url), url))
        results = await asyncio.gather(*jobs)
    return results.count(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("client", choices=("seed", "aiohttp"))
    parser.add_argument("--posts", required=True, type=Path, help="posts file (JSON array)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--workers", type=int, default=12, help="seed: threads")
    parser.add_argument("--in-flight", type=int, default=100, help="aiohttp: requests in flight")
    args = parser.parse_args()
    posts = json.loads(args.posts.read_text(encoding="utf-8"))
    if args.client == "seed":
        failed = run_seed(posts, args.out, args.workers)
    else:
        failed = asyncio.run(run_aiohttp(posts, args.out, args.in_flight))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
