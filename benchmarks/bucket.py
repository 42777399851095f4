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
    parser.add_argument(
        "--uploads", default="16", help="IGIMAGES_STORE_UPLOADS values, comma-separated"
    )
    args = parser.parse_args()
    pools = [int(n) for n in args.uploads.split(",")]
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
    endpoint = f"http://127.0.0.1:{moto_port}"
    s3 = _client(endpoint)
    posts = work / "posts.json"
    data.write_posts(posts, server.base_url)
    expected = {image.sha256 for image in data.images}
    stores = ["folder", *(f"s3-{n}" for n in pools)]
    results: dict[str, list[tuple[float, float, float, float]]] = {store: [] for store in stores}
    n = data.references
    try:
        warm_up()
        for round_ in range(1, args.rounds + 1):
            for store in stores:
                uri, extra = str(work / f"{store}-r{round_}"), []
                if store != "folder":
                    uri = f"s3://bench/{store}-r{round_}/"
                    extra = [
                        f"AWS_ENDPOINT_URL={endpoint}", "AWS_ACCESS_KEY_ID=bench",
                        "AWS_SECRET_ACCESS_KEY=bench", "AWS_REGION_NAME=us-east-1",
                        f"IGIMAGES_STORE_UPLOADS={store.removeprefix('s3-')}",
                        f"IGIMAGES_STATE_DIR={work / f'state-{store}-r{round_}'}",
                    ]  # fmt: skip
                moto_log.flush()
                puts_before = _count_puts(work / "moto.log")
                others_before = _cpu(moto.pid), _cpu(server.process.pid)
                wall, cpu, status = crawl(posts, uri, extra)
                moto_cpu = _cpu(moto.pid) - others_before[0]
                server_cpu = _cpu(server.process.pid) - others_before[1]
                problems = [] if status == 0 else [f"exit status {status}"]
                line = (
                    f"round {round_} {store:7} {n / wall:6.1f} img/s; CPU ms/img: crawl "
                    f"{1000 * cpu / n:.2f}, S3 server {1000 * moto_cpu / n:.2f}, "
                    f"image server {1000 * server_cpu / n:.2f}"
                )
                if store != "folder":
                    stored = _check_bucket(s3, uri.removeprefix("s3://bench/"), expected, problems)
                    puts = _count_puts(work / "moto.log") - puts_before
                    line += f"; {stored} objects, {puts} PUTs (uploads and copies)"
                print(line + (f"  PROBLEMS: {problems}" if problems else ""), flush=True)
                results[store].append(
                    (n / wall, 1000 * cpu / n, 1000 * moto_cpu / n, 1000 * server_cpu / n)
                )
    finally:
        server.stop()
        moto.terminate()
        moto.wait(10)
    folder = statistics.median(r[0] for r in results["folder"])
    print("\nmedians (img/s; CPU ms per image: crawl, S3 server, image server):")
    for store in stores:
        rate, crawl_cpu, moto_cpu, server_cpu = (
            statistics.median(r[i] for r in results[store]) for i in range(4)
        )
        met = "met" if rate >= 0.8 * folder else "NOT MET"
        verdict = "" if store == "folder" else f"  = {rate / folder:.2f}x folder [{met}: 0.8x]"
        print(
            f"  {store:7} {rate:6.1f}; {crawl_cpu:.2f}, {moto_cpu:.2f}, {server_cpu:.2f}{verdict}"
        )
    print(f"outputs: {'ram' if work.parent == RAM else 'disk'}")


def _client(endpoint: str):
    import botocore.session

    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, aws_access_key_id="bench",
        aws_secret_access_key="bench", region_name="us-east-1",
    )  # fmt: skip
    for _ in range(100):
        try:
            s3.create_bucket(Bucket="bench")
            return s3
        except Exception:
            time.sleep(0.1)
    raise SystemExit("moto's S3 server did not start")


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count_puts(log: Path) -> int:
    """PUTs of image objects (uploads and server-side copies) moto has logged."""
    return len(re.findall(r'"PUT /bench/[^ ]*\.(?:jpg|png|webp|gif) ', log.read_text()))


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
