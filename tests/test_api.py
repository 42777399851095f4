"""``igimages.download``: the real crawl called from Python, as often as needed in one process.

Each test calls the API in this process against the loopback image server
and asserts what the server saw, the files in the store and the result; the
error paths compare the exception's line with what ``scrapy crawl`` prints.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import igimages
from tests import images
from tests.conftest import (
    PROJECT_ROOT,
    crawl_command,
    crawl_env,
    read_jsonl,
    sha256,
    wait_until,
)
from tests.imageserver import Route

pytestmark = pytest.mark.timeout(60)


def seed_posts(posts: dict[str, list[str]]) -> list[dict]:
    return [
        {"id": post, "url": f"https://example.invalid/p/{post}/", "media": {"images": urls}}
        for post, urls in posts.items()
    ]


def test_two_calls_in_one_process_the_second_requesting_nothing(server, write_posts, tmp_path):
    bodies = {f"/api/{i}.jpg": images.jpeg(seed=100 + i) for i in range(5)}
    urls = [server.add(path, body) for path, body in bodies.items()]
    posts = write_posts({"a": urls[:3], "b": urls[3:]})
    store = tmp_path / "store"

    first = igimages.download(posts, store)

    assert first.exit_status == 0
    assert first.ok
    assert first.counts == {"downloaded": 5, "cached": 0, "duplicate": 0, "failed": 0}
    assert len(server.requests) == 5
    # In the order posts finished: sorted, to compare.
    rows = sorted(first.images(), key=lambda row: (row["post_id"], row["position"]))
    assert [(row["post_id"], row["position"]) for row in rows] == [
        ("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2)
    ]  # fmt: skip
    for row, body in zip(rows, bodies.values(), strict=True):
        assert (store / row["path"]).read_bytes() == body
        assert row["sha256"] == sha256(body)
        assert row["post_url"].startswith("https://example.invalid/p/")
    assert first.feeds["manifest.jsonl"] == f"{store}/manifest.jsonl"
    assert first.failures() == []

    server.reset_counters()
    second = igimages.download(posts, store)

    assert server.requests == []
    assert second.counts == {"downloaded": 0, "cached": 5, "duplicate": 0, "failed": 0}
    again = sorted(second.images(), key=lambda row: (row["post_id"], row["position"]))
    assert [row["sha256"] for row in again] == [sha256(b) for b in bodies.values()]


def test_posts_in_memory_options_and_failures(server, tmp_path):
    good = server.add("/api/good.jpg", images.jpeg(seed=7))
    second = server.add("/api/second.jpg", images.jpeg(seed=8))
    gone = server.add("/api/gone.jpg", Route(status=404))
    store = tmp_path / "store"

    result = igimages.download(
        seed_posts({"p": [good, second], "q": [gone]}),
        store,
        max_images_per_post=1,  # IGIMAGES_MAX_IMAGES_PER_POST: the second is left out
        settings={"CONCURRENT_REQUESTS": 4},
    )

    assert result.exit_status == 3
    assert not result.ok
    assert result.counts["downloaded"] == 1
    assert result.counts["failed"] == 1
    assert sorted(record.path for record in server.requests) == ["/api/gone.jpg", "/api/good.jpg"]
    [failure] = result.failures()
    assert (failure["post_id"], failure["reason"], failure["url"]) == ("q", "http_404", gone)
    assert result.stats["igimages/images/failed"] == 1


def test_bad_input_raises_the_line_scrapy_crawl_prints(tmp_path):
    posts = tmp_path / "posts.json"
    posts.write_text('[{"id": "a", "media": {"images": ["http://127.0.0.1:9/a.jpg"]}},\n  {"id": ')
    store = tmp_path / "store"

    with pytest.raises(igimages.DownloadError) as raised:
        igimages.download(posts, store)

    printed = subprocess.run(
        crawl_command(posts, tmp_path / "cli-store"),
        cwd=PROJECT_ROOT,
        env=crawl_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert raised.value.exit_status == printed.returncode == 2
    assert f"error: {raised.value}" in printed.stderr.splitlines()
    assert str(posts) in str(raised.value)
    assert not store.exists()  # nothing written


def test_a_store_in_use_raises_with_status_1(server, write_posts, tmp_path):
    from igimages.store.lock import StoreLock

    posts = write_posts({"a": [server.add("/api/lock.jpg", images.jpeg(seed=9))]})
    store = tmp_path / "store"
    igimages.download(posts, store)
    server.reset_counters()

    held = StoreLock(store / ".igimages" / "lock", str(store))
    try:
        with pytest.raises(igimages.DownloadError, match="in use by another crawl") as raised:
            igimages.download(posts, store)
    finally:
        held.release()

    assert raised.value.exit_status == 1
    assert server.requests == []


def test_an_unknown_option_is_refused_by_name(tmp_path):
    with pytest.raises(TypeError, match="concurent_requests"):
        igimages.download([], tmp_path / "store", concurent_requests=4)


def test_from_a_running_event_loop_as_in_a_notebook(server, tmp_path):
    """A notebook's cell runs inside its kernel's event loop: the call still works."""
    body = images.jpeg(seed=11)
    url = server.add("/api/loop.jpg", body)
    script = textwrap.dedent(
        f"""
        import asyncio, igimages

        async def cell():
            return igimages.download(
                [{{"id": "n", "media": {{"images": [{url!r}]}}}}], {str(tmp_path / "store")!r}
            )

        print(asyncio.run(cell()).counts["downloaded"])
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=crawl_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.stdout.strip() == "1", ran.stderr
    [stored] = Path(tmp_path / "store", "n").iterdir()
    assert stored.read_bytes() == body


def test_in_a_notebook_progress_is_a_bar_under_the_cell(server, tmp_path):
    """A real Jupyter kernel runs a cell that calls the API twice: both calls finish and
    the cell's output holds a progress bar at its end for each."""
    import nbformat
    from nbclient import NotebookClient

    bodies = [images.jpeg(seed=200 + i) for i in range(3)]
    urls = [server.add(f"/api/nb/{i}.jpg", body) for i, body in enumerate(bodies)]
    store = tmp_path / "store"
    cell = textwrap.dedent(
        f"""
        import igimages
        posts = [{{"id": "nb", "media": {{"images": {urls!r}}}}}]
        first = igimages.download(posts, {str(store)!r}, progress_interval=0.05)
        second = igimages.download(posts, {str(store)!r}, progress_interval=0.05)
        print(first.counts["downloaded"], second.counts["cached"])
        """
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    NotebookClient(notebook, timeout=60, kernel_name="python3", resources={
        "metadata": {"path": str(PROJECT_ROOT)}
    }).execute(env=crawl_env())  # fmt: skip

    outputs = notebook.cells[0].outputs
    printed = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    assert "3 3" in printed.splitlines()
    bars = [
        o["data"]["text/html"]
        for o in outputs
        if o["output_type"] == "display_data" and "text/html" in o.get("data", {})
    ]
    assert len(bars) == 2
    assert all('<progress value="3" max="3">' in bar for bar in bars)
    assert "3/3 images (100%)" in bars[0]
    assert "0 downloaded, 3 cached" in bars[1]
    assert [path.read_bytes() for path in sorted((store / "nb").iterdir())] == bodies


def test_ctrl_c_stops_the_crawl_cleanly_then_raises(server, tmp_path):
    """As the command's first Ctrl-C: downloads in flight finish, the feeds are whole,
    then the program gets its KeyboardInterrupt."""
    bodies = {f"/api/slow/{n}.jpg": images.jpeg(seed=300 + n) for n in range(60)}
    urls = [server.add(path, Route(body, delay=0.4)) for path, body in bodies.items()]
    posts = [{"id": f"p{n}", "media": {"images": urls[n : n + 3]}} for n in range(0, 60, 3)]
    store = tmp_path / "store"
    script = textwrap.dedent(
        f"""
        import igimages
        try:
            igimages.download({posts!r}, {str(store)!r}, concurrent_requests=6)
        except KeyboardInterrupt:
            print("interrupted")
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=crawl_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: len(server.requests) >= 12)

    process.send_signal(signal.SIGINT)
    stopped_at = time.monotonic()
    stdout, stderr = process.communicate(timeout=20)

    assert time.monotonic() - stopped_at < 5, stderr
    assert stdout.strip() == "interrupted", stderr
    manifest = read_jsonl(store / "manifest.jsonl")  # every line is whole JSON
    assert 0 < len(manifest) < 20, stderr
    for post in manifest:
        for image in post["images"]:
            path = image["url"].split("/", 3)[3]
            assert (store / image["path"]).read_bytes() == bodies[f"/{path}"]
    assert json.loads((store / "summary.json").read_text())["finish_reason"] == "shutdown"


def test_into_a_bucket_the_result_reads_its_feeds_from_the_bucket(server, s3_bucket, monkeypatch):
    bodies = [images.jpeg(seed=400 + i) for i in range(3)]
    urls = [server.add(f"/api/s3/{i}.jpg", body) for i, body in enumerate(bodies)]
    gone = server.add("/api/s3/gone.jpg", Route(status=404))
    for name, value in s3_bucket.env.items():
        monkeypatch.setenv(name, value)
    settings = dict(setting.split("=", 1) for setting in s3_bucket.settings)

    result = igimages.download(seed_posts({"s": [*urls, gone]}), s3_bucket.uri, settings=settings)

    assert result.exit_status == 3
    assert result.feeds["manifest.jsonl"] == f"{s3_bucket.uri}manifest.jsonl"
    rows = list(result.images())
    stored = s3_bucket.objects()
    assert [stored[row["path"]] for row in rows[:3]] == bodies
    assert [row["status"] for row in rows] == ["downloaded"] * 3 + ["failed"]
    assert [failure["url"] for failure in result.failures()] == [gone]
