"""Images straight into a bucket: moto's S3 server, a GCS emulator and Azurite, on loopback."""

from __future__ import annotations

import base64
import gzip
import json
import shutil
from typing import Any

import pytest

from tests import images
from tests.cloud import AZURITE_KEY, PROXIED_HOST, ApiFront, TunnelProxy, loopback_tls
from tests.conftest import PROJECT_ROOT, SECRET, sha256, start_crawl, wait_until
from tests.imageserver import Route

EXIT_OK, EXIT_STOPPED, EXIT_SOME_FAILED = 0, 1, 3


def jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


@pytest.fixture
def corpus(server, write_posts):
    """Five posts: eight distinct images, two of them under a second URL, one 404."""
    bodies = {f"/{n}.jpg": images.jpeg(seed=n) for n in range(8)}
    urls = {path: server.add(path, body) for path, body in bodies.items()}
    same = server.add("/copy-of-0.jpg", bodies["/0.jpg"])
    same_again = server.add("/copy-of-5.jpg", bodies["/5.jpg"])
    gone = server.add("/gone.jpg", Route(status=404))
    posts = {
        "a": [urls["/0.jpg"], urls["/1.jpg"], urls["/2.jpg"]],
        "b": [urls["/3.jpg"], same],
        "c": [urls["/4.jpg"], urls["/5.jpg"], gone],
        "d": [urls["/6.jpg"], same_again],
        "e": [urls["/7.jpg"]],
    }
    expected = {
        ("a", 1): "/0.jpg", ("a", 2): "/1.jpg", ("a", 3): "/2.jpg",
        ("b", 1): "/3.jpg", ("b", 2): "/0.jpg",
        ("c", 1): "/4.jpg", ("c", 2): "/5.jpg",
        ("d", 1): "/6.jpg", ("d", 2): "/5.jpg",
        ("e", 1): "/7.jpg",
    }  # fmt: skip
    return write_posts(posts), bodies, expected


def check_stored(objects: dict[str, bytes], bodies, expected) -> dict[str, Any]:
    """Every image is in the bucket byte for byte; returns the manifest by post id."""
    manifest = {post["id"]: post for post in jsonl(objects["manifest.jsonl"])}
    assert sorted(manifest) == ["a", "b", "c", "d", "e"]
    for (post_id, position), source in expected.items():
        image = manifest[post_id]["images"][position - 1]
        assert sha256(objects[image["path"]]) == sha256(bodies[source]) == image["sha256"]
        assert image["path"].startswith(f"{post_id}/{position}_")
    failures = jsonl(objects["failures.jsonl"])
    assert [(f["post_id"], f["position"], f["reason"]) for f in failures] == [("c", 3, "http_404")]
    return manifest


def statuses(manifest: dict[str, Any]) -> list[str]:
    return sorted(i["status"] for post in manifest.values() for i in post["images"])


def no_secret_anywhere(result, objects: dict[str, bytes]) -> None:
    assert SECRET not in result.stderr
    for name, data in objects.items():
        if not name.endswith((".jpg", ".gz")):
            assert SECRET.encode() not in data, name


def check_stored_once(bucket, result, bodies, expected) -> dict[str, bytes]:
    """A first crawl: each content uploaded once, copied to its other places; the objects."""
    assert result.returncode == EXIT_SOME_FAILED, result.stderr[-3000:]
    objects = bucket.objects()
    manifest = check_stored(objects, bodies, expected)
    assert statuses(manifest) == ["downloaded"] * 8 + ["duplicate"] * 2 + ["failed"]
    image_calls = [c for c in bucket.calls() if c.key.startswith("job/") and "/." not in c.key]
    uploads = [c.key for c in image_calls if c.is_upload and c.key.endswith(".jpg")]
    assert len(uploads) == len(set(uploads)) == 8  # one upload per distinct content
    assert len([c for c in image_calls if c.is_copy]) == 2
    assert {sha256(objects[k.removeprefix("job/")]) for k in uploads} == {
        sha256(b) for b in bodies.values()
    }
    return objects


def test_s3_stores_each_content_once_copies_the_rest_and_reruns_without_requests(
    server, crawl, corpus, s3_bucket
):
    posts, bodies, expected = corpus
    bucket = s3_bucket

    first = crawl(posts, *bucket.settings, env=bucket.env, target=bucket.uri)

    objects = check_stored_once(bucket, first, bodies, expected)
    image = next(name for name in objects if name.endswith(".jpg"))
    head = bucket.client.head_object(Bucket=bucket.name, Key=f"job/{image}")
    assert (head["ContentType"], head["CacheControl"]) == ("image/jpeg", "max-age=172800")
    summary = json.loads(objects["summary.json"])
    assert summary["finish_reason"] == "finished"
    assert summary["images/downloaded"] == 8
    assert summary["images/duplicate"] == 2
    no_secret_anywhere(first, objects)
    assert "(hidden)" in first.stderr  # the overridden settings were logged, masked

    # Again: nothing is asked of the CDN, no image object is read.
    server.reset_counters()
    before = len(bucket.calls())
    second = crawl(posts, *bucket.settings, env=bucket.env, target=bucket.uri)

    assert second.returncode == EXIT_SOME_FAILED, second.stderr[-3000:]
    assert [r.path for r in server.requests] == ["/gone.jpg"]
    calls = bucket.calls()[before:]
    assert not [c for c in calls if c.method == "GET" and c.key.endswith(".jpg")]
    assert not [c for c in calls if c.is_upload and c.key.endswith(".jpg")]
    manifest = check_stored(bucket.objects(), bodies, expected)
    assert statuses(manifest) == ["cached"] * 10 + ["failed"]
    plan = crawl(posts, *bucket.settings, env=bucket.env, target=bucket.uri, args=["plan=1"])
    assert "already stored   10 " in plan.stdout, plan.stdout
    assert "to download      1 " in plan.stdout  # the 404, which a run would try again

    # A machine with no local state finds everything through the index's
    # segments in the bucket: still no CDN request, no image object read.
    shutil.rmtree(bucket.state_dir)
    server.reset_counters()
    before = len(bucket.calls())
    third = crawl(posts, *bucket.settings, env=bucket.env, target=bucket.uri)

    assert third.returncode == EXIT_SOME_FAILED, third.stderr[-3000:]
    assert [r.path for r in server.requests] == ["/gone.jpg"]
    calls = bucket.calls()[before:]
    assert not [c for c in calls if c.method in ("GET", "HEAD") and c.key.endswith(".jpg")]
    assert [c for c in calls if c.method == "GET" and c.key.endswith(".jsonl.gz")]
    assert statuses(check_stored(bucket.objects(), bodies, expected)) == ["cached"] * 10 + [
        "failed"
    ]


def test_s3_bodies_are_signed_with_their_sha256_over_https_and_http(
    server, crawl, write_posts, s3_bucket, moto_https, tmp_path
):
    """Every upload's signature covers its body, which the crawl hashes anyway, so
    the server refuses bytes changed on the way. AWS_VERIFY names the CA to
    trust, as botocore's does."""
    bodies = [images.jpeg(seed=60 + n) for n in range(3)]
    posts = write_posts({"p": [server.add(f"/{n}.jpg", b) for n, b in enumerate(bodies)]})
    https, ca = moto_https
    over_https = [*s3_bucket.settings, f"AWS_ENDPOINT_URL={https.endpoint}", f"AWS_VERIFY={ca}"]

    result = crawl(posts, *over_https, env=s3_bucket.env, target=s3_bucket.uri)

    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    uploads = [c for c in https.calls_to(s3_bucket.name) if c.is_upload]
    images_up = [c for c in uploads if c.key.endswith(".jpg")]
    assert sorted(c.payload_hash for c in images_up) == sorted(map(sha256, bodies))
    assert "UNSIGNED-PAYLOAD" not in {c.payload_hash for c in uploads}
    stored = [body for name, body in s3_bucket.objects().items() if name.endswith(".jpg")]
    assert sorted(map(sha256, stored)) == sorted(map(sha256, bodies))

    # Plain HTTP, into another prefix of the same bucket: the same.
    before = len(s3_bucket.calls())
    plain = f"s3://{s3_bucket.name}/plain/"
    result = crawl(posts, *s3_bucket.settings, env=s3_bucket.env, target=plain)

    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    uploads = [c for c in s3_bucket.calls()[before:] if c.is_upload and c.key.endswith(".jpg")]
    assert sorted(c.payload_hash for c in uploads) == sorted(map(sha256, bodies))

    # AWS_VERIFY=False: any certificate will do.
    anyone = [*over_https[:-1], "AWS_VERIFY=False"]
    result = crawl(posts, *anyone, env=s3_bucket.env, target=f"s3://{s3_bucket.name}/any/")
    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    client, name = s3_bucket.client, s3_bucket.name
    listed = client.list_objects_v2(Bucket=name, Prefix="any/")["Contents"]
    keys = [entry["Key"] for entry in listed if entry["Key"].endswith(".jpg")]
    stored = [client.get_object(Bucket=name, Key=key)["Body"].read() for key in keys]
    assert sorted(map(sha256, stored)) == sorted(map(sha256, bodies))

    # A CA file that cannot be read is one line, before any download.
    server.reset_counters()
    missing = tmp_path / "no-such-ca.pem"
    result = crawl(posts, *over_https[:-1], f"AWS_VERIFY={missing}", env=s3_bucket.env,
                   target=s3_bucket.uri)  # fmt: skip
    assert result.returncode == EXIT_STOPPED
    assert f"AWS_VERIFY={missing}: cannot read it (No such file or directory)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not server.requests


@pytest.fixture
def proxy():
    """An HTTP proxy on loopback, the only place ``PROXIED_HOST`` resolves."""
    started = TunnelProxy()
    yield started
    started.stop()


def proxied_posts(server, write_posts) -> tuple[Any, list[bytes]]:
    """Three images and a copy of the first (a server-side copy), served directly."""
    bodies = [images.jpeg(seed=70 + n) for n in range(3)]
    urls = [server.add(f"/{n}.jpg", body) for n, body in enumerate(bodies)]
    return write_posts({"p": [*urls, server.add("/again.jpg", bodies[0])]}), bodies


def test_s3_goes_through_the_environments_proxy_over_http_and_https(
    server, crawl, write_posts, s3_bucket, moto_https, proxy
):
    """Behind a proxy (``http_proxy``, ``https_proxy``, ``no_proxy``, as Scrapy reads
    them), every call of a bucket store goes through it: the crawl's own uploads
    and copies as the client library's probe, feeds and index. The endpoint's name
    resolves at the proxy only, so a call that went around it would fail. Over
    HTTPS the CAs to trust come from ``AWS_CA_BUNDLE``, as botocore's do."""
    posts, bodies = proxied_posts(server, write_posts)
    settings = [s for s in s3_bucket.settings if not s.startswith("AWS_ENDPOINT_URL=")]
    env = {**s3_bucket.env, "http_proxy": proxy.url(f"someone:{SECRET}"), "no_proxy": "127.0.0.1"}
    endpoint = f"http://{PROXIED_HOST}:{s3_bucket.front.port}"
    before = len(s3_bucket.calls())  # the bucket's creation

    result = crawl(posts, *settings, f"AWS_ENDPOINT_URL={endpoint}", env=env, target=s3_bucket.uri)

    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    objects = s3_bucket.objects()
    manifest = check_manifest_of_proxied(objects, bodies)
    assert statuses(manifest) == ["downloaded"] * 3 + ["duplicate"]
    calls = s3_bucket.calls()[before:]
    assert len([c for c in calls if c.is_upload and c.key.endswith(".jpg")]) == 3
    assert len([c for c in calls if c.is_copy]) == 1
    assert [c for c in calls if c.key.endswith(".gz")]  # the index's mirror
    assert all(c.proxied for c in calls), [c for c in calls if not c.proxied]
    assert {auth for _, _, auth in proxy.asked} == {
        "Basic " + base64.b64encode(f"someone:{SECRET}".encode()).decode()
    }
    assert sorted(r.path for r in server.requests) == ["/0.jpg", "/1.jpg", "/2.jpg", "/again.jpg"]
    no_secret_anywhere(result, objects)

    # A proxy the store cannot speak to is one line, before any download.
    server.reset_counters()
    socks = {**env, "http_proxy": f"socks5://someone:{SECRET}@127.0.0.1:1080"}
    result = crawl(posts, *settings, f"AWS_ENDPOINT_URL={endpoint}", env=socks,
                   target=f"s3://{s3_bucket.name}/socks/")  # fmt: skip
    assert result.returncode == EXIT_STOPPED
    assert "the http proxy 127.0.0.1: only http:// proxies are supported" in result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr
    assert not server.requests

    # HTTPS: through the proxy's tunnels, trusting the CA that AWS_CA_BUNDLE names.
    https, ca = moto_https
    env = {**env, "https_proxy": proxy.url(), "AWS_CA_BUNDLE": str(ca)}
    endpoint = f"https://{PROXIED_HOST}:{https.port}"
    asked = len(proxy.asked)
    tls = f"s3://{s3_bucket.name}/tls/"

    result = crawl(posts, *settings, f"AWS_ENDPOINT_URL={endpoint}", env=env, target=tls)

    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    tunnels = {target for method, target, _ in proxy.asked[asked:] if method == "CONNECT"}
    assert tunnels == {f"{PROXIED_HOST}:{https.port}"}
    uploads = [c for c in https.calls_to(s3_bucket.name) if c.key.startswith("tls/")]
    stored = [c for c in uploads if c.is_upload and c.key.endswith(".jpg")]
    assert sorted(c.payload_hash for c in stored) == sorted(map(sha256, bodies))
    assert len([c for c in uploads if c.is_copy]) == 1
    client, name = s3_bucket.client, s3_bucket.name
    manifest = jsonl(client.get_object(Bucket=name, Key="tls/manifest.jsonl")["Body"].read())
    for image in manifest[0]["images"]:
        body = client.get_object(Bucket=name, Key=f"tls/{image['path']}")["Body"].read()
        assert sha256(body) == image["sha256"]


def check_manifest_of_proxied(objects: dict[str, bytes], bodies: list[bytes]) -> dict[str, Any]:
    [post] = jsonl(objects["manifest.jsonl"])
    expected = [*map(sha256, bodies), sha256(bodies[0])]
    assert [image["sha256"] for image in post["images"]] == expected
    for image in post["images"]:
        assert sha256(objects[image["path"]]) == image["sha256"]
    return {post["id"]: post}


def test_gcs_goes_through_the_environments_proxy(server, crawl, write_posts, gcs_bucket, proxy):
    posts, bodies = proxied_posts(server, write_posts)
    emulator = gcs_bucket.emulator
    env = {
        **gcs_bucket.env,
        "STORAGE_EMULATOR_HOST": f"http://{PROXIED_HOST}:{emulator.front.port}",
        "http_proxy": proxy.url(),
        "no_proxy": "127.0.0.1",
    }
    before = len(emulator.front.calls)

    result = crawl(posts, *gcs_bucket.settings, env=env, target=gcs_bucket.uri)

    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    calls = [c for c in emulator.front.calls[before:] if f"/b/{gcs_bucket.name}/" in c.path + "/"]
    manifest = check_manifest_of_proxied(gcs_bucket.objects(), bodies)
    assert statuses(manifest) == ["downloaded"] * 3 + ["duplicate"]
    assert len([n for n in emulator.uploaded(gcs_bucket.name) if n.endswith(".jpg")]) == 3
    assert len(emulator.rewrites(gcs_bucket.name)) == 1
    assert calls
    assert all(c.proxied for c in calls), [c for c in calls if not c.proxied]


def test_gcs_over_https_trusts_the_cas_that_requests_is_told_of(
    server, crawl, write_posts, gcs_bucket, tmp_path
):
    """google-cloud-storage trusts the CAs ``REQUESTS_CA_BUNDLE`` names, and so do
    the crawl's own uploads and copies: a private CA (a proxy that inspects TLS,
    an emulator) serves them all."""
    posts, bodies = proxied_posts(server, write_posts)
    ca, context = loopback_tls(tmp_path)
    front = ApiFront(gcs_bucket.emulator.front.backend_port, tls=context)
    env = {**gcs_bucket.env, "STORAGE_EMULATOR_HOST": front.endpoint, "REQUESTS_CA_BUNDLE": str(ca)}
    try:
        result = crawl(posts, *gcs_bucket.settings, env=env, target=gcs_bucket.uri)

        assert result.returncode == EXIT_OK, result.stderr[-3000:]
        calls = [c for c in front.calls if f"/b/{gcs_bucket.name}/" in c.path + "/"]
        assert len([c for c in calls if c.path.startswith("/upload/")]) >= 3
        assert len([c for c in calls if "/rewriteTo/" in c.path]) == 1
        manifest = check_manifest_of_proxied(gcs_bucket.objects(), bodies)
        assert statuses(manifest) == ["downloaded"] * 3 + ["duplicate"]
    finally:
        front.stop()


def test_s3_new_state_without_segments_adopts_objects_from_their_metadata(
    server, crawl, corpus, s3_bucket
):
    # A run killed before it mirrored its index leaves objects no segment
    # lists; one image deleted by hand must be fetched again.
    posts, bodies, expected = corpus
    bucket = s3_bucket
    crawl(posts, *bucket.settings, env=bucket.env, target=bucket.uri)
    objects = bucket.objects()
    manifest = {post["id"]: post for post in jsonl(objects["manifest.jsonl"])}
    phash = {image["sha256"]: image["phash"] for image in stored_images(manifest)}
    assert all(len(value) == 16 for value in phash.values())
    deleted = manifest["e"]["images"][0]["path"]
    for name in [n for n in objects if n.startswith(".igimages/index/")] + [deleted]:
        bucket.client.delete_object(Bucket=bucket.name, Key=f"job/{name}")
    shutil.rmtree(bucket.state_dir)
    server.reset_counters()
    before = len(bucket.calls())

    rerun = crawl(posts, *bucket.settings, env=bucket.env, target=bucket.uri)

    assert rerun.returncode == EXIT_SOME_FAILED, rerun.stderr[-3000:]
    assert sorted(r.path for r in server.requests) == ["/7.jpg", "/gone.jpg"]
    calls = bucket.calls()[before:]
    assert not [c for c in calls if c.method == "GET" and c.key.endswith(".jpg")]
    assert [c for c in calls if c.method == "HEAD" and c.key.endswith(".jpg")]  # metadata only
    manifest = check_stored(bucket.objects(), bodies, expected)
    assert manifest["e"]["images"][0]["status"] == "downloaded"
    # The perceptual hash came back with the rest of the metadata, not recomputed.
    assert {image["sha256"]: image["phash"] for image in stored_images(manifest)} == phash


def stored_images(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [image for post in manifest.values() for image in post["images"] if "sha256" in image]


@pytest.mark.timeout(300)  # the first run installs Azurite from npm
def test_azure_stores_each_content_once_and_a_new_state_adopts_objects_from_metadata(
    server, crawl, corpus, azure_container
):
    posts, bodies, expected = corpus
    bucket = azure_container

    first = crawl(posts, *bucket.settings, env=bucket.env, target=bucket.uri)

    objects = check_stored_once(bucket, first, bodies, expected)
    assert json.loads(objects["summary.json"])["images/duplicate"] == 2
    assert AZURITE_KEY not in first.stderr
    assert not [n for n, data in objects.items() if AZURITE_KEY.encode() in data]

    # A run killed before it mirrored its index, then its state lost: the
    # objects are adopted from their metadata, no image is read or fetched.
    container = bucket.client.get_container_client(bucket.name)
    for name in [n for n in objects if n.startswith(".igimages/index/")]:
        container.delete_blob(f"job/{name}")
    shutil.rmtree(bucket.state_dir)
    server.reset_counters()
    before = len(bucket.calls())

    rerun = crawl(posts, *bucket.settings, env=bucket.env, target=bucket.uri)

    assert rerun.returncode == EXIT_SOME_FAILED, rerun.stderr[-3000:]
    assert [r.path for r in server.requests] == ["/gone.jpg"]
    calls = bucket.calls()[before:]
    assert not [c for c in calls if c.method == "GET" and c.key.endswith(".jpg")]
    assert [c for c in calls if c.method == "HEAD" and c.key.endswith(".jpg")]  # metadata only
    manifest = check_stored(bucket.objects(), bodies, expected)
    assert statuses(manifest) == ["cached"] * 10 + ["failed"]


def test_gcs_stores_each_content_once_and_a_new_state_reads_no_image(
    server, crawl, corpus, gcs_bucket
):
    posts, bodies, expected = corpus
    bucket = gcs_bucket

    first = crawl(posts, *bucket.settings, env=bucket.env, target=bucket.uri)

    assert first.returncode == EXIT_SOME_FAILED, first.stderr[-3000:]
    objects = bucket.objects()
    manifest = check_stored(objects, bodies, expected)
    assert statuses(manifest) == ["downloaded"] * 8 + ["duplicate"] * 2 + ["failed"]
    emulator, name = bucket.emulator, bucket.name
    uploaded = [n for n in emulator.uploaded(name) if n.endswith(".jpg")]
    assert len(uploaded) == len(set(uploaded)) == 8  # one upload per distinct content
    assert len(emulator.rewrites(name)) == 2
    segments = [n for n in objects if n.startswith(".igimages/index/")]
    mirrored = [
        json.loads(line) for n in segments for line in gzip.decompress(objects[n]).splitlines()
    ]
    assert len(mirrored) == 10

    shutil.rmtree(bucket.state_dir)
    server.reset_counters()
    emulator.front.calls.clear()
    again = crawl(posts, *bucket.settings, env=bucket.env, target=bucket.uri)

    assert again.returncode == EXIT_SOME_FAILED, again.stderr[-3000:]
    assert [r.path for r in server.requests] == ["/gone.jpg"]
    assert not [p for p in emulator.downloaded(name) if p.endswith(".jpg")]  # no image read
    assert not [n for n in emulator.uploaded(name) if n.endswith(".jpg")]
    assert statuses(check_stored(bucket.objects(), bodies, expected)) == ["cached"] * 10 + [
        "failed"
    ]


def test_uploads_that_keep_failing_stop_the_crawl_and_the_same_command_completes(
    server, crawl, write_posts, s3_bucket
):
    bodies = {f"/{n}.png": images.noise_png(seed=n) for n in range(30)}
    urls = [server.add(path, body) for path, body in bodies.items()]
    posts = write_posts({f"p{n}": urls[n : n + 3] for n in range(0, 30, 3)})
    bucket = s3_bucket
    uploads = 0

    def refuse_after_six(call) -> bool:
        nonlocal uploads
        if call.is_upload and call.key.endswith(".png"):
            uploads += 1
        return uploads > 6

    bucket.front.refuse = refuse_after_six
    try:
        stopped = crawl(
            posts, *bucket.settings, "CONCURRENT_REQUESTS=2", env=bucket.env, target=bucket.uri
        )
    finally:
        bucket.front.refuse = lambda call: False

    assert stopped.returncode == EXIT_STOPPED, stopped.stderr[-3000:]
    errors = [line for line in stopped.stderr.splitlines() if "Stopping:" in line]
    assert len(errors) == 1, stopped.stderr[-3000:]
    assert "run the same command again" in errors[0]
    assert "Traceback" not in stopped.stderr, stopped.stderr[-5000:]
    objects = bucket.objects()
    stored = [name for name in objects if name.endswith(".png")]
    assert stored, "some images were stored before the bucket refused"
    for name in stored:  # whatever is there is whole
        assert objects[name] in bodies.values()
    assert "manifest.jsonl" not in objects  # its upload was refused too: no half feed

    server.reset_counters()
    done = crawl(posts, *bucket.settings, env=bucket.env, target=bucket.uri)

    assert done.returncode == EXIT_OK, done.stderr[-3000:]
    objects = bucket.objects()
    manifest = {post["id"]: post for post in jsonl(objects["manifest.jsonl"])}
    assert len(manifest) == 10
    for post_id, post in manifest.items():
        n = int(post_id[1:])
        for k, image in enumerate(post["images"]):
            assert objects[image["path"]] == bodies[f"/{n + k}.png"]
    refetched = {r.path for r in server.requests}
    assert not refetched & {f"/{name.rpartition('/')[2]}" for name in stored}
    assert len(refetched) == 30 - len(stored)


def test_a_killed_crawl_mirrors_its_index_as_it_goes_and_another_machine_finds_it(
    server, crawl, write_posts, s3_bucket, tmp_path
):
    bodies = {f"/{n}.png": images.noise_png(seed=n) for n in range(40)}
    urls = [server.add(path, Route(body=body, delay=0.1)) for path, body in bodies.items()]
    posts = write_posts({f"p{n}": [urls[n]] for n in range(40)})
    bucket = s3_bucket
    settings = [*bucket.settings, "IGIMAGES_INDEX_SYNC_INTERVAL=0", "CONCURRENT_REQUESTS=2"]
    running = start_crawl(posts, bucket.uri, *settings, env=bucket.env)
    try:
        wait_until(lambda: len([n for n in bucket.objects() if n.endswith(".png")]) >= 10)
    finally:
        running.kill()  # SIGKILL: no close, no final mirror
        running.wait()
    stored = {n for n in bucket.objects() if n.endswith(".png")}
    segments = [n for n in bucket.objects() if n.startswith(".igimages/index/")]
    assert segments, "nothing was mirrored while the crawl ran"

    # Another machine: its own, new state.
    elsewhere = [s.replace(str(bucket.state_dir), str(tmp_path / "elsewhere")) for s in settings]
    server.reset_counters()
    done = crawl(posts, *elsewhere, env=bucket.env, target=bucket.uri)

    assert done.returncode == EXIT_OK, done.stderr[-3000:]
    objects = bucket.objects()
    manifest = {post["id"]: post for post in jsonl(objects["manifest.jsonl"])}
    for n in range(40):
        (image,) = manifest[f"p{n}"]["images"]
        assert objects[image["path"]] == bodies[f"/{n}.png"]
    stored_posts = {name.partition("/")[0] for name in stored}
    assert {r.path for r in server.requests} == {
        f"/{n}.png" for n in range(40) if f"p{n}" not in stored_posts
    }  # each image the killed crawl stored is found, none fetched twice


def test_a_bucket_slower_than_the_cdn_holds_the_crawl_back(server, crawl, write_posts, s3_bucket):
    # Backpressure, not a queue: while uploads take 0.2 s each, in 2 threads,
    # the CDN is asked for no more images than the pipeline may hold.
    bodies = {f"/{n}.png": images.noise_png(seed=n) for n in range(30)}
    urls = [server.add(path, body) for path, body in bodies.items()]
    posts = write_posts({f"p{n}": [urls[n]] for n in range(30)})
    bucket = s3_bucket
    bucket.front.hold = lambda call: 0.2 if call.is_upload and call.key.endswith(".png") else 0
    try:
        result = crawl(
            posts, *bucket.settings, "IGIMAGES_POSTS_IN_FLIGHT=4", "IGIMAGES_STORE_UPLOADS=2",
            env=bucket.env, target=bucket.uri,
        )  # fmt: skip
    finally:
        bucket.front.hold = lambda call: 0.0

    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    stored = sorted(c.answered_at for c in bucket.calls() if c.is_upload and c.key.endswith(".png"))
    assert len(stored) == 30
    fetched = sorted(r.time for r in server.requests)
    backlog = max(n + 1 - sum(t <= at for t in stored) for n, at in enumerate(fetched))
    assert backlog <= 4, f"{backlog} images fetched and not yet stored"


def test_credentials_from_an_aws_profile_file_reach_the_bucket(
    server, crawl, write_posts, s3_bucket, tmp_path
):
    body = images.jpeg(seed=3)
    posts = write_posts({"a": [server.add("/a.jpg", body)]})
    profile = tmp_path / "credentials"
    profile.write_text(f"[default]\naws_access_key_id = test\naws_secret_access_key = {SECRET}\n")
    settings = [s for s in s3_bucket.settings if not s.startswith(("AWS_ACCESS", "AWS_SECRET"))]
    env = {k: v for k, v in s3_bucket.env.items() if not k.startswith(("AWS_ACCESS", "AWS_SECRET"))}

    result = crawl(
        posts, *settings, target=s3_bucket.uri,
        env={**env, "AWS_SHARED_CREDENTIALS_FILE": str(profile), "AWS_CONFIG_FILE": "/dev/null"},
    )  # fmt: skip

    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    [image] = jsonl(s3_bucket.objects()["manifest.jsonl"])[0]["images"]
    assert sha256(s3_bucket.objects()[image["path"]]) == sha256(body)
    assert SECRET not in result.stderr

    # No credentials anywhere (no settings, environment, profile or role): one
    # line, before any download.
    server.reset_counters()
    nowhere = {"AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_CONFIG_FILE": "/dev/null"}
    nowhere["AWS_EC2_METADATA_DISABLED"] = "true"
    result = crawl(posts, *settings, target=s3_bucket.uri, env={**env, **nowhere})

    assert result.returncode == EXIT_STOPPED
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"error: {s3_bucket.uri}")
    assert lines[0].endswith(": no AWS credentials: set AWS_ACCESS_KEY_ID, a profile or a role")
    assert server.requests == []

    # A key without its secret: the same, naming what is missing.
    result = crawl(posts, *settings, "AWS_ACCESS_KEY_ID=test", target=s3_bucket.uri, env=env)

    assert result.returncode == EXIT_STOPPED
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].endswith(": AWS_ACCESS_KEY_ID is set, AWS_SECRET_ACCESS_KEY is not")
    assert server.requests == []


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("ftp://host/images/", "ftp:// is not supported; give a folder"),
        ("s3://no-such-bucket-here/x/", "404 no such bucket"),
        ("gs://no-such-bucket-here/x/", "404 no such bucket"),
    ],
)
def test_a_store_that_cannot_be_used_is_one_line_before_any_download(
    server, crawl, write_posts, s3_bucket, gcs_bucket, store, message
):
    posts = write_posts({"a": [server.add("/a.jpg", images.jpeg(seed=1))]})
    bucket = gcs_bucket if store.startswith("gs:") else s3_bucket

    result = crawl(posts, *bucket.settings, env=bucket.env, target=store)

    assert result.returncode == EXIT_STOPPED
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert "Unclosed" not in result.stderr
    assert server.requests == []
    assert not (PROJECT_ROOT / store.partition("/")[0]).exists()  # no "ftp:" folder made here


def test_an_endpoint_that_is_no_url_is_one_line_before_any_download(
    server, crawl, write_posts, s3_bucket
):
    posts = write_posts({"a": [server.add("/a.jpg", images.jpeg(seed=1))]})

    result = crawl(
        posts, *s3_bucket.settings, "AWS_ENDPOINT_URL=http://exa mple.com",
        env=s3_bucket.env, target=s3_bucket.uri,
    )  # fmt: skip

    assert result.returncode == EXIT_STOPPED
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"error: {s3_bucket.uri.rstrip('/')}")
    assert lines[0].endswith(": AWS_ENDPOINT_URL=http://exa mple.com: not an http(s) URL")
    assert "panicked" not in result.stderr
    assert "Traceback" not in result.stderr
    assert server.requests == []


def test_unreachable_endpoint_and_denied_access_are_one_line(server, crawl, write_posts, tmp_path):
    from tests.cloud import free_port, moto_command, s3_client, server_process

    posts = write_posts({"a": [server.add("/a.jpg", images.jpeg(seed=1))]})
    closed = free_port()
    common = [
        "AWS_ACCESS_KEY_ID=nobody",
        f"AWS_SECRET_ACCESS_KEY={SECRET}",
        "AWS_REGION_NAME=us-east-1",
        f"IGIMAGES_STATE_DIR={tmp_path / 'state'}",
    ]
    from tests.conftest import crawl_env

    env = crawl_env(AWS_MAX_ATTEMPTS="1")
    unreachable = crawl(
        posts, f"AWS_ENDPOINT_URL=http://127.0.0.1:{closed}", *common, env=env, target="s3://b/x/"
    )
    # A server that checks credentials (moto with IAM enforced) and knows none of ours.
    port = free_port()
    with server_process(
        moto_command(port), port, tmp_path / "moto.log", INITIAL_NO_AUTH_ACTION_COUNT="1"
    ):
        s3_client(f"http://127.0.0.1:{port}").create_bucket(Bucket="locked")
        denied = crawl(
            posts, f"AWS_ENDPOINT_URL=http://127.0.0.1:{port}", *common, env=env,
            target="s3://locked/x/",
        )  # fmt: skip

    for result, message in ((unreachable, "Could not connect"), (denied, "403")):
        assert result.returncode == EXIT_STOPPED
        lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, result.stderr[-3000:]
        assert message in lines[0]
        assert "Traceback" not in result.stderr
        assert SECRET not in result.stderr
    assert server.requests == []
