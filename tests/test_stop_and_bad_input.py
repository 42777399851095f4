"""Stopping a crawl, and posts files that cannot be read."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests import images
from tests.conftest import read_jsonl, sha256, start_crawl, wait_until
from tests.imageserver import Route

EXIT_STOPPED, EXIT_BAD_INPUT = 1, 2


def test_ctrl_c_mid_crawl_stops_within_seconds_with_valid_feeds(server, write_posts, store, crawl):
    bodies = {f"/{n}.jpg": images.jpeg(seed=n) for n in range(90)}
    urls = [server.add(path, Route(body, delay=0.4)) for path, body in bodies.items()]
    posts = write_posts({f"p{n}": urls[n : n + 3] for n in range(0, 90, 3)})
    process = start_crawl(posts, store, "CONCURRENT_REQUESTS=6")
    wait_until(lambda: len(server.requests) >= 12)

    process.send_signal(signal.SIGINT)
    stopped_at = time.monotonic()
    _, stderr = process.communicate(timeout=20)

    assert time.monotonic() - stopped_at < 5, stderr
    assert process.returncode == EXIT_STOPPED
    manifest = read_jsonl(store / "manifest.jsonl")  # every line is whole JSON
    assert 0 < len(manifest) < 30
    for post in manifest:
        for image in post["images"]:
            assert image["status"] == "downloaded"
            path = image["url"].rsplit("/", 1)[1]
            assert (store / image["path"]).read_bytes() == bodies[f"/{path}"]
    assert not list(store.rglob("*.part"))
    summary = json.loads((store / "summary.json").read_text())
    assert summary["finish_reason"] == "shutdown"

    # The same command then completes the job, without fetching anything twice.
    done = {image["url"] for post in manifest for image in post["images"]}
    server.reset_counters()
    rerun = crawl(posts)
    assert rerun.returncode == 0, rerun.stderr
    assert len(rerun.manifest) == 30
    refetched = {server.url(r.path) for r in server.requests} & done
    assert refetched == set()
    for post_id, post in rerun.manifest.items():
        for image in post["images"]:
            assert sha256((store / image["path"]).read_bytes()) == image["sha256"], post_id


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "posts.json: cannot read posts: no such file or directory"),
        ("", "posts.json: the file is empty"),
        ("id,url\n1,x\n", "posts.json:1:1: expected a JSON array of posts or JSON Lines"),
        (
            '[{"id": 1, "media": {"images": []}},\n {"id": 2,, }]',
            "posts.json:2:11: invalid JSON: Expecting property name",
        ),
        ('[{"id": 1}\n {"id": 2}]', "posts.json:2:2: expected ',' or ']' after post #1"),
        ('[{"id": 1}', "posts.json:1:11: the posts array ends before its closing ']'"),
    ],
)
def test_unreadable_posts_file_is_one_line_error_and_writes_nothing(
    tmp_path, store, crawl, content, message
):
    posts = tmp_path / "posts.json"
    if content is not None:
        posts.write_text(content)

    result = crawl(posts)

    assert result.returncode == EXIT_BAD_INPUT
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {tmp_path}/{message}")
    assert "Traceback" not in result.stderr
    assert not store.exists()


def test_bad_posts_are_skipped_counted_and_named(server, crawl, tmp_path):
    good = server.add("/ok.png", images.png(seed=1))
    posts = tmp_path / "posts.json"
    posts.write_text(
        f'[{{"id": "good", "media": {{"images": ["{good}"]}}}},\n'
        ' ["not", "a", "post"],\n'
        ' {"media": {"images": []}},\n'
        ' {"id": "x", "media": {"images": [1, 2]}}]'
    )

    result = crawl(posts)

    assert result.returncode == 0, result.stderr
    assert list(result.manifest) == ["good"]
    assert result.summary["posts/bad"] == 3
    assert f"{posts}:2:2: skipped post #2: a post must be a JSON object" in result.stderr
    assert f'{posts}:3:2: skipped post #3: the post has no "id"' in result.stderr
    assert f'{posts}:4:2: skipped post #4: post x: "media.images" must be a list' in result.stderr
    assert "skipped 3 bad posts" in result.stderr


def test_malformed_file_leaves_an_earlier_run_untouched(server, write_posts, crawl):
    url = server.add("/first.png", images.png(seed=2))
    posts = write_posts({"first": [url]})
    first = crawl(posts)
    assert first.returncode == 0, first.stderr
    before = {p: p.read_bytes() for p in first.store.rglob("*") if p.is_file()}
    posts.write_text(posts.read_text().rstrip()[:-1] + ', {"id": "second", oops}]')

    result = crawl(posts)

    assert result.returncode == EXIT_BAD_INPUT
    assert f"error: {posts}:" in result.stderr
    assert "invalid JSON" in result.stderr
    after = {p: p.read_bytes() for p in first.store.rglob("*") if p.is_file()}
    assert after == before


def test_file_url_never_reads_the_file(write_posts, crawl, tmp_path: Path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(images.png(seed=3))
    posts = write_posts(
        {"p": [secret.as_uri(), "FILE:///etc/passwd", "data:image/png;base64,AAAA"]}
    )

    result = crawl(posts)

    assert result.returncode == 3
    assert [f["reason"] for f in result.failures] == ["unsupported_scheme"] * 3
    assert list(result.store.rglob("*.png")) == []


def test_killed_rerun_leaves_the_previous_manifest_whole(server, write_posts, store, crawl):
    first_urls = [server.add(f"/first{n}.jpg", images.jpeg(seed=n)) for n in range(3)]
    posts = write_posts({"a": first_urls})
    first = crawl(posts)
    assert first.returncode == 0, first.stderr
    manifest_before = (store / "manifest.jsonl").read_bytes()
    slow = [
        server.add(f"/slow{n}.jpg", Route(images.jpeg(seed=100 + n), delay=0.5)) for n in range(40)
    ]
    posts = write_posts({"a": first_urls, **{f"s{n}": [url] for n, url in enumerate(slow)}})
    process = start_crawl(posts, store, "CONCURRENT_REQUESTS=2")
    wait_until(lambda: server.hits("/slow3.jpg") > 0)

    process.kill()
    process.communicate(timeout=10)

    assert (store / "manifest.jsonl").read_bytes() == manifest_before
    stored = {
        image["url"]: image
        for post in read_jsonl(store / "manifest.jsonl")
        for image in post["images"]
    }
    for url, image in stored.items():
        assert (store / image["path"]).read_bytes() == images.jpeg(seed=first_urls.index(url))


def test_binary_file_or_empty_folder_is_a_one_line_error(tmp_path, store, crawl):
    binary = tmp_path / "posts.json"
    binary.write_bytes(images.jpeg(seed=9))
    folder = tmp_path / "exports"
    folder.mkdir()

    for posts, message in (
        (binary, "cannot read posts: not UTF-8 text"),
        (folder, "no .json files"),
    ):
        result = crawl(posts)
        assert result.returncode == EXIT_BAD_INPUT
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1
        assert errors[0].startswith(f"error: {posts}: {message}")
        assert not store.exists()


def test_a_crawl_that_cannot_start_says_why_in_one_line(write_posts, crawl, store):
    posts = write_posts({"a": ["http://127.0.0.1:9/a.jpg"]})

    result = crawl(posts, "IGIMAGES_MAX_PIXELS=lots")

    assert result.returncode == EXIT_STOPPED
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: the crawl could not start: ValueError: invalid literal for int() with base 10:"
        " 'lots'"
    ]
    assert not (store / "manifest.jsonl").exists()
