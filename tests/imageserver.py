"""A real HTTP/1.1 image server on loopback, with injectable faults.

Tests run Scrapy against genuine sockets instead of mocks, so timeouts,
truncated bodies, retries and concurrency limits are exercised for real.
The server also accepts proxy-style absolute URIs, so pointing
``http_proxy`` at it lets tests use CDN hostnames; a crawl checks where a
name resolves before it hands it to a proxy, so those names resolve through
the tests' own override (``conftest.proxy_env``).
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from cryptography import x509  # installed with Scrapy
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Route:
    """How one path answers; the fault fields simulate misbehaving CDNs."""

    body: bytes = b""
    status: int = 200
    content_type: str = "image/jpeg"
    # A callable value is called at answer time (e.g. a Retry-After date).
    headers: dict[str, str | Callable[[], str]] = field(default_factory=dict)
    delay: float = 0.0
    truncate_to: int | None = None
    drop: bool = False  # close the connection without answering
    # Seconds on its way: it reaches the host (counts as in flight) this late.
    late: float = 0.0
    # Answers for the first requests to this path, in order; then this route.
    first: list[Route] = field(default_factory=list)


@dataclass
class Load:
    """How the whole server answers under load, whatever the path asked for."""

    # More requests than this being served: answer ``refusal`` instead (0: never).
    refuse_above: int = 0
    refusal: Route = field(default_factory=lambda: Route(b"slow down\n", 429, "text/plain"))
    # More requests than this in flight: each answer waits its delay times
    # in-flight / knee, as on a full link (0: never).
    knee: int = 0
    # From ``start`` to ``end`` seconds after the first request: every answer is 503.
    outage: tuple[float, float] | None = None


@dataclass
class RequestRecord:
    """One received request, so tests can assert on what was fetched and when."""

    path: str
    query: str
    host: str
    time: float
    in_flight: int = 0  # requests in flight when it arrived, itself included
    status: int = 0  # what it was answered


NOT_FOUND = Route(b"not found\n", 404, "text/plain; charset=utf-8")
OUTAGE = Route(b"down for maintenance\n", 503, "text/plain")


class _State:
    """Routes, records and counters; shareable so several hosts count as one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.routes: dict[str, Route] = {}
        self.load = Load()
        self.requests: list[RequestRecord] = []
        self.in_flight = 0
        self.serving = 0  # in flight and not refused by ``load``
        self.in_flight_per_host: dict[str, int] = {}
        self.max_in_flight = 0
        self.max_in_flight_per_host: dict[str, int] = {}

    def enter(self, record: RequestRecord) -> None:
        with self.lock:
            self.requests.append(record)
            self.in_flight += 1
            record.in_flight = self.in_flight
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            now = self.in_flight_per_host.get(record.host, 0) + 1
            self.in_flight_per_host[record.host] = now
            best = self.max_in_flight_per_host.get(record.host, 0)
            self.max_in_flight_per_host[record.host] = max(best, now)

    def answer(self, record: RequestRecord) -> tuple[Route, float, bool]:
        """The route for ``record``, how long to wait, and whether it is served."""
        with self.lock:
            route = self.routes.get(record.path)
            if route is not None and route.first:
                route = route.first.pop(0)
            route = route or NOT_FOUND
            load, served = self.load, False
            since_first = record.time - self.requests[0].time
            if load.outage and load.outage[0] <= since_first < load.outage[1]:
                route = OUTAGE
            elif load.refuse_above and self.serving >= load.refuse_above:
                route = load.refusal
            else:
                served = True
                self.serving += 1
            delay = route.delay
            if load.knee and record.in_flight > load.knee:
                delay *= record.in_flight / load.knee
            record.status = route.status
            return route, delay, served

    def leave(self, host: str, served: bool) -> None:
        with self.lock:
            self.in_flight -= 1
            self.serving -= served
            self.in_flight_per_host[host] -= 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers go out one write each: with Nagle's algorithm, the client's
    # delayed ACK then held every answer back some 40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean."""

    def _serve(self, send_body: bool) -> None:
        state = self.server.state
        if self.path.startswith("/"):
            path, _, query = self.path.partition("?")
            host = urlsplit("//" + self.headers.get("Host", "")).hostname or ""
        else:  # absolute URI: we are the proxy standing in for a CDN host
            url = urlsplit(self.path)
            path, query, host = url.path or "/", url.query, url.hostname or ""
        if (route := state.routes.get(path)) is not None and route.late:
            time.sleep(route.late)
        record = RequestRecord(path, query, host, time.monotonic())
        state.enter(record)
        served = False
        try:
            route, delay, served = state.answer(record)
            if delay:
                time.sleep(delay)
        finally:
            # Before the answer: once the client has it, it may send its next
            # request before this thread runs again, and be counted twice.
            state.leave(host, served)
        try:
            self._respond(route, send_body)
        except ConnectionError:
            self.close_connection = True  # client gave up (e.g. its timeout)

    def _respond(self, route: Route, send_body: bool) -> None:
        if route.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(route.status)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(route.body)))
        for name, value in route.headers.items():
            self.send_header(name, value() if callable(value) else value)
        self.end_headers()
        if not send_body:
            return
        if route.truncate_to is None:
            self.wfile.write(route.body)
            return
        self.wfile.write(route.body[: route.truncate_to])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops the SYNs of a burst of new connections
    # while the accepting thread waits for the GIL; the client then retries
    # after a second, long enough for DOWNLOAD_TIMEOUT=1 to fire.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        super().__init__(address, _Handler)


class ImageServer:
    """Start/stop a loopback server; pass ``shared`` to pool state with another."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        shared: ImageServer | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = 0
        self.tls = tls  # a server context: HTTPS instead of HTTP
        self._state = shared._state if shared is not None else _State()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._httpd = _Server((self.host, 0), self._state)
        if self.tls is not None:  # the handshake happens in the handler's thread
            self._httpd.socket = self.tls.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str, host: str | None = None) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def add(self, path: str, route: Route | bytes) -> str:
        """Register ``route`` for ``path`` (any query string matches it)."""
        if isinstance(route, bytes):
            route = Route(body=route)
        with self._state.lock:
            self._state.routes[path.partition("?")[0]] = route
        return self.url(path)

    def set_load(self, load: Load) -> None:
        """Answer every path as ``load`` says, from now on."""
        with self._state.lock:
            self._state.load = load

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of every request received so far, in arrival order."""
        with self._state.lock:
            return list(self._state.requests)

    def hits(self, path: str) -> int:
        path = path.partition("?")[0]
        return sum(1 for r in self.requests if r.path == path)

    @property
    def max_in_flight(self) -> int:
        return self._state.max_in_flight

    @property
    def max_in_flight_per_host(self) -> dict[str, int]:
        with self._state.lock:
            return dict(self._state.max_in_flight_per_host)

    def reset_counters(self) -> None:
        """Forget requests and maxima; requests still running stay counted."""
        with self._state.lock:
            self._state.requests.clear()
            self._state.max_in_flight = self._state.in_flight
            self._state.max_in_flight_per_host = {
                h: n for h, n in self._state.in_flight_per_host.items() if n
            }


def self_signed_tls(directory: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context
