"""One job, many workers: real crawl processes sharing a real redis-server and one store."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import images
from tests.conftest import (
    PROJECT_ROOT,
    SECRET,
    assert_no_secret,
    crawl_command,
    crawl_env,
    read_jsonl,
    sha256,
    wait_until,
)
from tests.imageserver import Load, Route
from tests.redisserver import PASSWORD, RedisServer, redis_url

EXIT_OK, EXIT_STOPPED, EXIT_SOME_FAILED = 0, 1, 3
SLOW = 0.15  # seconds each image takes to answer, so that workers overlap


def start_worker(
    store: Path | str,
    *settings: str,
    posts: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """A worker; given ``posts``, it queues them for the job first."""
    command = crawl_command(posts or "-", store, "IGIMAGES_PROGRESS_INTERVAL=0.5", *settings)
    if posts is None:  # a worker that only takes the job's posts
        command.remove("-a")
        command.remove("posts=-")
    return subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env or crawl_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(worker: subprocess.Popen, timeout: float = 90) -> tuple[int, str]:
    """The worker's exit status, and what it wrote (its log, then its output)."""
    try:
        stdout, stderr = worker.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        _, stderr = worker.communicate()
        pytest.fail(f"a worker did not finish:\n{stderr[-3000:]}")
    assert_no_secret(stderr + stdout, PASSWORD)  # the settings' log shows REDIS_URL without it
    return worker.returncode, stderr + stdout


def job_command(action: str, store: Path, *settings: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "scrapy", "job", action, "-s", f"IMAGES_STORE={store}"]
    for setting in settings:
        command += ["-s", setting]
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env=crawl_env(), capture_output=True, text=True, timeout=60
    )


def posts_done(stderr: str) -> int:
    found = re.search(r"igimages finished \(\w+\) in [^:]+: \d+ images of (\d+) posts", stderr)
    assert found, stderr
    return int(found[1])


def test_workers_share_one_queue_and_store_each_content_once(server, write_posts, store, job):
    own = {f"/p{n}-{k}.jpg": images.jpeg(seed=1000 + 2 * n + k) for n in range(36) for k in (0, 1)}
    for path, body in own.items():
        server.add(path, Route(body, delay=SLOW))
    # The same bytes under a URL of each post's own, and one URL in every post.
    same = images.png(seed=7)
    for n in range(36):
        server.add(f"/same-{n}.png", Route(same, delay=SLOW))
    common = server.add("/common.jpg", Route(images.jpeg(seed=9), delay=SLOW))
    posts = write_posts(
        {
            f"post{n}": [
                server.url(f"/p{n}-0.jpg"),
                server.url(f"/p{n}-1.jpg"),
                server.url(f"/same-{n}.png"),
                common,
            ]
            for n in range(36)
        }
    )
    settings = [
        "CONCURRENT_REQUESTS_PER_DOMAIN=4",  # for the whole job, as the server sees it
        "IGIMAGES_REPORT=True",  # written by the worker that writes the job's feeds
        *job.settings,
    ]
    with job.server.commands() as commands:
        workers = [
            start_worker(store, *settings, posts=posts),  # two machines feed
            start_worker(store, *settings, posts=posts),  # the same input
            start_worker(store, *settings),
        ]
        results = [finish(worker) for worker in workers]
    for status, stderr in results:
        assert status == EXIT_OK, stderr
    # Each image was looked up in the job's index as its post was taken, not after.
    reads = [(by, words) for by, words in commands if words[1:2] == [job.key("index")]]
    assert sum(len(words) - 2 for by, words in reads if by == "lua" and words[0] == "HMGET") == 144
    assert not [words for by, words in reads if by == "tcp" and words[0] in {"HGET", "HMGET"}]

    # Queued once, though fed twice; done by more than one worker.
    queued = [int(re.search(r"queued (\d+) new posts", r[1])[1]) for r in results[:2]]
    assert sum(queued) == 36
    assert sum(1 for _, stderr in results if posts_done(stderr)) >= 2
    assert sum(posts_done(stderr) for _, stderr in results) == 36
    assert server.max_in_flight_per_host["127.0.0.1"] <= 4
    assert [r[1].count("report of 36 posts, 144 images") for r in results].count(1) == 1
    assert (store / "report" / "index.html").is_file()

    # One manifest, merged from every worker: each post once, each image byte-exact.
    manifest = read_jsonl(store / "manifest.jsonl")
    assert sorted(line["id"] for line in manifest) == sorted(f"post{n}" for n in range(36))
    inodes: dict[str, set[int]] = {}
    for line in manifest:
        n = int(line["id"].removeprefix("post"))
        expected = [own[f"/p{n}-0.jpg"], own[f"/p{n}-1.jpg"], same, images.jpeg(seed=9)]
        for image, body in zip(line["images"], expected, strict=True):
            stored = store / image["path"]
            assert sha256(stored.read_bytes()) == sha256(body) == image["sha256"]
            inodes.setdefault(image["sha256"], set()).add(stored.stat().st_ino)
    # Stored once per distinct content: every other place is a link to it.
    assert len(inodes) == 36 * 2 + 2
    assert all(len(found) == 1 for found in inodes.values())
    assert all(server.hits(path) == 1 for path in own)  # each post by one worker
    assert not list((store / ".igimages" / "tmp").iterdir())
    summary = json.loads((store / "summary.json").read_text())
    assert summary["posts/total"] == summary["posts/done"] == 36
    assert summary["images/total"] == 144
    assert summary["finish_reason"] == "finished"
    assert read_jsonl(store / "failures.jsonl") == []
    for name in ("manifest.jsonl", "failures.jsonl", "summary.json"):
        assert_no_secret((store / name).read_text(), PASSWORD)

    # Fed again when it is done: nothing is added, nothing is requested.
    server.reset_counters()
    status, stderr = finish(start_worker(store, *job.settings, posts=posts))
    assert status == EXIT_OK, stderr
    assert "queued 0 new posts (0 images)" in stderr
    assert "36 were in the job already" in stderr
    assert server.requests == []

    # The job's feeds written again on demand, its state shown, then forgotten.
    written = (store / "manifest.jsonl").read_bytes()
    (store / "manifest.jsonl").unlink()
    merged = job_command("merge", store, *job.settings)
    assert merged.returncode == 0, merged.stderr
    assert (store / "manifest.jsonl").read_bytes() == written
    status = job_command("status", store, *job.settings)
    assert "posts: 36 done of 36; 0 queued, 0 with 0 live workers" in status.stdout
    assert "images: 144 stored, 0 failed, of 144" in status.stdout
    assert job_command("forget", store, *job.settings).returncode == 0
    assert list(job.client().scan_iter(match=job.key("*"))) == []


def test_workers_on_two_machines_share_one_bucket(server, write_posts, job, s3_bucket, tmp_path):
    """Two workers with a state folder each, as on two machines, into one S3 bucket."""
    # Slow enough that a worker's first posts keep its downloads waiting for longer
    # than the other's start-up may lag behind: each then has posts to take.
    slow = 0.5
    own = {f"/b{n}.jpg": images.jpeg(seed=3000 + n) for n in range(16)}
    for path, body in own.items():
        server.add(path, Route(body, delay=slow))
    same = server.add("/same.png", Route(images.png(seed=8), delay=slow))
    posts = write_posts({f"post{n}": [server.url(f"/b{n}.jpg"), same] for n in range(16)})
    bucket = s3_bucket.settings[:-1]  # each machine its own state folder:
    machines = [[*bucket, f"IGIMAGES_STATE_DIR={tmp_path / f'machine{m}'}"] for m in (1, 2)]
    settings = ["CONCURRENT_REQUESTS_PER_DOMAIN=4", *job.settings]  # 2 s of answers at least
    waiting = start_worker(s3_bucket.uri, *machines[1], *settings, env=s3_bucket.env)
    feeding = start_worker(s3_bucket.uri, *machines[0], *settings, posts=posts, env=s3_bucket.env)
    results = [finish(worker) for worker in (feeding, waiting)]

    for status, output in results:
        assert status == EXIT_OK, output[-3000:]
        assert SECRET not in output
    assert all(posts_done(output) for _, output in results)  # both had a share
    objects = s3_bucket.objects()
    manifest = [json.loads(line) for line in objects["manifest.jsonl"].decode().splitlines()]
    assert sorted(line["id"] for line in manifest) == sorted(f"post{n}" for n in range(16))
    for line in manifest:
        n = int(line["id"].removeprefix("post"))
        for image, body in zip(
            line["images"], [own[f"/b{n}.jpg"], images.png(seed=8)], strict=True
        ):
            assert sha256(objects[image["path"]]) == sha256(body) == image["sha256"]
    uploads = [c.key for c in s3_bucket.calls() if c.is_upload and c.key.startswith("job/post")]
    assert len(uploads) == 17  # each content once, across the machines; the rest are copies
    assert json.loads(objects["summary.json"])["posts/done"] == 16
    assert objects["failures.jsonl"] == b""
    assert not [name for name in objects if name.endswith(".part")]

    # One machine's state damaged: set aside, and rebuilt from the bucket's mirror.
    state = next((tmp_path / "machine1").glob("*/index.sqlite3"))
    state.write_bytes(os.urandom(state.stat().st_size))
    server.reset_counters()
    calls_before = len(s3_bucket.calls())
    status, output = finish(
        start_worker(s3_bucket.uri, *machines[0], posts=posts, env=s3_bucket.env)
    )
    assert status == EXIT_OK, output[-3000:]
    assert len(re.findall(r"index\.sqlite3 is damaged", output)) == 1
    assert server.requests == []
    new_uploads = [c.key for c in s3_bucket.calls()[calls_before:] if c.is_upload]
    assert not [key for key in new_uploads if key.startswith("job/post")]


def test_a_killed_worker_leaves_its_posts_to_the_others(server, write_posts, store, job):
    bodies = {
        f"/k{n}-{k}.jpg": images.jpeg(seed=2000 + 2 * n + k) for n in range(30) for k in (0, 1)
    }
    for path, body in bodies.items():
        server.add(path, Route(body, delay=0.3))
    posts = write_posts(
        {f"post{n}": [server.url(f"/k{n}-{k}.jpg") for k in (0, 1)] for n in range(30)}
    )
    settings = [*job.settings, "IGIMAGES_LEASE_SECONDS=3", "CONCURRENT_REQUESTS_PER_DOMAIN=6"]
    doomed = start_worker(store, *settings, posts=posts)
    redis = job.client()

    def doomed_holds_posts() -> bool:
        owners = {owner.decode() for owner in redis.hvals(job.key("leases"))}
        return any(f"-{doomed.pid}-" in owner for owner in owners) and len(server.requests) >= 6

    wait_until(doomed_holds_posts, timeout=60)
    others = [start_worker(store, *settings) for _ in range(2)]
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    results = [finish(worker) for worker in others]
    for status, stderr in results:
        assert status == EXIT_OK, stderr
    assert any(re.search(r"Put \d+ posts of stopped workers back", r[1]) for r in results)

    manifest = read_jsonl(store / "manifest.jsonl")
    assert sorted(line["id"] for line in manifest) == sorted(f"post{n}" for n in range(30))
    for line in manifest:
        n = int(line["id"].removeprefix("post"))
        for k, image in enumerate(line["images"]):
            assert image["status"] in ("downloaded", "cached"), image
            assert (store / image["path"]).read_bytes() == bodies[f"/k{n}-{k}.jpg"]
    assert redis.llen(job.key("queue")) == 0
    assert redis.hlen(job.key("leases")) == 0


def test_a_retry_after_seen_by_one_worker_pauses_the_host_for_all(server, write_posts, store, job):
    paths = [f"/r{n}.jpg" for n in range(60)]
    for n, path in enumerate(paths):
        server.add(path, Route(images.jpeg(seed=3000 + n), delay=0.1))
    refused = "/r45.jpg"  # late enough for both workers to be at work
    server.add(
        refused,
        Route(
            images.jpeg(seed=3045),
            delay=0.1,
            first=[Route(b"slow down\n", 429, "text/plain", headers={"Retry-After": "2"})],
        ),
    )
    posts = write_posts({f"post{n}": [server.url(path)] for n, path in enumerate(paths)})
    # Leases shorter than the pause: a worker that waits still keeps its post.
    settings = [*job.settings, "CONCURRENT_REQUESTS_PER_DOMAIN=4", "IGIMAGES_LEASE_SECONDS=1"]
    first = start_worker(store, *settings, posts=posts)
    second = start_worker(store, *settings)  # waits for the first to queue the posts
    results = [finish(first), finish(second)]
    for status, stderr in results:
        assert status == EXIT_OK, stderr

    records = server.requests
    refusal = next(r for r in records if r.status == 429)
    during = [r for r in records if refusal.time + 0.3 < r.time < refusal.time + 1.7]
    assert during == [], "a worker sent requests while the host was paused"
    assert any("another worker of the job had a 429" in stderr for _, stderr in results)
    assert server.hits(refused) == 2  # the 429, then the answer: by the worker that waited
    assert sum(posts_done(stderr) for _, stderr in results) == 60
    assert all(posts_done(stderr) for _, stderr in results)


def test_a_refusal_seen_by_one_worker_cuts_every_workers_limit(server, write_posts, store, job):
    paths = [f"/f{n}.jpg" for n in range(80)]
    for n, path in enumerate(paths):
        server.add(path, Route(images.jpeg(seed=6000 + n), delay=0.1))
    posts = write_posts({f"post{n}": [server.url(path)] for n, path in enumerate(paths)})
    server.set_load(Load(refuse_above=3))  # 429, no Retry-After, above 3 being served
    settings = [*job.settings, "CONCURRENT_REQUESTS_PER_DOMAIN=12", "AUTOTHROTTLE_DEBUG=True"]
    settings += ["IGIMAGES_RETRY_BACKOFF_BASE=0.1", "RETRY_TIMES=10"]  # about cuts, not retries
    workers = [start_worker(store, *settings, posts=posts), start_worker(store, *settings)]
    results = [finish(worker) for worker in workers]
    for status, stderr in results:
        assert status == EXIT_OK, stderr
    assert all(posts_done(stderr) for _, stderr in results)
    assert any(re.search(r"limit 127\.0\.0\.1 \d+ -> \d+ \(elsewhere;", r[1]) for r in results)
    manifest = read_jsonl(store / "manifest.jsonl")
    assert len(manifest) == 80
    assert all(line["images"][0]["status"] == "downloaded" for line in manifest)


def test_failures_are_retried_through_the_queue(server, write_posts, store, job):
    good = server.add("/good.jpg", images.jpeg(seed=41))
    missing = server.url("/later.jpg")  # 404 for now
    posts = write_posts({"a": [good, missing], "b": [server.add("/b.png", images.png(seed=42))]})
    status, stderr = finish(start_worker(store, *job.settings, posts=posts))
    assert status == EXIT_SOME_FAILED, stderr
    failures = read_jsonl(store / "failures.jsonl")
    assert [(f["post_id"], f["position"], f["reason"]) for f in failures] == [("a", 2, "http_404")]

    server.add("/later.jpg", images.jpeg(seed=43))
    server.reset_counters()
    retry = store.parent / "retry.jsonl"
    retry.write_bytes((store / "failures.jsonl").read_bytes())
    status, stderr = finish(start_worker(store, *job.settings, posts=retry))
    assert status == EXIT_OK, stderr
    assert "and 1 posts again to retry their failures" in stderr
    assert [r.path for r in server.requests] == ["/later.jpg"]

    manifest = {line["id"]: line for line in read_jsonl(store / "manifest.jsonl")}
    assert list(manifest) == ["a", "b"]
    a = manifest["a"]["images"]
    assert [(i["position"], i["status"]) for i in a] == [(1, "downloaded"), (2, "downloaded")]
    assert (store / a[1]["path"]).read_bytes() == images.jpeg(seed=43)
    assert read_jsonl(store / "failures.jsonl") == []
    summary = json.loads((store / "summary.json").read_text())
    assert summary["images/downloaded"] == 3
    assert summary.get("images/failed", 0) == 0
    assert summary["posts/done"] == summary["posts/total"] == 2

    # The same failure feed again: nothing left to retry.
    status, stderr = finish(start_worker(store, *job.settings, posts=retry))
    assert status == EXIT_OK, stderr
    assert "queued 0 new posts (0 images)" in stderr
    assert "1 were in the job already" in stderr


def test_unreachable_redis_is_one_line_without_its_password_and_nothing_is_written(
    write_posts, store, server
):
    posts = write_posts({"a": [server.add("/a.jpg", images.jpeg(seed=1))]})
    from tests.cloud import free_port

    port = free_port()
    url = redis_url(port)  # with the password of the session's Redis: quotes, ":" and "@"
    crawled = subprocess.run(
        crawl_command(posts, store, f"REDIS_URL={url}"),
        cwd=PROJECT_ROOT,
        env=crawl_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    status = job_command("status", store, f"REDIS_URL={url}")
    for completed in (crawled, status):
        assert completed.returncode == EXIT_STOPPED
        errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, completed.stderr
        assert errors[0].startswith(f"error: Redis at redis://:(hidden)@127.0.0.1:{port}/0: ")
        assert "Traceback" not in completed.stderr
        assert_no_secret(completed.stderr + completed.stdout, PASSWORD)
    assert not store.exists()
    assert server.requests == []


def test_redis_lost_mid_job_stops_the_worker_and_the_same_command_completes(
    server, write_posts, store, tmp_path
):
    bodies = {f"/l{n}.jpg": images.jpeg(seed=4000 + n) for n in range(40)}
    for path, body in bodies.items():
        server.add(path, Route(body, delay=0.2))
    posts = write_posts({f"post{n}": [server.url(f"/l{n}.jpg")] for n in range(40)})
    redis_server = RedisServer(tmp_path).start()
    settings = [f"REDIS_URL={redis_server.url}", "CONCURRENT_REQUESTS_PER_DOMAIN=4"]
    try:
        worker = start_worker(store, *settings, posts=posts)

        def some_stored() -> bool:
            return len(server.requests) >= 8 and any(store.glob("post*/*.jpg"))

        wait_until(some_stored, timeout=60)
        redis_server.kill()
        status, stderr = finish(worker)
        assert status == EXIT_STOPPED, stderr
        stopping = [line for line in stderr.splitlines() if "Stopping: Redis at" in line]
        assert len(stopping) == 1, stderr
        assert "Traceback" not in stderr
        # What was stored is whole.
        stored = [p for p in store.iterdir() if p.is_dir() and p.name.startswith("post")]
        assert stored
        for folder in stored:
            for file in folder.iterdir():
                assert file.read_bytes() == bodies[f"/l{folder.name.removeprefix('post')}.jpg"]

        # Redis is back (empty: it kept nothing): the same command completes the job.
        redis_server.start()
        server.reset_counters()
        status, stderr = finish(start_worker(store, *settings, posts=posts))
        assert status == EXIT_OK, stderr
        assert len(server.requests) <= 40 - len(stored)  # what is stored is not fetched again
        manifest = read_jsonl(store / "manifest.jsonl")
        assert len(manifest) == 40
        for line in manifest:
            image = line["images"][0]
            assert (store / image["path"]).read_bytes() == bodies[f"/l{line['id'][4:]}.jpg"]
    finally:
        redis_server.stop()


def test_a_worker_with_another_store_cannot_join_the_job(write_posts, store, tmp_path, job, server):
    posts = write_posts({"a": [server.add("/a.jpg", images.jpeg(seed=1))]})
    status, stderr = finish(start_worker(store, *job.settings, posts=posts))
    assert status == EXIT_OK, stderr
    other = tmp_path / "elsewhere"
    status, stderr = finish(start_worker(other, *job.settings))
    assert status == EXIT_STOPPED
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert f"stores into {store}, not {other}" in errors[0]
    assert not other.exists()


@pytest.mark.parametrize("wants", [(100, 100, 100), (1, 100, 100), (3, 3, 100)])
def test_allotments_never_add_up_to_more_than_the_ceiling(redis_server, job, wants):
    from igimages.job import scripts

    client = job.client()
    allot = client.register_script(scripts.ALLOT)
    keys = [job.key("allot:host"), job.key("workers")]
    now = int(time.time() * 1000)
    workers = [f"w{n}" for n in range(len(wants))]
    client.zadd(job.key("workers"), dict.fromkeys(workers, now + 60000))
    allotted = dict.fromkeys(workers, 0)
    for _ in range(3):  # each asks in turn, as their sync loops do, using all it may
        for worker, want in zip(workers, wants, strict=True):
            allotted[worker] = allot(keys, [worker, want, allotted[worker], 10, now])
            held = client.hgetall(keys[0])
            assert sum(int(v) for f, v in held.items() if f.startswith(b"a:")) <= 10
    expected = {(100, 100, 100): [4, 3, 3], (1, 100, 100): [1, 5, 4], (3, 3, 100): [3, 3, 4]}
    assert sorted(allotted.values(), reverse=True) == sorted(expected[wants], reverse=True)

    # A worker that stops beating loses its allotment to the others.
    client.zadd(job.key("workers"), {"w0": now - 1})
    before = allotted["w1"]
    allotted["w1"] = allot(keys, ["w1", 100, 0, 10, now])
    assert client.hget(keys[0], "a:w0") is None
    assert before <= allotted["w1"] <= 10 - allotted["w2"]


def test_leases_outlive_a_long_wait_but_not_their_worker(redis_server, job):
    from igimages.job import scripts

    client = job.client()
    k = {name: job.key(name) for name in ("queue", "posts", "leases", "workers", "index")}
    for n in range(4):
        client.hset(k["posts"], f"p{n}", json.dumps({"id": f"p{n}", "image_urls": []}))
        client.rpush(k["queue"], f"p{n}")
    take = client.register_script(scripts.TAKE)
    reap = client.register_script(scripts.REAP)
    now = int(time.time() * 1000)
    for worker, deadline in (("alive", now + 30_000), ("dying", now + 1_000)):
        taken = take(list(k.values()), [worker, 2, deadline])
        assert len(taken[::2]) == 2  # each post, then its images' lookups
    # Long after the dying worker's last beat, while the live one still beats:
    assert reap([k["workers"], k["leases"], k["queue"]], [now + 5_000]) == 2
    assert sorted(client.lrange(k["queue"], 0, -1)) == [b"p2", b"p3"]
    assert {v.decode() for v in client.hvals(k["leases"])} == {"alive"}


def test_a_claim_of_a_worker_that_stopped_beating_is_taken_over(redis_server, job):
    from igimages.job import scripts

    client = job.client()
    claim = client.register_script(scripts.CLAIM)
    sha = "ab" * 32
    keys = [job.key("index"), job.key("contents"), job.key("workers")]
    now = int(time.time() * 1000)
    client.zadd(job.key("workers"), {"storing": now + 30_000, "waiting": now + 30_000})
    assert claim(keys, ["storing", now, now + 300_000, sha]) == [b"1"]
    assert claim(keys, ["waiting", now, now + 300_000, sha]) == [b"0"]  # a live worker stores it
    client.zadd(job.key("workers"), {"storing": now - 1})  # it stopped beating
    assert claim(keys, ["waiting", now, now + 300_000, sha]) == [b"1"]
    assert client.hget(keys[1], sha).endswith(b"!waiting")
    # A claim past its deadline is taken over too, though its worker beats.
    assert claim(keys, ["storing", now + 300_001, now + 600_000, sha]) == [b"1"]
    # Once recorded, the content answers with its image.
    client.hset(keys[0], "k1", f'["p",0,"k1","p/0_k1.jpg","{sha}",1,1,1,"JPEG"]')
    client.hset(keys[1], sha, "k1")
    assert claim(keys, ["waiting", now, now + 300_000, sha]) == [client.hget(keys[0], "k1")]


def test_a_worker_refused_more_of_a_host_asks_again_next_round_not_at_every_request(
    redis_server, job
):
    """A host shared by many workers: each refused one asks Redis once a round."""
    import asyncio

    import redis.asyncio

    from igimages.fetch.limits import FixedLimits
    from igimages.job import scripts
    from igimages.job.keys import JobKeys
    from igimages.job.limits import JobShare

    class Gate:  # requests for the host wait; none is in flight from this worker
        def waiting_slots(self) -> set[str]:
            return {"host"}

        def in_flight_to(self, slot: str) -> int:
            return 0

        def ceiling(self, slot: str) -> float:
            return 10

        def admit(self) -> None:
            pass

    client = job.client()
    now = int(time.time() * 1000)
    client.zadd(job.key("workers"), {"other": now + 60_000, "me": now + 60_000})
    client.hset(job.key("allot:host"), mapping={"a:other": 10, "w:other": 10})  # all of it
    client.script_load(scripts.ALLOT)  # each question is then one call

    def scripts_run() -> int:
        return client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

    async def scenario() -> list[int]:
        connection = redis.asyncio.Redis.from_url(job.server.url)
        own = {"host": 100.0}
        asked: list[asyncio.Future[None]] = []
        share = JobShare(
            FixedLimits(own.__getitem__),
            Gate(),
            connection,
            JobKeys(job.name),
            "me",
            lambda coroutine: asked.append(asyncio.ensure_future(coroutine)),
        )
        runs = [scripts_run()]

        async def requests() -> None:  # each asks the gate's limit, 20 ms apart
            for _ in range(15):
                assert share.limit("host") == 0
                await asyncio.sleep(0.02)
            await asyncio.gather(*asked)
            runs.append(scripts_run())

        await requests()  # refused: one question, not one every 50 ms
        own["host"] = 200.0
        await requests()  # its own limit wants more than it asked: one more
        await share.sync()  # the next round asks again
        runs.append(scripts_run())
        await connection.aclose()
        return [after - before for before, after in itertools.pairwise(runs)]

    assert asyncio.run(scenario()) == [1, 1, 1]


def test_taking_posts_looks_up_their_images_in_the_same_round_trip(
    redis_server, job, write_posts, tmp_path
):
    """The take answers the finds a post's images would make; the catalog asks Redis
    only for a post queued without its images' keys (by an earlier version)."""
    import asyncio

    import redis.asyncio

    from igimages.inputs import InputSpec, PostSource
    from igimages.job.catalog import JobCatalog
    from igimages.job.feeder import feed
    from igimages.job.keys import JobKeys
    from igimages.job.queue import PostQueue
    from igimages.keys import image_key
    from igimages.store.index import ImageIndex

    a, b, c = (image_key(f"https://cdn.example/{name}.jpg") for name in "abc")
    many = [f"https://cdn.example/m{n}.jpg" for n in range(1001)]  # looked up in parts
    posts = write_posts({"one": [f"https://cdn.example/{n}.jpg" for n in "ab"], "many": many})
    client = job.client()
    keys = JobKeys(job.name)
    feed(client, keys, PostSource(InputSpec.from_args({"posts": str(posts)})))
    many_keys = [image_key(url) for url in many]
    entries = {
        key: f'["elsewhere",0,"{key}","elsewhere/0_{key}.jpg","{sha}",9,1,1,"JPEG"]'.encode()
        for key, sha in ((b, "ab" * 32), (c, "cd" * 32), (many_keys[-1], "ef" * 32))
    }
    client.hset(keys.index, mapping=entries)
    # A post queued by an earlier version: no keys.
    payload = {"id": "old", "image_urls": ["https://cdn.example/c.jpg"]}
    client.hset(keys.posts, "old", json.dumps(payload))
    client.rpush(keys.queue, "old")

    async def scenario() -> tuple[dict, list]:
        connection = redis.asyncio.Redis.from_url(job.server.url)
        taken = await PostQueue(connection, keys, "me", 30).take(10)
        indexed = {each.post.id: each.indexed for each in taken}
        client.hdel(keys.index, b)  # gone since: the take's answer is the one used
        client.hset(keys.index, a, entries[b])  # and since recorded: not asked again
        index = ImageIndex.open(tmp_path / "index.sqlite3", lambda image: True, "test", "")
        catalog = JobCatalog(index, connection, keys, "me", pytest.fail, indexed)
        found = [
            await catalog.find("one", 0, a),
            await catalog.find("one", 1, b),
            await catalog.find("old", 0, c),  # asks Redis
        ]
        await connection.aclose()
        return indexed, found

    indexed, found = asyncio.run(scenario())
    many_indexed = {**dict.fromkeys(many_keys[:-1]), many_keys[-1]: entries[many_keys[-1]]}
    assert indexed == {"one": {a: None, b: entries[b]}, "many": many_indexed, "old": {}}
    paths = [image and image.path for image in found]
    assert paths == [None, f"elsewhere/0_{b}.jpg", f"elsewhere/0_{c}.jpg"]
    assert sorted(client.hkeys(keys.leases)) == [b"many", b"old", b"one"]


def test_one_acknowledgement_of_many_posts_records_each_once(redis_server, job):
    import asyncio

    import redis.asyncio

    from igimages.job.keys import JobKeys
    from igimages.job.queue import Finished, PostQueue, unpack_result

    client = job.client()
    keys = JobKeys(job.name)
    ids = [f"p{n}" for n in range(1001)]  # more than one part of the script's calls
    client.hset(keys.posts, mapping=dict.fromkeys(ids, "{}"))
    client.hset(keys.leases, mapping=dict.fromkeys(ids, "me"))
    stored = [{"position": 0, "status": "downloaded", "bytes": 10}]
    finished = [Finished(id, None, stored) for id in ids]
    failed = [{"position": 0, "status": "failed", "reason": "http_404"}]
    finished.append(Finished("p0", None, failed))  # twice in one call: the first counts

    async def acknowledge() -> int:
        connection = redis.asyncio.Redis.from_url(job.server.url)
        acked = await PostQueue(connection, keys, "me", 30).ack(finished)
        await connection.aclose()
        return acked

    assert asyncio.run(acknowledge()) == 1001
    assert client.hlen(keys.leases) == client.hlen(keys.posts) == 0
    assert client.hlen(keys.results) == 1001
    assert unpack_result(client.hget(keys.results, "p0"))["images"] == stored
    assert unpack_result(client.hget(keys.results, "p1000"))["images"] == stored
    counts = {k.decode(): int(v) for k, v in client.hgetall(keys.counts).items()}
    assert counts == {"posts/done": 1001, "images/downloaded": 1001, "bytes": 10_010}
    assert not client.smembers(keys.failed)
