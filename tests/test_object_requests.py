"""The requests a bucket crawl makes on its loop: their HTTP against a loopback
server that misbehaves on cue, through a proxy too, and their S3 signatures
against botocore's."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from igimages.store.loophttp import ConnectionFailed, LoopHTTP
from igimages.store.sigv4 import SigV4, object_path
from tests.cloud import PROXIED_HOST, LoopbackServer, TunnelProxy, free_port, loopback_tls


@dataclass
class Seen:
    connection: int
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer(LoopbackServer):
    """HTTP/1.1 on loopback whose n-th answer (from 0) is ``answer(n)``: the raw bytes
    to send, and whether to close the connection after them (None: never answer)."""

    def __init__(
        self, answer: Callable[[int], tuple[bytes | None, bool]], tls: ssl.SSLContext | None
    ) -> None:
        self.answer = answer
        self.tls = tls
        self.seen: list[Seen] = []
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, client: socket.socket, number: int) -> None:
        if self.tls is not None:
            try:
                client = self.tls.wrap_socket(client, server_side=True)
            except ssl.SSLError:  # the client refused the certificate
                client.close()
                return
        stream = client.makefile("rb")
        with client:
            while line := stream.readline():
                method, target, _ = line.decode().split(" ", 2)
                headers = {}
                while (header := stream.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = stream.read(int(headers.get("content-length", 0)))
                self.seen.append(Seen(number, method, target, headers, body))
                payload, close = self.answer(len(self.seen) - 1)
                if payload is None:
                    time.sleep(30)
                    return
                client.sendall(payload)
                if close:
                    return


def answer(status: int, body: bytes = b"{}", *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def send(client: LoopHTTP, *requests: tuple[str, bytes]) -> list:
    async def run() -> list:
        try:
            return [
                await client.send("PUT", target, body, _no_headers) for target, body in requests
            ]
        finally:
            await client.close()

    return asyncio.run(run())


async def _no_headers() -> dict[str, str]:
    return {"x-test": "1"}


@pytest.fixture
def scripted():
    servers: list[ScriptedServer] = []

    def start(
        answer: Callable[[int], tuple[bytes | None, bool]], tls: ssl.SSLContext | None = None
    ) -> ScriptedServer:
        servers.append(ScriptedServer(answer, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def proxies(monkeypatch):
    """Starts ``TunnelProxy`` servers; the environment names no proxy but the test's."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    started: list[TunnelProxy] = []

    def start(refuse: int = 0) -> TunnelProxy:
        started.append(TunnelProxy(refuse))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


def test_requests_share_one_kept_connection_and_carry_their_bodies(scripted):
    server = scripted(lambda n: (answer(200, f"answer {n}".encode()), False))
    bodies = [hashlib.sha256(bytes([n])).digest() * 4000 for n in range(4)]

    answers = send(LoopHTTP(server.url), *((f"/o/{n}", body) for n, body in enumerate(bodies)))

    assert [(a.status, a.body) for a in answers] == [
        (200, f"answer {n}".encode()) for n in range(4)
    ]
    assert [s.body for s in server.seen] == bodies
    assert [s.target for s in server.seen] == [f"/o/{n}" for n in range(4)]
    assert {s.connection for s in server.seen} == {1}
    assert server.seen[0].headers["host"] == f"127.0.0.1:{server.port}"
    assert server.seen[0].headers["x-test"] == "1"


def test_a_chunked_answer_and_one_ended_by_closing_are_read_whole(scripted):
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    unframed = b"HTTP/1.1 201 OK\r\nConnection: close\r\n\r\nuntil the end"
    server = scripted(lambda n: (chunked, False) if n == 0 else (unframed, True))

    answers = send(LoopHTTP(server.url, attempts=1), ("/a", b"1"), ("/b", b"2"), ("/c", b"3"))

    assert [(a.status, a.body) for a in answers] == [
        (200, b"hello world"), (201, b"until the end"), (201, b"until the end"),
    ]  # fmt: skip
    assert [s.connection for s in server.seen] == [1, 1, 2]  # a new one after the close


def test_a_connection_the_server_closed_while_idle_is_replaced_at_no_attempt(scripted):
    # The server drops each connection after its answer, without saying so:
    # the next request finds it closed and goes on a new one, even with one try.
    server = scripted(lambda n: (answer(200), True))

    answers = send(LoopHTTP(server.url, attempts=1), *((f"/{n}", b"x" * 1000) for n in range(3)))

    assert [a.status for a in answers] == [200, 200, 200]
    assert [s.connection for s in server.seen] == [1, 2, 3]


def test_transient_refusals_are_tried_again_and_the_last_answer_is_returned(scripted):
    server = scripted(lambda n: (answer(503 if n in (0, 1, 3, 4, 5) else 200), False))
    client = LoopHTTP(server.url, attempts=3, backoff=0.01)

    first, second = send(client, ("/a", b"a"), ("/b", b"b"))

    assert first.status == 200  # 503, 503, 200
    assert [s.target for s in server.seen[:3]] == ["/a"] * 3
    assert second.status == 503  # three tries, three refusals: the last one is the answer
    [final] = send(LoopHTTP(server.url, attempts=1), ("/c", b"c"))
    assert final.status == 200
    assert len(server.seen) == 7
    refused = scripted(lambda n: (answer(404), False))
    [not_found] = send(LoopHTTP(refused.url, attempts=4, backoff=0.01), ("/d", b"d"))
    assert not_found.status == 404
    assert len(refused.seen) == 1  # not transient: asked once


def test_no_answer_and_no_server_fail_after_their_attempts(scripted):
    silent = scripted(lambda n: (None, False))
    began = time.monotonic()

    with pytest.raises(ConnectionFailed, match=r"no answer in 0\.3 s"):
        send(LoopHTTP(silent.url, attempts=2, timeout=0.3, backoff=0.01), ("/a", b"a"))

    assert 0.6 <= time.monotonic() - began < 5
    assert len(silent.seen) == 2
    with pytest.raises(ConnectionFailed, match="Could not connect to the endpoint"):
        send(LoopHTTP(f"http://127.0.0.1:{free_port()}", attempts=2, backoff=0.01), ("/a", b""))
    hang_up = scripted(lambda n: (b"", True))  # reads the request, closes without a word
    with pytest.raises(ConnectionFailed, match="closed the connection"):
        send(LoopHTTP(hang_up.url, attempts=3, backoff=0.01), ("/a", b"a"))
    assert len(hang_up.seen) == 3
    garbled = scripted(lambda n: (b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", False))
    with pytest.raises(ConnectionFailed, match="a broken answer"):
        send(LoopHTTP(garbled.url, attempts=2, backoff=0.01), ("/a", b"a"))
    assert len(garbled.seen) == 2


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def test_an_http_endpoint_is_asked_of_the_environments_proxy_unless_no_proxy_names_it(
    scripted, proxies, monkeypatch
):
    server = scripted(lambda n: (answer(200, f"answer {n}".encode()), False))
    proxy = proxies()
    monkeypatch.setenv("http_proxy", proxy.url("someone:p%40ss%3Aword"))
    endpoint = f"http://{PROXIED_HOST}:{server.port}"  # resolves at the proxy only

    answers = send(LoopHTTP(endpoint, attempts=1), ("/b/k", b"1"), ("/b/l%20m", b"2"))

    assert [(a.status, a.body) for a in answers] == [(200, b"answer 0"), (200, b"answer 1")]
    assert [s.target for s in server.seen] == [f"{endpoint}/b/k", f"{endpoint}/b/l%20m"]
    assert [s.body for s in server.seen] == [b"1", b"2"]
    assert {s.connection for s in server.seen} == {1}  # the proxy's connection, kept
    assert server.seen[0].headers["host"] == f"{PROXIED_HOST}:{server.port}"
    assert server.seen[0].headers["proxy-authorization"] == basic("someone:p@ss:word")
    assert [(method, auth) for method, _, auth in proxy.asked] == [
        ("PUT", basic("someone:p@ss:word"))
    ]

    # no_proxy names the endpoint: it is asked directly, in origin form.
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    [direct] = send(LoopHTTP(server.url, attempts=1), ("/b/n", b"3"))
    assert (direct.status, server.seen[-1].target) == (200, "/b/n")
    assert "proxy-authorization" not in server.seen[-1].headers
    assert len(proxy.asked) == 1


def test_an_https_endpoint_is_reached_through_the_proxys_tunnel(
    scripted, proxies, monkeypatch, tmp_path
):
    ca, server_tls = loopback_tls(tmp_path)
    server = scripted(lambda n: (answer(200, f"answer {n}".encode()), False), tls=server_tls)
    proxy = proxies()
    monkeypatch.setenv("https_proxy", proxy.url("someone:secret"))
    endpoint = f"https://{PROXIED_HOST}:{server.port}"
    trusted = ssl.create_default_context(cafile=ca)

    answers = send(LoopHTTP(endpoint, trusted, attempts=1), ("/b/k", b"1"), ("/b/l", b"2"))

    assert [(a.status, a.body) for a in answers] == [(200, b"answer 0"), (200, b"answer 1")]
    assert proxy.asked == [("CONNECT", f"{PROXIED_HOST}:{server.port}", basic("someone:secret"))]
    assert [s.target for s in server.seen] == ["/b/k", "/b/l"]  # origin form, inside TLS
    assert {s.connection for s in server.seen} == {1}  # one tunnel, kept
    assert "proxy-authorization" not in server.seen[0].headers  # the proxy's, not the server's
    assert proxy.relayed > 0

    # The tunnel's far end must still prove it is the endpoint.
    with pytest.raises(ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED"):
        send(LoopHTTP(endpoint, ssl.create_default_context(), attempts=1), ("/b/m", b"3"))
    assert len(server.seen) == 2


def test_a_proxy_that_refuses_or_is_not_http_fails_in_one_line(proxies, monkeypatch):
    refusing = proxies(refuse=407)
    monkeypatch.setenv("https_proxy", refusing.url())
    endpoint = f"https://{PROXIED_HOST}:443"

    refused = r"through the proxy 127\.0\.0\.1:\d+ \(it refused the tunnel: 407\)"
    with pytest.raises(ConnectionFailed, match=refused):
        send(LoopHTTP(endpoint, attempts=2, backoff=0.01), ("/b/k", b"1"))
    assert [method for method, _, _ in refusing.asked] == ["CONNECT", "CONNECT"]

    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectionFailed, match=r"Could not connect through the proxy 127\.0\.0\.1"):
        send(LoopHTTP(endpoint, attempts=1), ("/b/k", b"1"))

    monkeypatch.setenv("https_proxy", "socks5://someone:secret@127.0.0.1:1080")
    only_http = r"^the https proxy 127\.0\.0\.1: only http:// proxies are supported$"
    with pytest.raises(ValueError, match=only_http) as error:
        LoopHTTP(endpoint)
    assert "secret" not in str(error.value)


@pytest.mark.parametrize("token", [None, "a-session-token"])
@pytest.mark.parametrize("key", ["post/0_ab.jpg", "prefix with space/é+&=;/0_x.png"])
def test_s3_signatures_are_the_ones_botocore_makes(monkeypatch, key, token):
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    signer = SigV4(credentials, "eu-west-3")
    body = b"\xff\xd8 an image"
    digest = hashlib.sha256(body).hexdigest()
    path = object_path("the-bucket", key)
    headers = {"content-type": "image/jpeg", "x-amz-meta-igimages-sha256": digest}
    headers["x-amz-copy-source"] = object_path("the-bucket", key)
    monkeypatch.setattr(
        time, "gmtime", lambda *_: time.struct_time((2026, 12, 6, 9, 8, 7, 6, 340, 0))
    )

    ours = signer.sign("PUT", "s3.eu-west-3.amazonaws.com", path, headers, digest)

    assert ours["x-amz-date"] == "20261206T090807Z"
    request = AWSRequest("PUT", f"https://s3.eu-west-3.amazonaws.com{path}", data=body)
    for name, value in ours.items():
        if name != "authorization":
            request.headers[name] = value
    request.context["timestamp"] = ours["x-amz-date"]
    botocore = S3SigV4Auth(credentials, "s3", "eu-west-3")
    canonical = botocore.canonical_request(request)
    expected = botocore.signature(botocore.string_to_sign(request, canonical), request)
    assert ours["authorization"].endswith(f"Signature={expected}")
    assert "Credential=AKIDEXAMPLE/20261206/eu-west-3/s3/aws4_request" in ours["authorization"]
    assert ours.get("x-amz-security-token") == token


def test_a_server_that_checks_signatures_takes_the_uploads_and_copies_under_their_keys(tmp_path):
    """moto with IAM enforced recomputes each request's signature from what it
    received: a key with spaces and reserved characters, a session-less user,
    a copy; and refuses the same requests signed with a wrong secret."""
    from scrapy.settings import Settings

    from igimages.store import StoreUri
    from igimages.store.buckets import S3Store
    from igimages.store.index import StoreError
    from tests.cloud import moto_command, s3_client, server_process

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with server_process(
        moto_command(port), port, tmp_path / "moto.log", INITIAL_NO_AUTH_ACTION_COUNT="4"
    ):
        import botocore.session

        iam = botocore.session.get_session().create_client(
            "iam", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="setup", aws_secret_access_key="setup",
        )  # fmt: skip
        iam.create_user(UserName="crawler")
        allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        policy = json.dumps({"Version": "2012-10-17", "Statement": [allow]})
        iam.put_user_policy(UserName="crawler", PolicyName="all", PolicyDocument=policy)
        key = iam.create_access_key(UserName="crawler")["AccessKey"]
        admin = s3_client(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
        admin.create_bucket(Bucket="signed")

        def connect(secret: str):
            settings = Settings({
                "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION_NAME": "us-east-1",
                "AWS_MAX_ATTEMPTS": 1,
            })  # fmt: skip
            return S3Store.connect(StoreUri.parse("s3://signed/"), settings)

        body = hashlib.sha256(b"image").digest() * 5000
        names = ["a post/0_x y.jpg", "p+q&r=s;t/é ü/1_k.png"]

        async def store(bucket) -> None:
            try:
                for name in names:
                    await bucket.put_async(name, body, {"igimages-sha256": "1"}, "image/jpeg")
                await bucket.copy_async(names[0], f"copies/{names[0]}")
            finally:
                await bucket.disconnect()

        asyncio.run(store(connect(key["SecretAccessKey"])))
        listed = admin.list_objects_v2(Bucket="signed")["Contents"]
        assert sorted(entry["Key"] for entry in listed) == sorted([*names, f"copies/{names[0]}"])
        for name in (*names, f"copies/{names[0]}"):
            stored = admin.get_object(Bucket="signed", Key=name)
            assert stored["Body"].read() == body
            assert stored["Metadata"] == {"igimages-sha256": "1"}
            assert stored["ContentType"] == "image/jpeg"

        with pytest.raises(
            StoreError, match=r"^s3://signed/: 403 access denied \(SignatureDoesNotMatch\)"
        ):
            asyncio.run(store(connect("not-the-secret")))


def test_expiring_credentials_are_refreshed_off_the_loop_and_sign_from_then_on():
    from botocore.credentials import RefreshableCredentials

    refreshed_in: list[str] = []

    def fetch(secret: str, minutes: int):
        def metadata() -> dict[str, str]:
            refreshed_in.append(threading.current_thread().name)
            expiry = time.gmtime(time.time() + minutes * 60)
            return {
                "access_key": "AKIDROLE", "secret_key": secret, "token": f"token-{secret}",
                "expiry_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", expiry),
            }  # fmt: skip

        return metadata

    credentials = RefreshableCredentials.create_from_metadata(
        fetch("first", 1)(), refresh_using=fetch("second", 60), method="role"
    )  # expires within botocore's 15 minutes of advance: due for a refresh
    refreshed_in.clear()
    signer = SigV4(credentials, "us-east-1")

    async def sign() -> dict[str, str]:
        await signer.refresh()
        return signer.sign("PUT", "h", "/b/k", {}, hashlib.sha256(b"").hexdigest())

    headers = asyncio.run(sign())

    assert refreshed_in
    assert threading.main_thread().name not in refreshed_in
    assert headers["x-amz-security-token"] == "token-second"
    again = asyncio.run(sign())  # fresh now: no other refresh
    assert len(refreshed_in) == 1
    assert again["x-amz-security-token"] == "token-second"


def test_s3_uploads_and_copies_carry_the_acl_metadata_and_hash_and_a_copy_refused_late_fails(
    scripted,
):
    """What the S3 store's own requests hold, as the server reads them; and a
    CopyObject whose 200 carries an error (S3 sends one when a copy fails after
    its answer began) is a failure, not a stored object."""
    from scrapy.settings import Settings

    from igimages.store import StoreUri
    from igimages.store.buckets import S3Store
    from igimages.store.index import StoreError

    late_error = b"<?xml version='1.0'?><Error><Code>InternalError</Code></Error>"
    server = scripted(lambda n: (answer(200, late_error if n == 2 else b""), False))
    settings = Settings({
        "AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION_NAME": "us-east-1", "FILES_STORE_S3_ACL": "public-read",
    })  # fmt: skip
    bucket = S3Store.connect(StoreUri.parse("s3://b/"), settings)
    body = b"\xff\xd8 image bytes"
    digest = hashlib.sha256(body).hexdigest()

    async def store() -> None:
        try:
            await bucket.put_async(
                "p/0_k.jpg", body, {"igimages-sha256": digest}, "image/jpeg", digest
            )
            await bucket.copy_async("p/0_k.jpg", "q/0_k.jpg")
            await bucket.copy_async("p/0_k.jpg", "r/0_k.jpg")
        finally:
            await bucket.disconnect()

    with pytest.raises(StoreError, match=r"^s3://b/: 500 InternalError$"):
        asyncio.run(store())

    upload, copy, _ = server.seen
    assert (upload.method, upload.target, upload.body) == ("PUT", "/b/p/0_k.jpg", body)
    assert upload.headers["x-amz-content-sha256"] == digest
    assert upload.headers["x-amz-meta-igimages-sha256"] == digest
    assert upload.headers["content-type"] == "image/jpeg"
    assert upload.headers["cache-control"] == "max-age=172800"
    assert (copy.target, copy.body) == ("/b/q/0_k.jpg", b"")
    assert copy.headers["x-amz-copy-source"] == "/b/p/0_k.jpg"
    assert {s.headers["x-amz-acl"] for s in server.seen} == {"public-read"}


def test_s3_requests_keep_the_endpoints_path_and_sign_for_the_region_botocore_finds(
    scripted, monkeypatch
):
    """An endpoint under a path (a gateway that serves S3 at /s3/) keeps it, and
    without AWS_REGION_NAME the region is botocore's (here AWS_DEFAULT_REGION)."""
    from scrapy.settings import Settings

    from igimages.store import StoreUri
    from igimages.store.buckets import S3Store

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    server = scripted(lambda n: (answer(200, b""), False))
    settings = Settings({
        "AWS_ENDPOINT_URL": f"{server.url}/s3/", "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
    })  # fmt: skip
    bucket = S3Store.connect(StoreUri.parse("s3://b/"), settings)

    async def store() -> None:
        try:
            await bucket.put_async("p/0 k.jpg", b"x", {}, "image/jpeg")
        finally:
            await bucket.disconnect()

    asyncio.run(store())

    [upload] = server.seen
    assert upload.target == "/s3/b/p/0%20k.jpg"
    assert "/eu-north-1/s3/aws4_request" in upload.headers["authorization"]


def test_a_gcs_call_retried_in_vain_says_what_its_last_try_met():
    """google-cloud-storage gives up with "Timeout of 120.0s exceeded"; the line says
    why (here a certificate that no trusted CA signed)."""
    from google.api_core.exceptions import RetryError, ServiceUnavailable

    from igimages.store.objects import _gcs_message

    refused = requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify")
    message = _gcs_message(RetryError("Timeout of 120.0s exceeded", cause=refused))
    assert message == "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify"
    unavailable = ServiceUnavailable("slow down")
    assert _gcs_message(RetryError("Timeout", cause=unavailable)) == "503 slow down"
