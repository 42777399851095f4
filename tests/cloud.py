"""Real object stores on loopback for the tests: moto's S3 server, a GCS emulator, Azurite.

``ApiFront`` sits between the crawl and any of them: it forwards every
request and records what the API was asked (an upload and a server-side copy
are both PUTs, the copy carries ``x-amz-copy-source`` or, on Azure,
``x-ms-copy-source``; a GCS upload names its object in its body), and it can
refuse requests, as a bucket that stops accepting writes mid-crawl does. With
a TLS context it serves HTTPS, as S3 does, in front of a plain-HTTP server.
``TunnelProxy`` is an HTTP proxy between the crawl and a store, the only
place where ``PROXIED_HOST`` resolves.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import sysconfig
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

#: Where the interpreter running the tests has its commands (moto_server and the
#: GCS emulator come with the test requirements): any virtual environment, or none.
SCRIPTS = Path(sysconfig.get_path("scripts"))
#: npm packages the tests run as servers (package.json), installed there by
#: scripts/install-system-packages.sh, as CI does (git ignores node_modules).
NODE_SERVERS = Path(__file__).parent / "servers"
#: A name only ``TunnelProxy`` resolves (to 127.0.0.1): an endpoint under it is
#: reached through the proxy or not at all. The tests' certificates name it.
PROXIED_HOST = "objects.internal.test"
#: Azurite's well-known account and key (published: they open nothing but the emulator).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


@contextmanager
def server_process(command: list[str], port: int, log: Path, **env: str) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        _wait_for_port(port, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass(frozen=True)
class ApiCall:
    method: str
    path: str  # unquoted
    query: str
    copy_source: str | None
    body_start: bytes
    payload_hash: str | None = None  # x-amz-content-sha256: the body's, or UNSIGNED-PAYLOAD
    status: int = 0
    answered_at: float = 0.0  # time.monotonic(), as the image server's records
    proxied: bool = False  # asked in absolute form (http://host/path): by a proxy

    @property
    def bucket(self) -> str:  # S3's path style: /bucket/key
        return self.path.lstrip("/").partition("/")[0]

    @property
    def key(self) -> str:
        return self.path.lstrip("/").partition("/")[2]

    @property
    def is_upload(self) -> bool:
        return self.method == "PUT" and self.copy_source is None and bool(self.key)

    @property
    def is_copy(self) -> bool:
        return self.method == "PUT" and self.copy_source is not None


class ApiFront:
    """A forwarding HTTP front for an object store's API server, recording each call."""

    def __init__(self, backend_port: int, tls: ssl.SSLContext | None = None) -> None:
        self.backend_port = backend_port
        self.scheme = "https" if tls else "http"
        self.calls: list[ApiCall] = []
        self.refuse: Callable[[ApiCall], bool] = lambda call: False
        self.hold: Callable[[ApiCall], float] = lambda call: 0.0  # seconds, a slow bucket
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def calls_to(self, bucket: str) -> list[ApiCall]:
        with self._lock:
            return [call for call in self.calls if call.bucket == bucket]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self._read_body()
                parts = urlsplit(self.path)
                copy_source = self.headers["x-amz-copy-source"] or self.headers["x-ms-copy-source"]
                call = ApiCall(
                    self.command, unquote(parts.path), parts.query, copy_source, body[:4096],
                    self.headers["x-amz-content-sha256"], proxied=bool(parts.scheme),
                )  # fmt: skip
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                time.sleep(front.hold(call))
                if front.refuse(call):
                    payload = b"<Error><Code>ServiceUnavailable</Code></Error>"
                    status, headers = 503, [("Content-Type", "application/xml")]
                else:
                    upstream = http.client.HTTPConnection(
                        "127.0.0.1", front.backend_port, timeout=30
                    )
                    names = {"host", "content-length", "transfer-encoding", "connection"}
                    headers_out = {k: v for k, v in self.headers.items() if k.lower() not in names}
                    upstream.request(self.command, target, body=body, headers=headers_out)
                    answer = upstream.getresponse()
                    payload = answer.read()
                    status = answer.status
                    headers = [
                        (k, v)
                        for k, v in answer.getheaders()
                        if k.lower() not in ("content-length", "transfer-encoding", "connection")
                    ]
                    upstream.close()
                with front._lock:
                    front.calls.append(replace(call, status=status, answered_at=time.monotonic()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        return Handler


class LoopbackServer:
    """A TCP server on 127.0.0.1 serving each connection in a thread of its own."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(
                target=self._serve, args=(client, self.connections), daemon=True
            ).start()

    def _serve(self, client: socket.socket, number: int) -> None:
        """Serves the ``number``-th connection (from 1)."""
        raise NotImplementedError


class TunnelProxy(LoopbackServer):
    """An HTTP proxy on loopback that resolves every name to 127.0.0.1, recording what
    it is asked: a tunnel for ``CONNECT``, and a request in absolute form relayed,
    with the rest of its connection, to the port it names.

    ``refuse``: the status to answer every request with instead (407, 502...).
    """

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.asked: list[tuple[str, str, str]] = []  # method, target, Proxy-Authorization
        self.relayed = 0  # bytes sent on, either way
        self._lock = threading.Lock()
        super().__init__()

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def _serve(self, client: socket.socket, number: int) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            if not (data := client.recv(65536)):
                client.close()
                return
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        fields = dict(line.partition(":")[::2] for line in lines[1:])
        authorization = next(
            (v.strip() for k, v in fields.items() if k.lower() == "proxy-authorization"), ""
        )
        with self._lock:
            self.asked.append((method, target, authorization))
        if self.refuse:
            client.sendall(f"HTTP/1.1 {self.refuse} No\r\ncontent-length: 0\r\n\r\n".encode())
            client.close()
            return
        if method == "CONNECT":
            upstream = socket.create_connection(("127.0.0.1", int(target.rpartition(":")[2])))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream = socket.create_connection(("127.0.0.1", urlsplit(target).port or 80))
            upstream.sendall(head + b"\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                with self._lock:
                    self.relayed += len(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            sink.close()


def loopback_tls(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA of the tests' own (its certificate written in ``folder``, for the client to
    trust) and a server context with a certificate it signed for 127.0.0.1 and
    ``PROXIED_HOST``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: Any, issuer: Any, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName(PROXIED_HOST)]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "igimages tests CA")])
    ca = certificate("igimages tests CA", ca_key, ca_name, ca_key, ca=True)
    server = certificate("127.0.0.1", server_key, ca.subject, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return folder / "ca.pem", context


def s3_client(endpoint: str, key: str = "test", secret: str = "test") -> Any:
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )


def new_bucket_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


class GCSEmulator:
    """gcp-storage-emulator, in memory, seen through an ``ApiFront``."""

    def __init__(self, front: ApiFront) -> None:
        self.front = front
        self.host = front.endpoint

    def calls(self, bucket: str) -> list[ApiCall]:
        return [c for c in self.front.calls if f"/b/{bucket}/" in f"{c.path}/"]

    def uploaded(self, bucket: str) -> list[str]:
        """The object names of the uploads started (multipart, or a resumable session)."""
        names = []
        for call in self.calls(bucket):
            started = call.path.startswith("/upload/") and "upload_id" not in call.query
            if started and (match := re.search(rb'"name":\s*"([^"]+)"', call.body_start)):
                names.append(match[1].decode())
        return names

    def downloaded(self, bucket: str) -> list[str]:
        return [c.path for c in self.calls(bucket) if "alt=media" in c.query]

    def rewrites(self, bucket: str) -> list[str]:
        return [c.path for c in self.calls(bucket) if "/rewriteTo/" in c.path]

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        os.environ["STORAGE_EMULATOR_HOST"] = self.host
        return storage.Client(project="test", credentials=AnonymousCredentials())


def gcs_command(port: int) -> list[str]:
    return [
        str(SCRIPTS / "gcp-storage-emulator"),
        "start",
        "--host=127.0.0.1",
        f"--port={port}",
        "--in-memory",
    ]


def moto_command(port: int) -> list[str]:
    return [str(SCRIPTS / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]


def azurite_command(port: int) -> list[str]:
    """Azurite's Blob service (scripts/install-system-packages.sh installs it)."""
    binary = NODE_SERVERS / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: run scripts/install-system-packages.sh")
    return [
        str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port),
        "--inMemoryPersistence", "--skipApiVersionCheck", "--silent",
    ]  # fmt: skip


def azure_client(endpoint: str) -> Any:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};"
    )
