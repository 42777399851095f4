"""A full disk stops the crawl cleanly; after making room, the same command finishes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import images
from tests.conftest import read_jsonl


def cannot_mount(reason: str) -> None:
    """Skip where a tmpfs cannot be mounted; on CI (``CI`` set, as root) that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the full-disk tests: {reason}")
    pytest.skip(reason)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of 320 KiB (tmpfs), to fill up."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        cannot_mount("mounting a size-limited tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mountpoint)], capture_output=True
    )
    if mounted.returncode != 0:
        cannot_mount(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill_up(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with one file until only ``leave`` bytes are free."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):  # until the disk is full
            while True:
                os.write(descriptor, b"\0" * 65536)
    finally:
        os.close(descriptor)
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    os.truncate(filler, max(0, filler.stat().st_size - (leave - free)))
    return filler


def test_disk_full_stops_cleanly_and_a_rerun_after_freeing_space_completes(
    server, write_posts, crawl, small_disk
):
    bodies = {f"/{n}.png": images.noise_png(seed=n) for n in range(24)}
    assert sum(map(len, bodies.values())) > 2 * 320 * 1024  # cannot fit
    urls = [server.add(path, body) for path, body in bodies.items()]
    posts = write_posts({f"p{n}": urls[n : n + 3] for n in range(0, 24, 3)})
    store = small_disk / "images"

    full = crawl(posts, "CONCURRENT_REQUESTS=2", target=store)

    assert full.returncode == 1, full.stderr
    errors = [line for line in full.stderr.splitlines() if "Stopping:" in line]
    assert len(errors) == 1
    assert "No space left on device" in errors[0]
    assert "run the same command again" in errors[0]
    assert "Traceback" not in full.stderr, full.stderr[-5000:]
    assert "failed (" not in full.stderr  # the unfinished posts are not failures
    assert list(store.rglob("*.part")) == []
    for post in read_jsonl(store / "manifest.jsonl"):  # absent, or whole lines
        assert all(i["status"] in ("downloaded", "duplicate") for i in post["images"])
    for path in store.glob("p*/*.png"):  # whatever is there is complete
        assert path.read_bytes() in bodies.values()
    stored_first = {p.relative_to(store) for p in store.glob("p*/*.png")}
    assert stored_first, "some images fit before the disk filled up"

    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    server.reset_counters()
    rerun = crawl(posts, "CONCURRENT_REQUESTS=2", target=store)

    assert rerun.returncode == 0, rerun.stderr
    assert len(rerun.manifest) == 8
    for post_id, post in rerun.manifest.items():
        n = int(post_id[1:])
        for k, image in enumerate(post["images"]):
            assert (store / image["path"]).read_bytes() == bodies[f"/{n + k}.png"]
    refetched = {r.path for r in server.requests}
    assert not refetched & {f"/{p.name}" for p in stored_first}, "stored images refetched"
    assert json.loads((store / "summary.json").read_text())["finish_reason"] == "finished"
    assert list(store.rglob("*.part")) == []


def test_feeds_and_report_that_do_not_fit_leave_the_previous_ones_whole(
    server, write_posts, crawl, small_disk
):
    """A later run on a disk that something else filled: exit status 4, and the
    manifest and report a reader has are the previous run's, byte for byte."""
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    body = images.jpeg(seed=5)
    long_query = "?oh=" + "x" * 2000  # long URLs: a manifest line of ~2 KB
    url = server.add("/same.jpg", body)
    posts = write_posts({f"p{n}": [f"{url}{long_query}{n}"] for n in range(120)})
    store = small_disk / "images"
    first = crawl(posts, "IGIMAGES_REPORT=True", target=store)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {
        name: (store / name).read_bytes()
        for name in ("manifest.jsonl", "failures.jsonl", "report/index.html")
    }
    assert len(before["manifest.jsonl"]) > 200_000
    filler = fill_up(small_disk, leave=96 * 1024)  # enough for the index's files, not the feeds
    server.reset_counters()

    full = crawl(posts, "IGIMAGES_REPORT=True", target=store)

    assert full.returncode == 4, full.stderr[-3000:]
    assert server.requests == []  # every image was stored: nothing fetched, nothing written
    assert "Traceback" not in full.stderr
    errors = [line for line in full.stderr.splitlines() if "ERROR" in line or "error:" in line]
    assert any("manifest.jsonl: No space left on device" in line for line in errors), errors
    assert any(line.startswith("error: report not written") for line in errors), errors
    for name, data in before.items():
        assert (store / name).read_bytes() == data, f"{name} changed"
    assert list(store.rglob("*.part")) == []
    assert not list((store / "report").glob(".staging-*"))

    filler.unlink()
    again = crawl(posts, "IGIMAGES_REPORT=True", target=store)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (store / "manifest.jsonl").read_bytes().count(b"\n") == 120
