"""The project as it reaches a worker machine: a pip package, and a Scrapyd egg."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests import images
from tests.cloud import free_port
from tests.conftest import PROJECT_ROOT, read_jsonl, sha256
from tests.imageserver import Route

BIN = Path(sys.executable).parent
SOURCES = ("igimages", "pyproject.toml", "setup.py", "scrapy.cfg", "README.md")


def copy_sources(target: Path) -> Path:
    """The project's files as a clean checkout has them, without caches."""
    target.mkdir()
    for name in SOURCES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / name)
    return target


def test_pip_installs_the_project_with_its_dependencies_declared(tmp_path):
    source = copy_sources(tmp_path / "src")
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "--no-deps", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    probe = (
        "import importlib.metadata as m; d = m.distribution('igimages'); "
        "print(d.read_text('entry_points.txt')); print(*d.requires, sep='\\n')"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(target), "PATH": str(BIN)}
    shown = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert "settings = igimages.settings" in shown.stdout, shown.stderr
    required = {line.split(">")[0].split("=")[0].split("<")[0] for line in shown.stdout.split()}
    assert {"scrapy", "pillow", "obstore", "redis", "scrapy-redis"} <= required
    assert 'pyarrow>=26; extra == "dataset"' in shown.stdout.splitlines()  # igimages[dataset]
    # Installed, the project is found by its entry point's settings, from any folder.
    listed = subprocess.run(
        [sys.executable, "-m", "scrapy", "list"],
        cwd=elsewhere,
        env={**env, "SCRAPY_SETTINGS_MODULE": "igimages.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.stdout.split() == ["post_images"], listed.stderr


def test_scrapyd_runs_workers_of_one_job_from_the_deployed_egg(tmp_path, server, job, store):
    bodies = {f"/d{n}.jpg": images.jpeg(seed=5000 + n) for n in range(12)}
    for path, body in bodies.items():
        server.add(path, Route(body, delay=0.1))
    posts = tmp_path / "posts.json"
    posts.write_text(
        json.dumps(
            [{"id": f"p{n}", "media": {"images": [server.url(f"/d{n}.jpg")]}} for n in range(12)]
        )
    )
    egg = tmp_path / "igimages.egg"
    subprocess.run(
        [str(BIN / "scrapyd-deploy"), "--build-egg", str(egg)],
        cwd=copy_sources(tmp_path / "src"),
        check=True,
        capture_output=True,
        timeout=120,
    )

    home = tmp_path / "scrapyd"
    home.mkdir()
    port = free_port()
    (home / "scrapyd.conf").write_text(
        f"[scrapyd]\nbind_address = 127.0.0.1\nhttp_port = {port}\npoll_interval = 0.2\n"
        "max_proc = 4\neggs_dir = eggs\nlogs_dir = logs\ndbs_dir = dbs\n"
    )
    scrapyd = subprocess.Popen(
        [str(BIN / "scrapyd")],
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home)},
    )
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                call(f"{api}/daemonstatus.json")
                break
            except OSError:
                assert time.monotonic() < deadline, "scrapyd did not start"
                time.sleep(0.1)
        added = call(f"{api}/addversion.json", {"project": "igimages", "version": "1"}, egg=egg)
        assert added["status"] == "ok", added
        settings = [
            ("setting", s) for s in (*job.settings, f"IMAGES_STORE={store}", "LOG_LEVEL=INFO")
        ]
        spider = [("project", "igimages"), ("spider", "post_images"), *settings]
        jobs = [call(f"{api}/schedule.json", [*spider, ("posts", str(posts))])["jobid"]]
        jobs += [call(f"{api}/schedule.json", spider)["jobid"] for _ in range(2)]

        deadline = time.monotonic() + 90
        while True:
            listed = call(f"{api}/listjobs.json?project=igimages")
            if {j["id"] for j in listed["finished"]} >= set(jobs):
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.2)
    finally:
        scrapyd.terminate()
        scrapyd.wait(10)

    logs = [(home / "logs" / "igimages" / "post_images" / f"{j}.log").read_text() for j in jobs]
    assert all("Worker " in log and f"of job '{job.name}'" in log for log in logs)
    manifest = read_jsonl(store / "manifest.jsonl")
    assert sorted(line["id"] for line in manifest) == sorted(f"p{n}" for n in range(12))
    for line in manifest:
        image = line["images"][0]
        expected = bodies[f"/d{line['id'][1:]}.jpg"]
        assert sha256((store / image["path"]).read_bytes()) == sha256(expected)


def call(url: str, fields: list | dict | None = None, egg: Path | None = None) -> dict:
    """A Scrapyd API call: GET, a form POST, or a multipart POST with an egg."""
    if fields is None:
        request = urllib.request.Request(url)
    elif egg is None:
        request = urllib.request.Request(url, urllib.parse.urlencode(fields).encode())
    else:
        boundary = "igimages-egg-upload"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in dict(fields).items()
        ]
        body = "".join(parts).encode()
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="egg"; filename="p.egg"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        body += egg.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
