"""Benchmark ``scrapy crawl post_images`` against the two reference clients.

One invocation generates (or reuses) the corpus, then, in each world (a
healthy host, a link capped at 300 Mbit/s, a host that throttles above 16 in
flight, with or without ``Retry-After``, its 429s as slow as its images or
quick), starts the image server on 127.0.0.1 in its own process and runs
that world's clients one after another, interleaved in rounds, each in its
own process from an empty folder, and measures each from outside: wall time
from spawn to exit, CPU (user + system) and peak RSS of that process alone
(``os.wait4``). Every stored file is then checked byte for byte against the
corpus. Last, one more crawl with the default settings in the throttling and
the link-capped worlds logs each change of its per-host limit, drawn against
what the server saw in ``benchmarks/adaptive-limit.png``. See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, TextIO

import corpus
from refclients import target_path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
DEFAULT_POSTS = 550
LARGE_POSTS = 5_000  # above this only the crawl runs: the references would copy every image
REFERENCES = ("seed", "aiohttp")
CLIENTS: dict[str, list[str]] = {  # name -> scrapy settings it overrides
    "seed": [],
    "aiohttp": [],
    "scrapy-default": [],
    "scrapy-12": ["CONCURRENT_REQUESTS=12", "CONCURRENT_REQUESTS_PER_DOMAIN=12"],
    "scrapy-16": ["CONCURRENT_REQUESTS=16", "CONCURRENT_REQUESTS_PER_DOMAIN=16"],
    "scrapy-100": ["CONCURRENT_REQUESTS=100", "CONCURRENT_REQUESTS_PER_DOMAIN=100"],
    # Workers of one job on a local redis-server (REDIS_URL), 100 in flight for
    # the whole job on the one host (the job-wide per-host ceiling), 100 each overall.
    "workers-1": ["CONCURRENT_REQUESTS=100", "CONCURRENT_REQUESTS_PER_DOMAIN=100"],
    "workers-2": ["CONCURRENT_REQUESTS=100", "CONCURRENT_REQUESTS_PER_DOMAIN=100"],
    "workers-4": ["CONCURRENT_REQUESTS=100", "CONCURRENT_REQUESTS_PER_DOMAIN=100"],
    # Scrapy alone: the same route and components, nothing done to the images.
    "floor-12": ["CONCURRENT_REQUESTS=12", "CONCURRENT_REQUESTS_PER_DOMAIN=12"],
    "floor-100": ["CONCURRENT_REQUESTS=100", "CONCURRENT_REQUESTS_PER_DOMAIN=100"],
}
PROCESSES = {"workers-1": 1, "workers-2": 2, "workers-4": 4}  # a job's workers
CRAWLS = ("scrapy-default", "scrapy-12", "scrapy-16", "scrapy-100", *PROCESSES)
FLOORS = ("floor-12", "floor-100")  # floor.py: what Scrapy costs before igimages does anything
PYCACHE = HERE / ".cache" / "pycache"
RAM = Path("/dev/shm")
RERUN = "scrapy-cached"  # scrapy-default again, over the folder it has just finished
BASELINE = "@baseline"  # a crawl client again, run from the --baseline checkout
BASELINES = ("scrapy-default", "scrapy-12", "scrapy-16", "scrapy-100", *PROCESSES)  # it runs these
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
VERSIONS = ("scrapy", "twisted", "aiohttp", "requests", "pillow")
BUSY = 0.1  # cores used by other processes that make a run's figures suspect
PLOT = HERE / "adaptive-limit.png"
#: A line of the crawl's log with AUTOTHROTTLE_DEBUG, as LIMIT_LOG_FORMAT writes it.
LIMIT_LOG_FORMAT = "%(created).3f %(message)s"
LIMIT_LINE = re.compile(r"^(\d+\.\d+) limit \S+ (\d+) -> (\d+) \((\w+);", re.MULTILINE)


@dataclass(frozen=True)
class World:
    """What the server is like, and which clients run against it."""

    name: str
    title: str
    clients: tuple[str, ...]
    latency: float | None = None  # seconds per response; None: --latency
    link_mbit: float = 0.0  # the link all responses share (0: no cap)
    refuse_above: int = 0  # requests being served above which the host answers 429
    retry_after: float | None = None  # the Retry-After of its 429s, if any
    refusal_latency: float | None = None  # before a 429, if not the latency


WORLDS = {
    world.name: world
    for world in (
        World("healthy", "a healthy host", tuple(CLIENTS)),
        World(
            "link",
            "a link capped at 300 Mbit/s, 50 ms",
            ("seed", "aiohttp", "scrapy-default"),
            latency=0.05,
            link_mbit=300,
        ),
        World(
            "throttle",
            "a host that answers 429 above 16 in flight, 100 ms",
            ("seed", "scrapy-default", "scrapy-16"),
            latency=0.1,
            refuse_above=16,
        ),
        World(
            "throttle-pause",
            "the same host, its 429s with Retry-After: 1",
            ("scrapy-default", "scrapy-16"),
            latency=0.1,
            refuse_above=16,
            retry_after=1.0,
        ),
        World(
            "throttle-quick",
            "the throttling host, its 429s answered in 5 ms",
            ("scrapy-default", "scrapy-16"),
            latency=0.1,
            refuse_above=16,
            refusal_latency=0.005,
        ),
        World(
            "throttle-pause-quick",
            "the same, each 429 with Retry-After: 1",
            ("scrapy-default", "scrapy-16"),
            latency=0.1,
            refuse_above=16,
            retry_after=1.0,
            refusal_latency=0.005,
        ),
    )
}


@dataclass
class Run:
    """One client process, as measured from outside, and what it stored."""

    client: str
    round: int
    world: str
    posts: int
    images: int  # every image of every post: files the client must leave
    wall: float  # seconds, spawn to exit
    cpu: float  # seconds, user + system
    cpu_sys: float  # seconds, system alone: the kernel's part (sockets, files)
    rss_mib: float  # the sum of the processes' peaks when there are several
    exit_status: int
    server: dict[str, Any]
    start: float | None  # spawn to the server's first request
    tail: float | None  # the server's last response to the client's exit
    others: float | None  # CPU cores used on average by other processes meanwhile
    problems: list[str] = field(default_factory=list)  # bytes or exit status wrong
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # the crawl's summary.json

    @property
    def rate(self) -> float:
        return self.images / self.wall

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.images


class Server:
    """The image server process (server.py) and its counters."""

    def __init__(
        self,
        pool: Path,
        images: int,
        latency: float,
        connect_latency: float,
        link_mbit: float = 0.0,
        refuse_above: int = 0,
        retry_after: float | None = None,
        refusal_latency: float | None = None,
    ) -> None:
        command = [sys.executable, str(HERE / "server.py"), "--pool", str(pool)]
        command += ["--images", str(images), "--latency", str(latency)]
        command += ["--connect-latency", str(connect_latency)]
        command += ["--link-mbit", str(link_mbit), "--refuse-above", str(refuse_above)]
        if retry_after is not None:
            command += ["--retry-after", str(retry_after)]
        if refusal_latency is not None:
            command += ["--refusal-latency", str(refusal_latency)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE
        )
        self.stdin: TextIO = self.process.stdin  # type: ignore[assignment]
        self.stdout: TextIO = self.process.stdout  # type: ignore[assignment]
        hello = json.loads(self.stdout.readline() or "null")
        if not hello:
            raise SystemExit("the image server did not start")
        self.base_url = f"http://127.0.0.1:{hello['port']}"

    def stats(self, timeline: bool = False) -> dict[str, Any]:
        """Counters since the previous call (and each answer's time, status, in flight)."""
        self.stdin.write("stats timeline\n" if timeline else "stats\n")
        self.stdin.flush()
        return json.loads(self.stdout.readline())

    def stop(self) -> None:
        self.stdin.close()
        self.process.wait(timeout=10)


class RedisServer:
    """A redis-server for the worker clients, started when one is run."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit(
                "the worker clients need redis-server (scripts/install-system-packages.sh)"
            )
        command = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        self.process = subprocess.Popen(
            [*command, "--appendonly", "no"], stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir()
        )
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def counters(self) -> dict[str, float]:
        """Its CPU seconds, commands and network bytes so far."""
        import redis

        client = redis.Redis(port=self.port)
        info = client.info()
        keys = (
            "total_commands_processed", "total_net_input_bytes", "total_net_output_bytes",
            "total_reads_processed",  # reads of a client's socket: round trips, about
        )  # fmt: skip
        calls: dict[str, float] = {}
        for name, stats in client.info("commandstats").items():  # their scripts' calls too
            command = name.removeprefix("cmdstat_")
            calls[f"calls:{command}"], calls[f"usec:{command}"] = stats["calls"], stats["usec"]
        scripts = calls.get("calls:evalsha", 0)
        return {"cpu": self.cpu(), "scripts": scripts, **{k: info[k] for k in keys}, **calls}

    def kept(self, job: str) -> int:
        """The bytes the job ``job`` keeps in Redis: its keys' own, every field counted."""
        import redis

        client = redis.Redis(port=self.port)
        return sum(
            client.memory_usage(key, samples=0) or 0
            for key in client.scan_iter(f"igimages:{job}:*", count=1000)
        )

    def cpu(self) -> float:
        """CPU seconds (user + system) it has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


REDIS: RedisServer  # started by main() when a worker client runs
BASELINE_PROJECT: Path | None = None  # --baseline: another revision's checkout
CRAWL_SETTINGS: list[str] = []  # --set: for every crawl client


def child_env() -> dict[str, str]:
    """The environment for clients, as on an ordinary install.

    No proxy, so every request stays on loopback; and compiled modules cached
    (in benchmarks/.cache/), even where PYTHONDONTWRITEBYTECODE is set, so
    that no client compiles its source again at every start.
    """
    names = {*PROXY_VARIABLES, *(name.upper() for name in PROXY_VARIABLES)}
    names.add("PYTHONDONTWRITEBYTECODE")
    env = {name: value for name, value in os.environ.items() if name not in names}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def warm_up() -> None:
    """Compile and load every client's modules once, so the first client is not penalised."""
    imports = "import scrapy, twisted, PIL, aiohttp, requests"
    subprocess.run([sys.executable, "-c", imports], check=True, env=child_env())
    for project in filter(None, (PROJECT, BASELINE_PROJECT)):
        compile_all = [sys.executable, "-m", "compileall", "-q", str(project / "igimages")]
        subprocess.run(compile_all, check=True, env=child_env(), stdout=subprocess.DEVNULL)


def ram_folder() -> Path | None:
    """A RAM-backed folder for the outputs, if the machine has one with room.

    Writing to a virtual machine's disk costs the writer a varying amount of
    kernel CPU (about 1 ms per image here, but from 0.3 to 2 ms from one run
    to the next), the same for every client; in RAM the figures are the
    clients' own, and steady. ``--work-dir`` on a disk measures with it.
    """
    try:
        return RAM if shutil.disk_usage(RAM).free > 4 * 2**30 else None
    except OSError:
        return None


def busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent in user mode since boot (Linux), or None.

    Compared with the client's and the server's own, it shows whether another
    program ran during a measurement and took a core from it. Kernel time is
    left out: the kernel threads that write the client's files back to disk
    and carry loopback traffic work for the measurement.
    """
    try:
        with open("/proc/stat") as stat:
            user, nice = map(int, stat.readline().split()[1:3])
    except (OSError, ValueError):
        return None
    return (user + nice) / os.sysconf("SC_CLK_TCK")


def commands(
    client: str, posts_file: Path, out: Path, extra: tuple[str, ...] = ()
) -> list[list[str]]:
    """The client's processes, started together (``extra``: more Scrapy settings)."""
    if client in REFERENCES:
        script = str(HERE / "refclients.py")
        return [[sys.executable, script, client, "--posts", str(posts_file), "--out", str(out)]]
    args = [sys.executable, "-m", "scrapy"]
    if client in FLOORS:
        args += ["runspider", str(HERE / "floor.py")]
    else:
        args += ["crawl", "post_images"]
    args += ["-a", f"posts={posts_file}", "-s", f"IMAGES_STORE={out}"]
    name = client.removesuffix(BASELINE)
    settings = CLIENTS["scrapy-default" if name == RERUN else name]
    if settings:
        settings = [*settings, "AUTOTHROTTLE_ENABLED=False"]
    for setting in [*settings, *CRAWL_SETTINGS, *extra]:
        args += ["-s", setting]
    if name not in PROCESSES:
        return [args]
    # The first worker queues the posts; the others take them from the job.
    args += ["-s", f"REDIS_URL={REDIS.url}", "-s", f"IGIMAGES_JOB={out.name}"]
    others = [arg for n, arg in enumerate(args) if arg != "-a" and args[n - 1] != "-a"]
    return [args, *[others] * (PROCESSES[name] - 1)]


def measure(
    client: str,
    round_: int,
    data: corpus.Corpus,
    posts_file: Path,
    out: Path,
    server: Server,
    world: str = "healthy",
    extra: tuple[str, ...] = (),
) -> Run:
    """Run one client's processes to their end; everything is measured from outside.

    ``extra`` settings (the limit trace's logging) keep the server's timeline
    of the run in ``Run.server``.
    """
    server.stats()  # start the server's counters afresh
    job = client.removesuffix(BASELINE) in PROCESSES  # workers of a job: Redis measured too
    with open(out.with_name(out.name + ".log"), "ab") as log:
        busy_before = busy_seconds()
        redis_before = REDIS.counters() if job else {}
        started_at, started = time.time(), time.perf_counter()
        processes = [
            subprocess.Popen(
                args,
                cwd=BASELINE_PROJECT if client.endswith(BASELINE) else PROJECT,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for args in commands(client, posts_file, out, extra)
        ]
        usages, statuses, peaks = wait_all(processes)
        wall, ended_at = time.perf_counter() - started, time.time()
        busy_after = busy_seconds()
        redis = {}
        if job:
            redis = {k: v - redis_before.get(k, 0) for k, v in REDIS.counters().items()}
            redis["kept"] = REDIS.kept(out.name)  # the job's name (commands())
    stats = server.stats(timeline=bool(extra))
    stats["started"] = started_at
    user = sum(usage.ru_utime for usage in usages)
    system = sum(usage.ru_stime for usage in usages)
    cpu = user + system
    others = None
    if busy_before is not None and busy_after is not None:
        own = user + stats["user_seconds"] + redis.get("cpu", 0.0)
        others = max(0.0, busy_after - busy_before - own) / wall
    run = Run(
        client=client,
        round=round_,
        world=world,
        posts=len(data.posts),
        images=data.references,
        wall=wall,
        cpu=cpu,
        cpu_sys=system,
        rss_mib=sum(peaks) / 1024,
        exit_status=max(statuses),
        server=stats,
        start=stats["first_request"] - started_at if stats["first_request"] else None,
        tail=ended_at - stats["last_response"] if stats["last_response"] else None,
        others=others,
    )
    if run.exit_status:
        run.problems.append(f"exit status {run.exit_status}, see {log.name}")
    run.problems += check(client, data, out)
    if client in (*REFERENCES, *FLOORS):
        return run
    for path in out.glob("summary*.json"):  # one per process
        for key, value in (_read_json(path) or {}).items():
            if isinstance(value, int | float):
                run.summary[key] = run.summary.get(key, 0) + value
    counts = {
        status: run.summary.get(f"images/{status}", 0)
        for status in ("downloaded", "duplicate", "cached", "failed")
    }
    run.notes.append(", ".join(f"{count} {status}" for status, count in counts.items() if count))
    if job:  # what the job's Redis did per image
        per_image = {k: v / run.images for k, v in redis.items()}
        calls = sorted(
            ((k.removeprefix("calls:"), v) for k, v in per_image.items() if k.startswith("calls:")),
            key=lambda call: -call[1],
        )
        run.summary["redis_per_image"] = per_image
        run.notes.append(
            f"per image: image server {1000 * stats['user_seconds'] / run.images:.2f} CPU ms, "
            f"Redis {1000 * per_image['cpu']:.2f} CPU ms, "
            f"{per_image['total_commands_processed']:.1f} commands "
            f"({per_image['scripts']:.1f} script calls) in "
            f"{per_image['total_reads_processed']:.2f} reads, "
            f"{per_image['total_net_input_bytes']:.0f} B in, "
            f"{per_image['total_net_output_bytes']:.0f} B out, "
            f"{per_image['kept']:.0f} B kept; "
            + ", ".join(
                f"{name} {count:.2f} ({per_image[f'usec:{name}']:.1f} us)"
                for name, count in calls
                if count >= 0.005
            )
        )
    if client == RERUN and stats["requests"]:
        run.problems.append(f"the re-run made {stats['requests']} requests")
    return run


def wait_all(
    processes: list[subprocess.Popen],
) -> tuple[list[os.struct_rusage], list[int], list[int]]:
    """Wait for the processes; their rusage, exit statuses and peak RSS in KiB.

    The peak is the kernel's high-water mark of each process's own memory
    (``VmHWM``), read until it exits. ``ru_maxrss`` would not do: a child
    started with fork or vfork keeps the high-water mark of this process's
    memory from before its ``exec``, and this process holds the corpus.
    """
    usages: dict[int, os.struct_rusage] = {}
    statuses: dict[int, int] = {}
    peaks = dict.fromkeys((process.pid for process in processes), 0)
    while len(usages) < len(processes):
        for process in processes:
            if process.pid in usages:
                continue
            peaks[process.pid] = max(peaks[process.pid], _high_water_kib(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = statuses[pid] = os.waitstatus_to_exitcode(status)
                usages[pid] = usage
        time.sleep(0.01)
    pids = [process.pid for process in processes]
    return [usages[p] for p in pids], [statuses[p] for p in pids], [peaks[p] for p in pids]


def _high_water_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def check(client: str, data: corpus.Corpus, out: Path) -> list[str]:
    """Every image of every post is stored, with the corpus's exact bytes."""
    hashes: dict[tuple[int, int], str] = {}  # by inode: hard links are read once

    def sha256(path: Path) -> str:
        try:
            stat = path.stat()
            key = (stat.st_dev, stat.st_ino)
            if key not in hashes:
                hashes[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            return hashes[key]
        except OSError as exc:
            return f"unreadable ({exc.strerror})"

    problems: list[str] = []
    if client in FLOORS:  # bodies dropped: every distinct URL answered, with its size
        refs = (ref for post in data.posts for ref in post.refs)
        sizes = {ref.target: data.images[ref.image].size for ref in refs}
        want = {"ok": len(sizes), "bytes": sum(sizes.values())}
        counts = _read_json(out / "floor.json") or {}
        if {key: counts.get(key) for key in want} != want:
            problems.append(f"floor.json says {counts}, not {want}")
        return problems
    if client in REFERENCES:
        for post in data.posts:
            for number, ref in enumerate(post.refs, start=1):
                path = target_path(out, post.id, number, ref.target)
                if sha256(path) != data.images[ref.image].sha256:
                    problems.append(f"{path.relative_to(out)}: not the corpus's bytes")
        return problems
    manifest: dict[str, list[dict[str, Any]]] = {}
    paths = sorted(out.glob("manifest*.jsonl"))  # one per process
    if not paths:
        return ["no manifest"]
    for path in paths:
        try:
            with open(path, encoding="utf-8") as lines:
                for line in lines:
                    entry = json.loads(line)
                    if entry["id"] in manifest:
                        problems.append(f"post {entry['id']} is in the manifests twice")
                    images = sorted(entry["images"], key=lambda i: i["position"])
                    manifest[entry["id"]] = images
        except (OSError, ValueError, KeyError) as exc:
            return [f"{path.name} unreadable: {exc}"]
    for post_id, expected in data.expected().items():
        images = manifest.get(post_id, [])
        if len(images) != len(expected):
            problems.append(f"post {post_id}: {len(images)} images, not {len(expected)}")
            continue
        for image, want in zip(images, expected, strict=True):
            if image["status"] not in ("downloaded", "duplicate", "cached"):
                problems.append(f"post {post_id} image {image['position']}: {image['status']}")
            elif image["sha256"] != want or sha256(out / image["path"]) != want:
                problems.append(f"{image['path']}: not the corpus's bytes")
    return problems


def summarise(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per client: the median over rounds, but the worst peak RSS and tail."""
    table: dict[str, dict[str, Any]] = {}
    for client in dict.fromkeys(run.client for run in runs):
        mine = [run for run in runs if run.client == client]
        starts = [run.start for run in mine if run.start is not None]
        tails = [run.tail for run in mine if run.tail is not None]
        table[client] = {
            "images": mine[0].images,
            "rounds": len(mine),
            "wall_s": statistics.median(run.wall for run in mine),
            "images_per_s": statistics.median(run.rate for run in mine),
            "cpu_ms_per_image": statistics.median(run.cpu_ms for run in mine),
            "sys_ms_per_image": statistics.median(1000 * run.cpu_sys / run.images for run in mine),
            "peak_rss_mib": max(run.rss_mib for run in mine),
            "start_s": statistics.median(starts) if starts else None,
            "tail_s": max(tails) if tails else None,
            "requests": statistics.median(run.server["requests"] for run in mine),
            "refused": statistics.median(run.server.get("refused", 0) for run in mine),
            "server_in_flight": max(run.server["max_in_flight"] for run in mine),
            "server_cpu_ms_per_image": statistics.median(
                1000 * run.server["cpu_seconds"] / run.images for run in mine
            ),
            "bytes_ok": not any(run.problems for run in mine),
            "redis_per_image": _median_counters(
                [run.summary["redis_per_image"] for run in mine if "redis_per_image" in run.summary]
            ),
            "notes": mine[-1].notes,
            "others_cores": max((run.others or 0.0) for run in mine),
        }
    return table


def _median_counters(counters: list[dict[str, float]]) -> dict[str, float] | None:
    """Each counter's median over the rounds (None: none measured)."""
    if not counters:
        return None
    keys = dict.fromkeys(key for c in counters for key in c)  # a rare command in some rounds only
    return {key: statistics.median(c.get(key, 0) for c in counters) for key in keys}


def print_table(table: dict[str, dict[str, Any]]) -> None:
    seed, aio = table.get("seed"), table.get("aiohttp")

    def ratio(client: str, ref: dict[str, Any] | None, key: str) -> str:
        row = table[client]
        return "-" if ref is None or ref is row or client == RERUN else f"{row[key] / ref[key]:.2f}"

    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    columns = (
        ("client", 14, lambda c, r: c),
        ("img/s", 7, lambda c, r: f"{r['images_per_s']:.1f}"),
        ("CPU ms/img", 10, lambda c, r: f"{r['cpu_ms_per_image']:.2f}"),
        ("RSS MiB", 7, lambda c, r: f"{r['peak_rss_mib']:.0f}"),
        ("x seed", 6, lambda c, r: ratio(c, seed, "images_per_s")),
        ("x aiohttp", 9, lambda c, r: ratio(c, aio, "images_per_s")),
        ("CPU x seed", 10, lambda c, r: ratio(c, seed, "cpu_ms_per_image")),
        ("wall s", 6, lambda c, r: f"{r['wall_s']:.2f}"),
        ("start s", 7, lambda c, r: num(r["start_s"], ".2f")),
        ("tail s", 6, lambda c, r: num(r["tail_s"], ".2f")),
        ("in flight", 9, lambda c, r: str(r["server_in_flight"])),
        ("bytes", 5, lambda c, r: "OK" if r["bytes_ok"] else "FAIL"),  # floors: sizes only
    )
    print("  ".join(f"{name:<{width}}" for name, width, _ in columns).rstrip())
    for client, row in table.items():
        cells = [(cell(client, row), width) for _, width, cell in columns]
        print("  ".join(f"{text:<{width}}" for text, width in cells).rstrip())


def targets(
    tables: dict[str, dict[str, dict[str, Any]]], large: dict[str, Any] | None
) -> list[dict]:
    """The issues' targets, each met (True), not met (False) or not measured (None)."""
    goals: list[dict[str, Any]] = []
    table = tables.get("healthy", {})

    def goal(name: str, met: bool | None, figures: str = "") -> None:
        goals.append({"target": name, "met": met, "figures": figures})

    def get(client: str, key: str, world: str = "healthy") -> float:
        return tables.get(world, {}).get(client, {}).get(key) or 0.0

    rate_aio = get("aiohttp", "images_per_s")
    name = "100 in flight: images/s >= 1.0x aiohttp's"
    rates = {c: get(c, "images_per_s") for c in ("scrapy-100", *PROCESSES) if c in table}
    if rates and rate_aio:
        figures = ", ".join(
            f"{client} {rate:.1f} ({rate / rate_aio:.2f}x)" for client, rate in rates.items()
        )
        figures += f" vs aiohttp {rate_aio:.1f}"
        if floor := get("floor-100", "images_per_s"):
            figures += f"; Scrapy's floor: floor-100 {floor:.1f} ({floor / rate_aio:.2f}x)"
        goal(name, max(rates.values()) >= rate_aio, figures)
    else:
        goal(name, None, "not run")

    rate12, rate_seed = get("scrapy-12", "images_per_s"), get("seed", "images_per_s")
    cpu12, cpu_seed = get("scrapy-12", "cpu_ms_per_image"), get("seed", "cpu_ms_per_image")
    name = "12 in flight: images/s >= 1.0x seed's, at < 0.5x its CPU per image"
    if rate12 and rate_seed:
        speed, cpu = rate12 / rate_seed, cpu12 / cpu_seed
        figures = (
            f"{rate12:.1f} vs {rate_seed:.1f} images/s ({speed:.2f}x), "
            f"{cpu12:.2f} vs {cpu_seed:.2f} CPU ms/image ({cpu:.2f}x)"
        )
        if floor := get("floor-12", "cpu_ms_per_image"):
            figures += f"; Scrapy's floor: floor-12 {floor:.2f} ({floor / cpu_seed:.2f}x)"
        goal(name, speed >= 1 and cpu < 0.5, figures)
    else:
        goal(name, None, "not run")

    name = "defaults, healthy host: images/s >= 3x the seed's"
    if (rate := get("scrapy-default", "images_per_s")) and rate_seed:
        figures = f"{rate:.1f} vs {rate_seed:.1f} images/s ({rate / rate_seed:.2f}x)"
        figures += f", {rate / rate_aio:.2f}x aiohttp" if rate_aio else ""
        if rate100 := get("scrapy-100", "images_per_s"):
            figures += f"; fixed at 100: {rate100:.1f} ({rate100 / rate_seed:.2f}x)"
        goal(name, rate >= 3 * rate_seed, figures)
    else:
        goal(name, None, "not run")

    name = "defaults, healthy host: images/s >= 0.9x fixed at 100"
    if (rate := get("scrapy-default", "images_per_s")) and (
        rate100 := get("scrapy-100", "images_per_s")
    ):
        goal(
            name,
            rate >= 0.9 * rate100,
            f"{rate:.1f} vs {rate100:.1f} images/s ({rate / rate100:.2f}x)",
        )
    else:
        goal(name, None, "not run")

    name = "defaults, link capped at 300 Mbit/s: images/s >= 0.9x aiohttp's"
    rate, rate_aio_link = (get(c, "images_per_s", "link") for c in ("scrapy-default", "aiohttp"))
    if rate and rate_aio_link:
        figures = f"{rate:.1f} vs {rate_aio_link:.1f} images/s ({rate / rate_aio_link:.2f}x)"
        if seed_link := get("seed", "images_per_s", "link"):
            figures += f", {rate / seed_link:.2f}x seed"
        goal(name, rate >= 0.9 * rate_aio_link, figures)
    else:
        goal(name, None, "not run")

    for world, pause in (
        ("throttle", ""),
        ("throttle-pause", ", each 429 a 1 s pause"),
        ("throttle-quick", ", 429s in 5 ms"),
        ("throttle-pause-quick", ", 429s in 5 ms, each a 1 s pause"),
    ):
        name = f"defaults, host throttling above 16{pause}: 429s <= 2% of images, "
        name += "wall <= 1.25x fixed at 16"
        wall, wall16 = (get(c, "wall_s", world) for c in ("scrapy-default", "scrapy-16"))
        if wall and wall16:
            row = tables[world]["scrapy-default"]
            share = row["refused"] / row["images"]
            figures = (
                f"{row['refused']:.0f} 429s for {row['images']} images ({100 * share:.1f}%), "
                f"{wall:.2f} vs {wall16:.2f} s ({wall / wall16:.2f}x)"
            )
            if refused16 := get("scrapy-16", "refused", world):
                figures += f"; fixed at 16 got {refused16:.0f} 429s"
            goal(name, share <= 0.02 and wall <= 1.25 * wall16, figures)
        else:
            goal(name, None, "not run")

    crawls = [client for client in CRAWLS if client in table]
    cpus = {client: table[client]["cpu_ms_per_image"] for client in crawls}
    figures = ", ".join(f"{client} {value:.2f}" for client, value in cpus.items())
    if floors := {c: table[c]["cpu_ms_per_image"] for c in FLOORS if c in table}:
        figures += "; Scrapy's floor: " + ", ".join(f"{c} {v:.2f}" for c, v in floors.items())
    goal(
        "at most 1.5 CPU ms per image",
        all(value <= 1.5 for value in cpus.values()) if cpus else None,
        figures,
    )
    # Per process: a split crawl's processes (their sum is in the table) each
    # hold the same bounded state.
    rss = {c: table[c]["peak_rss_mib"] for c in (*crawls, RERUN) if c in table}
    per_process = {c: value / PROCESSES.get(c, 1) for c, value in rss.items()}
    goal(
        "peak RSS at most 150 MiB (per process)",
        all(value <= 150 for value in per_process.values()) if rss else None,
        ", ".join(
            f"{c} {value:.0f} MiB" + (f" (sum of {PROCESSES[c]})" if c in PROCESSES else "")
            for c, value in rss.items()
        ),
    )
    goals += job_targets(table)
    if large:
        goal(
            f"peak RSS at {large['posts']} posts within 20% of it at {large['base_posts']}",
            large["ratio"] <= 1.2,
            f"{large['client']} {large['rss_mib']:.0f} vs {large['base_rss_mib']:.0f} MiB "
            f"({large['ratio']:.2f}x)",
        )
    else:
        goal("peak RSS at 100,000 posts within 20%", None, "run with --posts 100000 --latency 0")
    if RERUN in table:
        wall = table[RERUN]["wall_s"]
        goal("re-run over the finished folder in at most 3 s", wall <= 3, f"{wall:.2f} s")
    tails = {c: table[c]["tail_s"] for c in crawls if table[c]["tail_s"] is not None}
    goal(
        "crawl ends within 1 s of its last image",
        all(value <= 1 for value in tails.values()) if tails else None,
        ", ".join(f"{client} {value:.2f} s" for client, value in tails.items()),
    )
    failed = [
        f"{client} ({world})"
        for world, rows in tables.items()
        for client, row in rows.items()
        if not row["bytes_ok"]
    ]
    goal("every stored file byte for byte", not failed, ", ".join(failed) or "every client")
    return goals


WORKER_CPU_RATIO = 1.15  # a worker's CPU per image, at most, over a plain crawl's
WORKER_CPU_IMAGES = 10_000  # images a run needs for that: start-up must not dominate
REDIS_IMAGES_PER_S = 20_000  # images a second one Redis serves, at least, on paper


def job_targets(table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A job's targets: a worker costs what a crawl costs, and Redis is not the ceiling.

    Each ``NAME@baseline`` row run (``--baseline``) is quoted beside its own.
    """
    goals: list[dict[str, Any]] = []
    worker, crawl = table.get("workers-1"), table.get("scrapy-100")
    name = (
        f"a worker of a job: CPU per image <= {WORKER_CPU_RATIO}x a plain crawl's "
        f"(workers-1 vs scrapy-100, >= {WORKER_CPU_IMAGES:,} images)"
    )
    if worker and crawl:
        figures = []
        for suffix in ("", BASELINE):
            one, plain = table.get("workers-1" + suffix), table.get("scrapy-100" + suffix)
            if one and plain:
                ratio = one["cpu_ms_per_image"] / plain["cpu_ms_per_image"]
                figures.append(
                    f"{'baseline: ' if suffix else ''}{one['cpu_ms_per_image']:.3f} vs "
                    f"{plain['cpu_ms_per_image']:.3f} ms ({ratio:.3f}x)"
                )
        ratio = worker["cpu_ms_per_image"] / crawl["cpu_ms_per_image"]
        long_enough = worker["images"] >= WORKER_CPU_IMAGES
        figures[0] += f" at {worker['images']:,} images" + ("" if long_enough else ": too few")
        goal = ratio <= WORKER_CPU_RATIO if long_enough else None
        goals.append({"target": name, "met": goal, "figures": "; ".join(figures)})
    else:
        goals.append({"target": name, "met": None, "figures": "not run"})

    name = (
        f"one Redis serves >= {REDIS_IMAGES_PER_S:,} images/s on paper "
        "(1 / its CPU per image, the most of workers-N)"
    )
    measured = {c: row["redis_per_image"] for c, row in table.items() if row["redis_per_image"]}
    if measured:
        figures = [
            f"{client} {1 / counters['cpu']:,.0f} images/s: {1000 * counters['cpu']:.3f} CPU ms, "
            f"{counters['total_commands_processed']:.1f} commands "
            f"({counters['scripts']:.2f} script calls), "
            f"{counters['total_net_input_bytes']:.0f} B in, "
            f"{counters['total_net_output_bytes']:.0f} B out, "
            f"{counters['kept']:.0f} B kept per image"
            if counters["cpu"]
            else f"{client}: no Redis CPU measured"
            for client, counters in measured.items()
        ]
        worst = max(
            (c["cpu"] for client, c in measured.items() if not client.endswith(BASELINE)),
            default=0.0,
        )
        met = worst > 0 and 1 / worst >= REDIS_IMAGES_PER_S
        goals.append({"target": name, "met": met, "figures": "; ".join(figures)})
    else:
        goals.append({"target": name, "met": None, "figures": "not run"})
    return goals


def scrapy_defaults() -> dict[str, Any]:
    """The project's own values of the limits that scrapy-12 and scrapy-100 override."""
    sys.path.insert(0, str(PROJECT))
    try:
        import igimages.settings as settings
    finally:
        sys.path.remove(str(PROJECT))
    names = (
        "CONCURRENT_REQUESTS",
        "CONCURRENT_REQUESTS_PER_DOMAIN",
        "AUTOTHROTTLE_ENABLED",
        "IGIMAGES_START_CONCURRENCY",
    )
    return {name: getattr(settings, name) for name in names}


def source_state() -> dict[str, str]:
    """Which crawl was measured: the commit, and whether igimages/ had local changes."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=10
            )
        except OSError:
            return ""
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "igimages")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "igimages": "modified" if changed else "clean",
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _report(run: Run) -> None:
    print(
        f"  round {run.round} {run.world:<8} {run.client:<14} {run.posts} posts: "
        f"{run.images} images in "
        f"{run.wall:5.2f} s = {run.rate:6.1f}/s, CPU {run.cpu_ms:.2f} ms/image "
        f"({1000 * run.cpu_sys / run.images:.2f} system), "
        f"RSS {run.rss_mib:.0f} MiB, {run.server['requests']} requests"
        + (f" ({run.server['refused']} refused)" if run.server.get("refused") else "")
        + "".join(f"; {note}" for note in run.notes)
        + ("" if not run.problems else f"; {len(run.problems)} PROBLEMS")
        + (f"; BUSY: others used {run.others:.2f} cores" if (run.others or 0) > BUSY else ""),
        flush=True,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    add = parser.add_argument
    add("--rounds", type=int, default=1, help="times each client runs, interleaved (1)")
    add("--latency", type=float, default=0.1, help="healthy host's seconds per response (0.1)")
    add("--connect-latency", type=float, help="extra seconds per new connection (2x latency)")
    add("--posts", type=int, default=DEFAULT_POSTS, help=f"posts in the corpus ({DEFAULT_POSTS})")
    add("--images", type=int, default=2000, help="distinct images at most (2000)")
    add("--seed", type=int, default=1, help="corpus seed (1)")
    add(
        "--clients",
        help=f"comma-separated, from: {', '.join(CLIENTS)} (default: all of each world's; "
        f"scrapy-100 alone above {LARGE_POSTS} posts)",
    )
    add(
        "--worlds",
        help=f"comma-separated, from: {', '.join(WORLDS)} (default: all; "
        f"healthy alone above {LARGE_POSTS} posts)",
    )
    add("--no-plot", action="store_true", help=f"no limit trace, no {PLOT.name}")
    add("--work-dir", type=Path, help="where clients write (default: a folder in RAM)")
    add("--keep", action="store_true", help="keep every client's output and log")
    add("--results", type=Path, help="JSON results file (default: benchmarks/results/...)")
    add(
        "--baseline",
        type=Path,
        help="a checkout of another revision: each crawl client (a job's workers too) runs "
        f"from it too, as NAME{BASELINE}, right after the same client from this tree",
    )
    add(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="a setting for every crawl client, e.g. IGIMAGES_PERCEPTUAL_HASH= (no hash)",
    )  # fmt: skip
    args = parser.parse_args()
    large = args.posts > LARGE_POSTS
    args.clients = (args.clients or ("scrapy-100" if large else ",".join(CLIENTS))).split(",")
    if unknown := [client for client in args.clients if client not in CLIENTS]:
        parser.error(f"unknown clients: {', '.join(unknown)}")
    args.worlds = (args.worlds or ("healthy" if large else ",".join(WORLDS))).split(",")
    if unknown := [world for world in args.worlds if world not in WORLDS]:
        parser.error(f"unknown worlds: {', '.join(unknown)}")
    if args.connect_latency is None:
        args.connect_latency = 2 * args.latency
    if args.results is None:
        name = "latest" if args.posts == DEFAULT_POSTS else f"latest-{args.posts}-posts"
        args.results = HERE / "results" / f"{name}.json"
    return args


def start_server(world: World, data: corpus.Corpus, args: argparse.Namespace) -> Server:
    latency = args.latency if world.latency is None else world.latency
    connect = args.connect_latency if world.latency is None else 2 * world.latency
    return Server(
        data.pool_dir, len(data.images), latency, connect, world.link_mbit,
        world.refuse_above, world.retry_after, world.refusal_latency,
    )  # fmt: skip


def trace_limit(
    world: World, data: corpus.Corpus, posts_file: Path, out: Path, server: Server
) -> dict[str, Any]:
    """One default crawl logging every change of its per-host limit; its trace.

    Times are seconds from the crawl's start: the limit (from the crawl's own
    log) and each answer, with its status and the requests in flight at the
    server when it came (from the server).
    """
    extra = ("AUTOTHROTTLE_DEBUG=True", f"LOG_FORMAT={LIMIT_LOG_FORMAT}")
    run = measure("scrapy-default", 0, data, posts_file, out, server, world.name, extra)
    log = out.with_name(out.name + ".log").read_text(encoding="utf-8", errors="replace")
    started = run.server["started"]
    limits = [
        (round(float(when) - started, 3), int(after), why)
        for when, _before, after, why in LIMIT_LINE.findall(log)
    ]
    answers = [(round(when - started, 3), status, n) for when, status, n in run.server["timeline"]]
    print(
        f"  limit trace in {world.name}: {len(limits)} changes, {len(answers)} answers, "
        f"{run.wall:.2f} s" + (f"; PROBLEMS: {run.problems[:2]}" if run.problems else ""),
        flush=True,
    )
    return {"world": world.name, "title": world.title, "limits": limits, "answers": answers}


def main() -> None:
    args = parse_args()
    began = time.perf_counter()
    corpora = [corpus.load(args.posts, args.images, args.seed)]
    if args.posts > LARGE_POSTS:  # the same clients on the usual corpus, to compare peak RSS
        corpora.insert(0, corpus.load(DEFAULT_POSTS, args.images, args.seed))
    data = corpora[-1]
    defaults = scrapy_defaults()
    print(
        f"corpus: {len(data.posts)} posts, {data.references} images ({data.distinct_urls} "
        f"distinct URLs, {data.distinct_images} distinct images, "
        f"{data.pool_bytes() / 2**20:.0f} MiB), ready in {time.perf_counter() - began:.1f} s\n"
        f"server: 127.0.0.1, +twice the latency on a new connection; worlds:\n"
        f"  healthy = {args.latency * 1000:.0f} ms per response;\n"
        "  link = 50 ms, every response through one 300 Mbit/s link;\n"
        "  throttle = 100 ms, 429 while 16 requests are being served;\n"
        "  throttle-pause = the same, each 429 with Retry-After: 1;\n"
        "  throttle-quick, throttle-pause-quick = the same two, 429s answered in 5 ms;\n"
        "clients: seed = ThreadPoolExecutor(12) + requests; aiohttp = 100 in flight;\n"
        "  scrapy-default = the project's defaults "
        f"({', '.join(f'{k}={v}' for k, v in defaults.items())}; one host, so the "
        "per-domain limit applies);\n"
        "  scrapy-12, -16, -100 = that many in flight, overall and per domain, limit fixed;\n"
        f"  {RERUN} = scrapy-default again over the folder it has just finished;\n"
        "  floor-12, floor-100 = Scrapy alone (floor.py): each distinct URL fetched on the "
        "pipeline's route, bodies dropped"
    )

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="igimages-bench-", dir=ram_folder()))
    where = "in RAM: disk writes left out" if work.parent == RAM else "on disk: disk writes in"
    print(f"outputs: {work} ({where})")
    work.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    traces: list[dict[str, Any]] = []
    global REDIS, BASELINE_PROJECT
    BASELINE_PROJECT = args.baseline.resolve() if args.baseline else None
    CRAWL_SETTINGS[:] = args.set
    if any(client in PROCESSES for client in args.clients):
        REDIS = RedisServer()
    try:
        warm_up()
        for world in (WORLDS[name] for name in args.worlds):
            clients = [client for client in args.clients if client in world.clients]
            if BASELINE_PROJECT:  # each crawl client, then the same from the baseline
                clients = [
                    name
                    for client in clients
                    for name in [client, client + BASELINE][: 2 if client in BASELINES else 1]
                ]
            if not clients:
                continue
            print(f"\n{world.name}: {world.title}", flush=True)
            server = start_server(world, data, args)
            try:
                posts_files = []
                for item in corpora:
                    posts_files.append(work / f"posts-{world.name}-{len(item.posts)}.json")
                    item.write_posts(posts_files[-1], server.base_url)
                for round_ in range(1, args.rounds + 1):
                    for item, posts_file in zip(corpora, posts_files, strict=True):
                        for client in clients:
                            out = work / f"{world.name}-{len(item.posts)}-r{round_}-{client}"
                            for name in [client, RERUN] if client == "scrapy-default" else [client]:
                                runs.append(
                                    measure(name, round_, item, posts_file, out, server, world.name)
                                )
                                _report(runs[-1])
                            if not args.keep:
                                shutil.rmtree(out, ignore_errors=True)
                if not args.no_plot and world.name in ("throttle-pause", "link"):
                    out = work / f"{world.name}-trace"
                    traces.append(trace_limit(world, data, posts_files[-1], out, server))
                    if not args.keep:
                        shutil.rmtree(out, ignore_errors=True)
            finally:
                server.stop()
    finally:
        if any(client in PROCESSES for client in args.clients):
            REDIS.stop()
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    tables = {
        world: summarise([r for r in runs if r.world == world and r.posts == len(data.posts)])
        for world in args.worlds
        if any(r.world == world for r in runs)
    }
    large = None
    if len(corpora) > 1:
        table = tables["healthy"]
        base = summarise([run for run in runs if run.posts != len(data.posts)])
        print(f"\n{DEFAULT_POSTS} posts (baseline for peak RSS):")
        print_table(base)
        client = args.clients[-1]
        large = {
            "posts": len(data.posts),
            "base_posts": DEFAULT_POSTS,
            "client": client,
            "rss_mib": table[client]["peak_rss_mib"],
            "base_rss_mib": base[client]["peak_rss_mib"],
            "ratio": table[client]["peak_rss_mib"] / base[client]["peak_rss_mib"],
        }
    for world, table in tables.items():
        print(
            f"\n{world} ({WORLDS[world].title}): {len(data.posts)} posts, {data.references} "
            f"images; median of {args.rounds} round(s), worst RSS and tail"
        )
        print_table(table)
    goals = targets(tables, large)
    print("\ntargets:")
    for goal in goals:
        verdict = {True: "met", False: "NOT MET", None: "-"}[goal["met"]]
        print(f"  {verdict:>7}  {goal['target']}: {goal['figures']}")
    print(
        "\nserver CPU ms per image (small next to the clients'): "
        + "; ".join(
            f"{world}: "
            + ", ".join(f"{c} {row['server_cpu_ms_per_image']:.2f}" for c, row in table.items())
            for world, table in tables.items()
        )
    )
    if busy := [run for run in runs if (run.others or 0) > BUSY]:
        print(
            f"\nWARNING: other processes used more than {BUSY} of a core during "
            + ", ".join(f"{run.client} (round {run.round}: {run.others:.2f})" for run in busy)
            + ": those figures are unreliable, run again on a quiet machine"
        )
    if problems := [run for run in runs if run.problems]:
        print("\nproblems:")
        for run in problems:
            print(f"  {run.client} ({run.world}) round {run.round}: " + "; ".join(run.problems[:5]))
    if traces:
        import plot  # matplotlib, only when there is something to draw

        plot.limit_traces(traces, PLOT)
        print(f"\nlimit over a run: {PLOT.relative_to(PROJECT)}")

    args.results.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "versions": {package: version(package) for package in VERSIONS},
        "source": source_state(),
        "parameters": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
            if key not in ("work_dir", "keep", "results")
        },
        "corpus": {
            "posts": len(data.posts),
            "images": data.references,
            "distinct_urls": data.distinct_urls,
            "distinct_images": data.distinct_images,
            "bytes": data.pool_bytes(),
        },
        "outputs": "ram" if work.parent == RAM else "disk",
        "scrapy_defaults": defaults,
        "worlds": tables,
        "large": large,
        "targets": goals,
        "traces": traces,
        "runs": [
            {**asdict(run), "problems": run.problems[:20], "server": _without_timeline(run.server)}
            for run in runs
        ],
    }
    args.results.write_text(json.dumps(record, indent=2) + "\n")
    shown = (
        args.results.relative_to(PROJECT) if args.results.is_relative_to(PROJECT) else args.results
    )
    print(f"\nresults in {shown}; {time.perf_counter() - began:.0f} s in all")
    sys.exit(1 if problems else 0)


def _without_timeline(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in stats.items() if key != "timeline"}


if __name__ == "__main__":
    main()
