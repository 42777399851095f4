"""Where a client's CPU goes: py-spy's samples of its runs, sorted into named parts.

    .venv/bin/pip install -r benchmarks/requirements.txt
    .venv/bin/python benchmarks/cpu_profile.py [--clients aiohttp,floor-100,scrapy-100]

On the benchmark's corpus and server (see run.py), each client runs ``--runs``
times measured as the benchmark measures it (CPU per image, bytes checked),
and as many times under ``py-spy record``, which samples its stacks from
outside. Each sample is given to one component (the first rule of
``component`` that matches), and a component's share of all the samples
times the median measured CPU gives its milliseconds per image. The samples
are kept in ``benchmarks/results/profile-<client>.txt``, one stack per line,
for a flame graph or a closer look.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import corpus
import run

PY_SPY = Path(sys.executable).with_name("py-spy")
RESULTS = run.HERE / "results"

#: Frames that build the crawl rather than run it, although the event loop runs them.
_STARTUP_FUNCTIONS = frozenset(
    {
        "Crawler.__init__",
        "Crawler._apply_settings",
        "Crawler._create_engine",
        "ExecutionEngine.open_spider_async",
    }
)
_FEEDS = (
    "scrapy/extensions/feedexport.py",
    "scrapy/exporters.py",
    "igimages/outputs/feeds.py",
    "igimages/outputs/storages.py",
)
_MIDDLEWARES = tuple(
    f"igimages/fetch/{name}.py" for name in ("gate", "retry", "redirect", "addresses")
)
_OWN = (
    *(f"igimages/{part}" for part in ("inputs/", "spiders/", "pipeline/", "store/", "outputs/")),
    *(f"igimages/{name}.py" for name in ("items", "keys", "validation", "atomic", "runtime")),
    *_MIDDLEWARES,
    "igimages/job/",
)
#: Where the rest goes, by the innermost frame of these (file prefixes, component).
_LIBRARIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("aiohttp/", "yarl/", "multidict/", "propcache/", "aiohappyeyeballs/"), "aiohttp"),
    (
        (
            "scrapy/core/downloader/",
            "scrapy/downloadermiddlewares/",
            "scrapy/http/",
            "scrapy/responsetypes.py",
            "scrapy/utils/_download_handlers.py",
            "scrapy/utils/httpobj.py",
            "w3lib/",
            "mimetypes.py",
        ),
        "Scrapy: downloader, requests, responses",
    ),
    (("twisted/",), "Twisted: Deferreds"),
    (("scrapy/", "pydispatch/"), "Scrapy: engine, signals, other"),
    (
        ("requests/", "urllib3/", "http/", "concurrent/", "threading.py"),
        "requests, urllib3, threads",
    ),
    (("refclients.py", "floor.py"), "the client script"),
    (("asyncio/", "selectors.py", "socket.py", "ssl.py"), "event loop, sockets"),
)


@dataclass(frozen=True)
class Setting:
    """What every run shares: the corpus, its posts file, the server, a folder."""

    data: corpus.Corpus
    posts_file: Path
    work: Path
    server: run.Server


def parse_stack(line: str) -> tuple[list[tuple[str, str]], int]:
    """One line of py-spy's raw output: frames as (function, file), outermost first."""
    stack, _, count = line.rstrip("\n").rpartition(" ")
    frames = []
    for frame in stack.split(";"):
        function, _, where = frame.rpartition(" (")
        frames.append((function, where.rstrip(")").rpartition(":")[0] or where.rstrip(")")))
    return frames, int(count)


def component(frames: list[tuple[str, str]]) -> str:
    """The part of the client that one sample's stack belongs to."""
    functions = {function for function, _ in frames}
    if "_find_and_load" in functions:
        return "start-up: imports"
    running = "BaseEventLoop.run_forever" in functions or "_worker" in functions
    if not running or functions & _STARTUP_FUNCTIONS:
        return "start-up: settings, components, posts survey"
    files = [file for _, file in frames]
    leaf = files[-1]
    if any(file in _FEEDS for file in files):
        return "feeds (manifest, failures)"
    own = [(f, file) for f, file in frames if file.startswith(_OWN)]
    if own:
        function, file = own[-1]
        if file == "igimages/validation.py" or leaf.startswith("PIL/"):
            return "igimages: Pillow check"
        if function == "describe":
            return "igimages: sha256"
        if file == "igimages/store/index.py":
            return "igimages: store, index (SQLite)"
        if file.startswith("igimages/store/"):
            return "igimages: store, files"
        if file in _MIDDLEWARES:
            return "igimages: downloader middlewares"
        if file.startswith("igimages/job/") or leaf.startswith("redis/"):
            return "igimages: job (Redis calls)"
        if file.startswith(("igimages/inputs/", "igimages/spiders/")):
            return "igimages: reading posts"
        return "igimages: pipeline, items, progress"
    if any(file.startswith("scrapy/pipelines/") for file in files):
        return "Scrapy: media pipeline"
    if any(file.startswith("redis/") for file in files):
        return "igimages: job (Redis calls)"
    for file in reversed(files):  # the innermost frame of a known library
        for prefixes, name in _LIBRARIES:
            if file.startswith(prefixes):
                return name
    return "other"


def profile(client: str, args: argparse.Namespace, setting: Setting) -> dict:
    """Measure and sample ``client`` ``args.runs`` times; its components in ms per image."""
    cpu_ms: list[float] = []
    shares: Counter[str] = Counter()
    raw = RESULTS / f"profile-{client}.txt"
    raw.unlink(missing_ok=True)
    for number in range(1, args.runs + 1):
        out = setting.work / f"{client}-{number}"
        measured = run.measure(
            client, number, setting.data, setting.posts_file, out, setting.server
        )
        shutil.rmtree(out, ignore_errors=True)
        if measured.problems:
            raise SystemExit(f"{client}: {'; '.join(measured.problems[:3])}")
        cpu_ms.append(measured.cpu * 1000 / measured.images)
        out = out.with_name(out.name + "-sampled")  # a job's name is its folder's: a new job
        shares += sample(run.commands(client, setting.posts_file, out), args.rate, raw)
        shutil.rmtree(out, ignore_errors=True)
    samples = sum(shares.values())
    median = statistics.median(cpu_ms)
    return {
        "cpu_ms_per_image": median,
        "samples": samples,
        "components": {
            name: {"share": count / samples, "ms_per_image": median * count / samples}
            for name, count in shares.most_common()
        },
    }


def sample(commands: list[list[str]], rate: int, raw: Path) -> Counter[str]:
    """Run the client once under py-spy; its samples by component, appended to ``raw``.

    py-spy pauses the process for each sample: ``--nonblocking`` would not,
    but it then reads stacks as they change and loses their outer frames.
    """
    (command,) = commands
    log = raw.with_suffix(".log")
    with tempfile.NamedTemporaryFile(suffix=".txt") as this_run:
        sampler = [str(PY_SPY), "record", "--rate", str(rate), "--format", "raw"]
        sampler += ["--output", this_run.name, "--"]
        with open(log, "wb") as output:
            status = subprocess.run(
                sampler + command,
                cwd=run.PROJECT,
                env=run.child_env(),
                stdout=output,
                stderr=subprocess.STDOUT,
            ).returncode
        if status:
            raise SystemExit(f"exit status {status} under py-spy, see {log}")
        lines = Path(this_run.name).read_text(encoding="utf-8")
    with open(raw, "a", encoding="utf-8") as kept:
        kept.write(lines)
    shares: Counter[str] = Counter()
    for line in lines.splitlines():
        frames, count = parse_stack(line)
        shares[component(frames)] += count
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    add = parser.add_argument
    add("--clients", default="aiohttp,floor-100,scrapy-100", help="comma-separated")
    add("--runs", type=int, default=3, help="runs of each client, measured and sampled (3)")
    add("--rate", type=int, default=100, help="py-spy samples per second (100)")
    add("--latency", type=float, default=0.1, help="server seconds per response (0.1)")
    add("--posts", type=int, default=run.DEFAULT_POSTS, help="posts in the corpus")
    args = parser.parse_args()
    clients = args.clients.split(",")
    if bad := [c for c in clients if c not in run.CLIENTS or run.PROCESSES.get(c, 1) > 1]:
        parser.error(f"not a single-process client of run.py: {', '.join(bad)}")
    if not PY_SPY.exists():
        raise SystemExit(f"no {PY_SPY.name} next to {sys.executable}: see the usage line")

    data = corpus.load(args.posts, 2000)
    work = Path(tempfile.mkdtemp(prefix="igimages-profile-", dir=run.ram_folder()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    server = run.Server(data.pool_dir, len(data.images), args.latency, 2 * args.latency)
    if any(client in run.PROCESSES for client in clients):
        run.REDIS = run.RedisServer()  # workers-1: one worker of a job
    try:
        setting = Setting(data, work / "posts.json", work, server)
        data.write_posts(setting.posts_file, server.base_url)
        run.warm_up()
        report = {client: profile(client, args, setting) for client in clients}
    finally:
        server.stop()
        if any(client in run.PROCESSES for client in clients):
            run.REDIS.stop()
    shutil.rmtree(work, ignore_errors=True)  # kept, with the runs' logs, if one failed

    for client, result in report.items():
        print(
            f"\n{client}: {result['cpu_ms_per_image']:.2f} CPU ms per image "
            f"({result['samples']} samples)"
        )
        for name, part in result["components"].items():
            print(f"  {part['ms_per_image']:6.3f} ms  {part['share']:6.1%}  {name}")
    path = RESULTS / "profile-latest.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults in {path.relative_to(run.PROJECT)}, samples in {RESULTS.name}/profile-*.txt")


if __name__ == "__main__":
    main()
