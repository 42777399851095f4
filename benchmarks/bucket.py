"""Benchmark the bucket store against the local folder, at 100 in flight.

On run.py's corpus and healthy image server (100 ms per response), each
round runs ``scrapy-100`` twice, interleaved: into a folder in RAM, and into
``s3://`` on moto's S3 server on loopback. Both are measured from outside as
run.py does (wall time, CPU of the crawl process); every stored image is then
read back from the bucket and checked against the corpus by sha256, and the
uploads the S3 server saw are counted: one per distinct content.

    .venv/bin/python benchmarks/bucket.py --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import corpus
from run import CLIENTS, PROJECT, RAM, Server, child_env, ram_folder, warm_up

SETTINGS = [*CLIENTS["scrapy-100"], "AUTOTHROTTLE_ENABLED=False"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def crawl(posts: Path, store: str, extra: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of the crawl process, exit status."""
    command = [sys.executable, "-m", "scrapy", "crawl", "post_images", "-a", f"posts={posts}"]
    for setting in [f"IMAGES_STORE={store}", "LOG_LEVEL=WARNING", *SETTINGS, *extra]:
        command += ["-s", setting]
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT, env=child_env(), stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - began, usage.ru_utime + usage.ru_stime, status >> 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--posts", type=int, default=550)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--uploads", type=int, default=16, help="IGIMAGES_STORE_UPLOADS")
    args = parser.parse_args()
    data = corpus.load(args.posts, args.images, 1)
    work = Path(tempfile.mkdtemp(prefix="igimages-bucket-", dir=ram_folder()))
    print(f"corpus: {len(data.posts)} posts, {data.references} images; outputs in {work}")
    moto_port = free_port()
    moto_log = (work / "moto.log").open("w")
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=moto_log,
        stderr=subprocess.STDOUT,
    )
    server = Server(data.pool_dir, len(data.images), 0.1, 0.2)
    import botocore.session

    endpoint = f"http://127.0.0.1:{moto_port}"
    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, aws_access_key_id="bench",
        aws_secret_access_key="bench", region_name="us-east-1",
    )  # fmt: skip
    for _ in range(100):
        try:
            s3.create_bucket(Bucket="bench")
            break
        except Exception:
            time.sleep(0.1)
    s3_settings = [
        f"AWS_ENDPOINT_URL={endpoint}", "AWS_ACCESS_KEY_ID=bench",
        "AWS_SECRET_ACCESS_KEY=bench", "AWS_REGION_NAME=us-east-1",
        f"IGIMAGES_STORE_UPLOADS={args.uploads}",
    ]  # fmt: skip
    posts = work / "posts.json"
    data.write_posts(posts, server.base_url)
    expected = {image.sha256 for image in data.images}
    results: dict[str, list[tuple[float, float]]] = {"folder": [], "s3": []}
    try:
        warm_up()
        for round_ in range(1, args.rounds + 1):
            for store in ("folder", "s3"):
                server.stats()
                if store == "folder":
                    uri, extra = str(work / f"folder-r{round_}"), []
                else:
                    state = work / f"state-r{round_}"
                    uri, extra = (
                        f"s3://bench/r{round_}/",
                        [*s3_settings, f"IGIMAGES_STATE_DIR={state}"],
                    )
                moto_log.flush()
                puts_before = _count_puts(work / "moto.log")
                wall, cpu, status = crawl(posts, uri, extra)
                seen = server.stats()
                problems = [] if status == 0 else [f"exit status {status}"]
                line = f"round {round_} {store:6} {data.references / wall:7.1f} img/s, "
                line += f"{1000 * cpu / data.references:.2f} CPU ms/img, wall {wall:.2f} s"
                if store == "s3":
                    stored = _check_bucket(s3, f"r{round_}/", expected, problems)
                    puts = _count_puts(work / "moto.log") - puts_before
                    line += f", {stored} objects, {puts} PUTs (uploads and copies)"
                line += f", {seen.get('requests', '?')} requests" + (
                    f"  PROBLEMS: {problems}" if problems else ""
                )
                print(line, flush=True)
                results[store].append((data.references / wall, 1000 * cpu / data.references))
    finally:
        server.stop()
        moto.terminate()
        moto.wait(10)
    folder = statistics.median(rate for rate, _ in results["folder"])
    bucket = statistics.median(rate for rate, _ in results["s3"])
    print(
        f"\nmedians: folder {folder:.1f} img/s, s3 {bucket:.1f} img/s: "
        f"s3 = {bucket / folder:.2f}x folder (target 0.8x) "
        f"[{'met' if bucket >= 0.8 * folder else 'NOT MET'}]; CPU ms/img "
        f"{statistics.median(c for _, c in results['folder']):.2f} vs "
        f"{statistics.median(c for _, c in results['s3']):.2f}"
    )
    print(json.dumps({"outputs": "ram" if work.parent == RAM else "disk"}))


def _count_puts(log: Path) -> int:
    return len(re.findall(r'"PUT /bench/r\d+/[^ ]*\.(?:jpg|png|webp|gif) ', log.read_text()))


def _check_bucket(s3, prefix: str, expected: set[str], problems: list[str]) -> int:
    """Every stored image's sha256 is one of the corpus's; returns the image objects counted."""
    token: dict[str, str] = {}
    count = 0
    while True:
        page = s3.list_objects_v2(Bucket="bench", Prefix=prefix, **token)
        for entry in page.get("Contents", []):
            key = entry["Key"]
            if "/." in key or key.endswith((".jsonl", ".json")):
                continue
            body = s3.get_object(Bucket="bench", Key=key)["Body"].read()
            if hashlib.sha256(body).hexdigest() not in expected:
                problems.append(f"{key}: bytes differ from every corpus image")
            count += 1
        if not page.get("IsTruncated"):
            return count
        token = {"ContinuationToken": page["NextContinuationToken"]}


if __name__ == "__main__":
    main()
