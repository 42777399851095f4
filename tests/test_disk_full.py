"""A full disk stops the crawl cleanly; after making room, the same command finishes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import images
from tests.conftest import read_jsonl


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 320 KiB filesystem (tmpfs), where this machine lets us mount one."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mountpoint)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


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
