"""Run ``scrapy crawl post_images`` for real, against loopback servers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.cloud import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    ApiFront,
    GCSEmulator,
    azure_client,
    azurite_command,
    free_port,
    gcs_command,
    loopback_tls,
    moto_command,
    new_bucket_name,
    s3_client,
    server_process,
)
from tests.imageserver import ImageServer
from tests.redisserver import RedisServer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: A ``sitecustomize`` that makes names resolve where a test says (crawl_env's hosts).
HOSTS_OVERRIDE = Path(__file__).resolve().parent / "resolve"
#: Where the tests' CDN names resolve: TEST-NET-3 (RFC 5737), which nothing
#: answers; a crawl checks a name before it hands it to a proxy.
CDN_HOSTS = {"*.cdninstagram.com": "203.0.113.7", "*.fbcdn.net": "203.0.113.7"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_no_secret(text: str, *secrets: str) -> None:
    """None of ``secrets`` is in ``text`` in a form it may be printed in: as it is,
    percent-encoded ("@" alone, as in a URL, or every character), escaped in a
    repr or in JSON."""
    for secret in secrets:
        forms = {secret, secret.replace("@", "%40"), quote(secret, safe="")}
        forms |= {repr(form)[1:-1] for form in forms} | {json.dumps(form)[1:-1] for form in forms}
        for form in forms:
            at = text.find(form)
            assert at < 0, f"a secret is printed, as {form!r}: ...{text[at - 200 : at + 200]}..."


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@dataclass
class CrawlResult:
    returncode: int
    stderr: str
    store: Path
    stdout: str = ""

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.store / "summary.json").read_text())

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        """Manifest lines by post id (each post must appear once)."""
        lines = read_jsonl(self.store / "manifest.jsonl")
        by_id = {line["id"]: line for line in lines}
        assert len(by_id) == len(lines), "a post is listed twice in the manifest"
        return by_id

    @property
    def failures(self) -> list[dict[str, Any]]:
        return read_jsonl(self.store / "failures.jsonl")

    def image(self, post_id: str, position: int) -> dict[str, Any]:
        return self.manifest[post_id]["images"][position - 1]

    def stored_bytes(self, post_id: str, position: int) -> bytes:
        return (self.store / self.image(post_id, position)["path"]).read_bytes()


def crawl_command(
    posts: Path | str, store: Path, *settings: str, args: tuple[str, ...] = ()
) -> list[str]:
    command = [sys.executable, "-m", "scrapy", "crawl", "post_images", "-a", f"posts={posts}"]
    for arg in args:
        command += ["-a", arg]
    command += ["-s", f"IMAGES_STORE={store}", "-s", "LOG_LEVEL=INFO"]
    for setting in settings:
        command += ["-s", setting]
    return command


def start_crawl(
    posts: Path | str, store: Path | str, *settings: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """A crawl in the background, for tests that stop or kill it midway."""
    return subprocess.Popen(
        crawl_command(posts, store, *settings),
        cwd=PROJECT_ROOT,
        env=env or crawl_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the crawl"
        time.sleep(0.05)


def crawl_env(hosts: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """A crawl's environment: no proxy but ``http_proxy`` in ``extra``, and
    ``hosts`` (name or ``*.domain`` -> address) resolving where they say."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    if hosts:
        env["PYTHONPATH"] = os.pathsep.join((str(HOSTS_OVERRIDE), str(PROJECT_ROOT)))
        env["IGIMAGES_TEST_HOSTS"] = json.dumps(hosts)
    env.update(extra)
    return env


def proxy_env(server: ImageServer, hosts: dict[str, str] | None = None) -> dict[str, str]:
    """``server`` as the crawl's HTTP proxy, standing in for the CDN's hosts."""
    return crawl_env(hosts={**CDN_HOSTS, **(hosts or {})}, http_proxy=server.url(""))


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with ImageServer() as image_server:
        yield image_server


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "images"


@pytest.fixture
def write_posts(tmp_path: Path):
    """Write posts in the seed's shape: ``{post_id: [url, ...]}`` or raw values."""

    def write(posts: dict[str, list[str]] | list[Any], name: str = "posts.json") -> Path:
        if isinstance(posts, dict):
            posts = [
                {
                    "id": post_id,
                    "url": f"https://example.invalid/p/{post_id}/",
                    "media": {"images": urls},
                }
                for post_id, urls in posts.items()
            ]
        path = tmp_path / name
        path.write_text(json.dumps(posts, indent=1))
        return path

    return write


@pytest.fixture
def crawl(store: Path):
    """Run a crawl to completion and return what it left behind."""

    def run(
        posts: Path | str,
        *settings: str,
        env: dict[str, str] | None = None,
        timeout: float = 90,
        target: Path | str | None = None,
        args: list[str] | None = None,
    ) -> CrawlResult:
        out = target or store
        completed = subprocess.run(
            crawl_command(posts, out, *settings, args=tuple(args or ())),
            cwd=PROJECT_ROOT,
            env=env or crawl_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return CrawlResult(completed.returncode, completed.stderr, out, completed.stdout)

    return run


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """One real redis-server for the session; each test has a job of its own in it."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@dataclass
class Job:
    """A new job name on a Redis server, and the crawl settings that join it."""

    name: str
    server: RedisServer

    @property
    def settings(self) -> list[str]:
        return [f"REDIS_URL={self.server.url}", f"IGIMAGES_JOB={self.name}"]

    def key(self, suffix: str) -> str:
        return f"igimages:{self.name}:{suffix}"

    def client(self) -> Any:
        return self.server.client()


@pytest.fixture
def job(redis_server, request) -> Job:
    return Job(f"{request.node.name[:40]}-{uuid.uuid4().hex[:6]}", redis_server)


@pytest.fixture(scope="session")
def moto(tmp_path_factory) -> Iterator[ApiFront]:
    """moto's S3 server, once per session, behind a front that records each call."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with server_process(moto_command(port), port, log):
        front = ApiFront(port)
        yield front
        front.stop()


@pytest.fixture(scope="session")
def moto_https(moto, tmp_path_factory) -> Iterator[tuple[ApiFront, Path]]:
    """The same moto behind an HTTPS front, and the CA file that the client must trust."""
    ca, context = loopback_tls(tmp_path_factory.mktemp("tls"))
    front = ApiFront(moto.backend_port, tls=context)
    yield front, ca
    front.stop()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory) -> Iterator[GCSEmulator]:
    """The GCS emulator, once per session, behind a front that records each call."""
    port = free_port()
    log = tmp_path_factory.mktemp("gcs") / "gcs.log"
    with server_process(gcs_command(port), port, log):
        front = ApiFront(port)
        yield GCSEmulator(front)
        front.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[ApiFront]:
    """Azurite's Blob service, once per session, behind a front that records each call."""
    port = free_port()
    command = azurite_command(port)
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    with server_process(command, port, log):
        front = ApiFront(port)
        yield front
        front.stop()


@dataclass
class Bucket:
    """A new, empty bucket for one test, and the crawl settings that reach it."""

    uri: str
    name: str
    settings: list[str]
    env: dict[str, str]
    client: Any
    state_dir: Path

    def objects(self) -> dict[str, bytes]:
        raise NotImplementedError


SECRET = "igimages-test-secret-Zq81"  # must never show in a log, a feed or a summary


@pytest.fixture
def s3_bucket(moto, tmp_path) -> S3Bucket:
    name = new_bucket_name()
    client = s3_client(moto.endpoint, secret=SECRET)
    client.create_bucket(Bucket=name)
    state = tmp_path / "state"
    settings = [
        f"AWS_ENDPOINT_URL={moto.endpoint}",
        "AWS_ACCESS_KEY_ID=test",
        f"AWS_SECRET_ACCESS_KEY={SECRET}",
        "AWS_REGION_NAME=us-east-1",
        f"IGIMAGES_STATE_DIR={state}",
    ]
    env = crawl_env(AWS_MAX_ATTEMPTS="2", AWS_RETRY_MODE="standard")
    return S3Bucket(f"s3://{name}/job/", name, settings, env, client, state, moto)


@pytest.fixture
def gcs_bucket(gcs_emulator, tmp_path) -> GCSBucket:
    name = new_bucket_name()
    client = gcs_emulator.client()
    client.create_bucket(name)
    state = tmp_path / "state"
    settings = ["GCS_PROJECT_ID=test", f"IGIMAGES_STATE_DIR={state}"]
    env = crawl_env(STORAGE_EMULATOR_HOST=gcs_emulator.host)
    return GCSBucket(f"gs://{name}/job/", name, settings, env, client, state, gcs_emulator)


@pytest.fixture
def azure_container(azurite, tmp_path) -> AzureContainer:
    name = new_bucket_name()
    client = azure_client(f"http://127.0.0.1:{azurite.backend_port}")
    client.create_container(name)
    state = tmp_path / "state"
    settings = [
        f"AZURE_STORAGE_ENDPOINT={azurite.endpoint}/{AZURITE_ACCOUNT}",
        f"AZURE_STORAGE_ACCOUNT_NAME={AZURITE_ACCOUNT}",
        f"AZURE_STORAGE_ACCOUNT_KEY={AZURITE_KEY}",
        f"IGIMAGES_STATE_DIR={state}",
    ]
    return AzureContainer(f"az://{name}/job/", name, settings, crawl_env(), client, state, azurite)


@dataclass
class S3Bucket(Bucket):
    front: ApiFront

    def objects(self) -> dict[str, bytes]:
        """Every object under the job's prefix, read back through the API."""
        direct = s3_client(f"http://127.0.0.1:{self.front.backend_port}")
        listed = direct.list_objects_v2(Bucket=self.name, Prefix="job/").get("Contents", [])
        return {
            o["Key"].removeprefix("job/"): direct.get_object(Bucket=self.name, Key=o["Key"])[
                "Body"
            ].read()
            for o in listed
        }

    def calls(self) -> list[Any]:
        return self.front.calls_to(self.name)


@dataclass
class GCSBucket(Bucket):
    emulator: GCSEmulator

    def objects(self) -> dict[str, bytes]:
        return {
            blob.name.removeprefix("job/"): blob.download_as_bytes()
            for blob in self.client.list_blobs(self.name, prefix="job/")
        }


@dataclass
class AzureContainer(Bucket):
    front: ApiFront

    def objects(self) -> dict[str, bytes]:
        container = self.client.get_container_client(self.name)
        return {
            blob.name.removeprefix("job/"): container.download_blob(blob.name).readall()
            for blob in container.list_blobs(name_starts_with="job/")
        }

    def calls(self) -> list[Any]:
        """The calls on this container, with ``bucket``/``key`` as on S3 (account dropped)."""
        account = f"/{AZURITE_ACCOUNT}"
        calls = [replace(c, path=c.path.removeprefix(account)) for c in self.front.calls]
        return [call for call in calls if call.bucket == self.name]
