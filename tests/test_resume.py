"""Interrupted jobs: killed, stopped or signalled at any moment, then resumed."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from igimages.keys import image_key
from tests import images
from tests.conftest import sha256, start_crawl, wait_until
from tests.imageserver import ImageServer, Route

POSTS, PER_POST = 50, 2


@pytest.fixture
def job(server: ImageServer, write_posts, tmp_path: Path):
    """A job of 100 slow images, and what each stored file should hold."""
    bodies: dict[str, bytes] = {}
    posts = {}
    for n in range(POSTS):
        urls = []
        for k in range(PER_POST):
            body = images.jpeg(seed=1000 + n * PER_POST + k)
            url = server.add(f"/{n}_{k}.jpg", Route(body, delay=0.15))
            bodies[url] = body
            urls.append(url)
        posts[f"post{n}"] = urls
    return write_posts(posts), posts, bodies, tmp_path / "job"


def stored_urls(store: Path, posts: dict[str, list[str]]) -> set[str]:
    """URLs whose image is complete on disk, judged from the files alone."""
    found = set()
    for post_id, urls in posts.items():
        folder = store / post_id
        names = {p.name.rsplit(".", 1)[0] for p in folder.iterdir()} if folder.exists() else set()
        found.update(u for i, u in enumerate(urls, 1) if f"{i}_{image_key(u)}" in names)
    return found


def requested_urls(server: ImageServer, since: int) -> set[str]:
    return {server.url(r.path) for r in server.requests[since:]}


def check_complete(store: Path, posts: dict, bodies: dict, manifest: dict) -> None:
    assert set(manifest) == set(posts)
    for post_id, urls in posts.items():
        images_ = manifest[post_id]["images"]
        assert [i["url"] for i in images_] == urls
        for image in images_:
            data = (store / image["path"]).read_bytes()
            assert data == bodies[image["url"]]
            assert sha256(data) == image["sha256"]
    assert list(store.rglob("*.part")) == []


def test_killed_at_random_moments_then_resumed_stores_every_image_once(server, job, store, crawl):
    posts_file, posts, bodies, jobdir = job
    seed = random.randrange(1 << 30)
    moments = random.Random(seed).sample([0.9, 1.3, 1.7, 2.2, 2.8, 3.3], 3)
    for moment in moments:
        already = stored_urls(store, posts)
        seen = len(server.requests)
        process = start_crawl(posts_file, store, f"JOBDIR={jobdir}", "CONCURRENT_REQUESTS=4")
        time.sleep(moment)
        process.kill()
        process.communicate(timeout=10)
        assert requested_urls(server, seen) & already == set(), f"seed {seed}"

    already = stored_urls(store, posts)
    seen = len(server.requests)
    result = crawl(posts_file, f"JOBDIR={jobdir}", "CONCURRENT_REQUESTS=4")

    assert result.returncode == 0, result.stderr
    assert requested_urls(server, seen) & already == set(), f"seed {seed}"
    check_complete(store, posts, bodies, result.manifest)
    assert result.summary.get("images/failed", 0) == 0


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopped_job_resumes_without_going_through_finished_posts(
    server, job, store, crawl, stop_signal
):
    posts_file, posts, bodies, jobdir = job
    process = start_crawl(posts_file, store, f"JOBDIR={jobdir}", "CONCURRENT_REQUESTS=4")
    wait_until(lambda: len(server.requests) >= 30)
    process.send_signal(stop_signal)
    stopped_at = time.monotonic()
    _, stderr = process.communicate(timeout=20)
    assert time.monotonic() - stopped_at < 5, stderr
    assert process.returncode == 1
    finished = (store / "manifest.jsonl").read_text().count("\n")
    assert 0 < finished < POSTS
    already = stored_urls(store, posts)
    seen = len(server.requests)

    result = crawl(posts_file, f"JOBDIR={jobdir}", "CONCURRENT_REQUESTS=4")

    assert result.returncode == 0, result.stderr
    assert result.summary["posts/resumed"] == finished
    assert requested_urls(server, seen) & already == set()
    check_complete(store, posts, bodies, result.manifest)
