"""What belongs to a store stays whole and its own: one writer at a time, outputs
that fail are said and change the exit status, a JOBDIR serves the store and input
it was made for, and a damaged index is set aside and rebuilt without a request."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from igimages.store.lock import StoreInUse, StoreLock
from igimages.store.statedb import set_aside
from tests import images
from tests.conftest import PROJECT_ROOT, crawl_env, read_jsonl, sha256, start_crawl, wait_until
from tests.imageserver import Route

EXIT_OK, EXIT_STOPPED, EXIT_SOME_FAILED, EXIT_NOT_WRITTEN = 0, 1, 3, 4


def slow_posts(server, write_posts, prefix: str, count: int, name: str) -> tuple[Path, dict]:
    """``count`` posts of two images each, 0.3 s an answer; and each image's bytes by URL."""
    bodies, posts = {}, {}
    for n in range(count):
        urls = []
        for k in range(2):
            body = images.jpeg(seed=ord(prefix) * 100 + 2 * n + k)
            url = server.add(f"/{prefix}{n}_{k}.jpg", Route(body, delay=0.3))
            bodies[url] = body
            urls.append(url)
        posts[f"{prefix}{n}"] = urls
    return write_posts(posts, name), bodies


def assert_exact(store: Path, bodies: dict[str, bytes], manifest: list[dict]) -> None:
    for post in manifest:
        for image in post["images"]:
            data = (store / image["path"]).read_bytes()
            assert sha256(data) == sha256(bodies[image["url"]]) == image["sha256"]


def test_a_second_crawl_on_a_store_in_use_is_refused_and_the_first_ends_whole(
    server, write_posts, store, crawl
):
    first_posts, first_bodies = slow_posts(server, write_posts, "a", 12, "first.json")
    second_posts, second_bodies = slow_posts(server, write_posts, "b", 4, "second.json")
    first = start_crawl(first_posts, store, "CONCURRENT_REQUESTS=2")  # 3.6 s of answers
    wait_until(lambda: len(server.requests) >= 2)

    second = crawl(second_posts)

    assert second.returncode == EXIT_STOPPED, second.stderr[-3000:]
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, second.stderr[-3000:]
    assert str(store) in errors[0]
    assert f"process {first.pid} on " in errors[0]
    assert "Traceback" not in second.stderr
    assert not [r for r in server.requests if r.path.startswith("/b")]  # it fetched nothing
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == EXIT_OK, stderr[-3000:]
    manifest = read_jsonl(store / "manifest.jsonl")
    assert sorted(post["id"] for post in manifest) == sorted(f"a{n}" for n in range(12))
    assert_exact(store, first_bodies, manifest)
    assert list(store.rglob("*.part")) == []

    # A crawl killed outright leaves nothing that keeps the next one out.
    killed = start_crawl(second_posts, store, "CONCURRENT_REQUESTS=1")
    wait_until(lambda: any(r.path.startswith("/b") for r in server.requests))
    killed.kill()
    killed.communicate(timeout=10)
    after = crawl(second_posts)
    assert after.returncode == EXIT_OK, after.stderr[-3000:]
    assert_exact(store, second_bodies, read_jsonl(store / "manifest.jsonl"))


def test_the_workers_of_a_job_share_a_store_that_a_plain_crawl_may_not(tmp_path):
    path = tmp_path / "store" / ".igimages" / "lock"
    workers = [StoreLock(path, "store", job="ig-2026-12") for _ in range(2)]
    with pytest.raises(StoreInUse, match=r"in use by the workers of job 'ig-2026-12' \(process"):
        StoreLock(path, "store")
    for worker in workers:
        worker.release()
    plain = StoreLock(path, "store")
    with pytest.raises(StoreInUse, match=r"in use by another crawl \(process"):
        StoreLock(path, "store", job="ig-2026-12")
    plain.release()


def test_an_output_that_cannot_be_written_is_exit_status_4_and_the_others_are_written(
    server, write_posts, store, crawl
):
    good = images.jpeg(seed=7)
    posts = write_posts({"p": [server.add("/ok.jpg", good), server.add("/gone.jpg", b"")]})
    (store / "manifest.jsonl").mkdir(parents=True)  # where the manifest should go

    result = crawl(posts)

    assert result.returncode == EXIT_NOT_WRITTEN, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "] ERROR: " in line]
    assert len(errors) == 1, errors
    assert "manifest.jsonl: Is a directory" in errors[0]
    assert "Traceback" not in result.stderr
    assert f"could not write {store / 'manifest.jsonl'}: Is a directory" in result.stderr
    assert [line["reason"] for line in result.failures] == ["empty"]
    assert result.summary["outputs/unwritten"] == [f"{store / 'manifest.jsonl'}: Is a directory"]
    assert (store / "manifest.jsonl").is_dir()
    assert [sha256(path.read_bytes()) for path in (store / "p").iterdir()] == [sha256(good)]
    assert list(store.rglob("*.part")) == []


def test_a_jobdir_serves_the_store_and_input_it_was_made_for_and_never_replays_a_failure(
    server, write_posts, crawl, tmp_path
):
    good = images.png(seed=3)
    flaky = server.add("/flaky.png", Route(good, first=[Route(b"gone\n", 404, "text/plain")]))
    posts = write_posts({"p": [server.add("/fine.jpg", images.jpeg(seed=4)), flaky]})
    jobdir, first_store = tmp_path / "job", tmp_path / "first"

    first = crawl(posts, f"JOBDIR={jobdir}", target=first_store)
    assert first.returncode == EXIT_SOME_FAILED, first.stderr[-3000:]

    # Another store, or the failure feed as the input: refused, in one line.
    other_store = crawl(posts, f"JOBDIR={jobdir}", target=tmp_path / "second")
    retry = crawl(first_store / "failures.jsonl", f"JOBDIR={jobdir}", target=first_store)
    for refused, differs in ((other_store, "store"), (retry, "input")):
        assert refused.returncode == EXIT_STOPPED, refused.stderr[-3000:]
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, refused.stderr[-3000:]
        assert f"JOBDIR={jobdir} was made for {differs} " in errors[0]
        assert "Traceback" not in refused.stderr
    second = tmp_path / "second"
    assert [path.name for path in second.iterdir()] in ([], [".igimages"])  # nothing stored
    assert read_jsonl(first_store / "failures.jsonl")[0]["url"] == flaky  # untouched

    # The same store and input: a resumed job, which tries the failure again.
    requests_before = server.hits("/flaky.png")
    resumed = crawl(posts, f"JOBDIR={jobdir}", target=first_store)

    assert resumed.returncode == EXIT_OK, resumed.stderr[-3000:]
    assert server.hits("/flaky.png") == requests_before + 1
    assert resumed.image("p", 2)["status"] == "downloaded"
    assert sha256(resumed.stored_bytes("p", 2)) == sha256(good)
    assert resumed.failures == []


def test_a_damaged_index_is_set_aside_and_rebuilt_without_a_request(
    server, write_posts, store, crawl
):
    bodies = {f"/{n}.jpg": images.jpeg(seed=60 + n) for n in range(6)}
    urls = [server.add(path, body) for path, body in bodies.items()]
    posts = write_posts({"p1": urls[:3], "p2": urls[3:], "p3": [urls[0]]})
    assert crawl(posts).returncode == EXIT_OK
    index = store / ".igimages" / "index.sqlite3"
    garbage = os.urandom(index.stat().st_size)
    index.write_bytes(garbage)
    server.reset_counters()

    plan = crawl(posts, args=["plan=1"])

    assert plan.returncode == EXIT_OK, plan.stderr[-3000:]
    assert "Traceback" not in plan.stderr
    assert re.search(r"already stored +7 ", plan.stdout), plan.stdout
    assert "the index is damaged" in plan.stdout
    assert index.read_bytes() == garbage  # a plan writes nothing

    rerun = crawl(posts)

    assert rerun.returncode == EXIT_OK, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr
    told = [line for line in rerun.stderr.splitlines() if "is damaged" in line]
    assert len(told) == 1, rerun.stderr[-3000:]
    assert "set aside as index.sqlite3.damaged-" in told[0]
    assert server.requests == []
    aside = list(index.parent.glob("index.sqlite3.damaged-*"))
    assert [path.read_bytes() for path in aside] == [garbage]  # kept, not deleted
    assert {i["status"] for post in rerun.manifest.values() for i in post["images"]} == {"cached"}
    for post in rerun.manifest.values():
        for image in post["images"]:
            assert sha256(rerun.stored_bytes(post["id"], image["position"])) == image["sha256"]
    assert sha256(rerun.stored_bytes("p3", 1)) == sha256(bodies["/0.jpg"])

    # The rebuilt index serves the next run alone: no file is read again.
    again = crawl(posts)
    assert again.returncode == EXIT_OK
    assert "is damaged" not in again.stderr
    assert server.requests == []
    report = subprocess.run(
        [sys.executable, "-m", "scrapy", "report", "-s", f"IMAGES_STORE={store}"],
        cwd=PROJECT_ROOT,
        env=crawl_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    assert "Traceback" not in report.stderr


def test_a_new_store_takes_the_lock_before_anything_is_written(tmp_path):
    """The lock is the first thing a crawl makes in a store, and it says who holds it."""
    store = tmp_path / "images"
    lock = StoreLock(store / ".igimages" / "lock", str(store))
    holder = (store / ".igimages" / "lock").read_text()
    assert f'"pid": {os.getpid()}' in holder
    assert time.time() - 60 < float(re.search(r'"since": ([0-9.]+)', holder)[1]) <= time.time()
    lock.release()


def test_a_state_file_set_aside_twice_in_a_second_keeps_both(tmp_path):
    path = tmp_path / "index.sqlite3"
    kept = []
    for garbage in (b"first", b"second"):
        path.write_bytes(garbage)
        kept.append(set_aside(path))
    assert [aside.read_bytes() for aside in kept] == [b"first", b"second"]
