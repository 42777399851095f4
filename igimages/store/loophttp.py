"""HTTP/1.1 requests on the running asyncio loop, for a bucket's uploads and copies.

A bucket crawl makes one request per image, so what each costs the crawl's
process is most of what a bucket costs over a folder. For a 140 KB upload,
16 at once, this machine measured (``benchmarks/object_clients.py``) about
0.5 ms of CPU for aiohttp or obstore (on its own threads), 0.27 for h11's
state machine under an asyncio protocol, and 0.17 to 0.22 for this one, a
third to half of it the kernel's send: the request is written whole, and the
answer read as RFC 9112 frames it, by its length, its chunks or the end of
the connection.

Connections are kept alive, one per request in flight, and closed with the
client. A request is tried again, with a growing pause, while the answer may
change (no answer, 408, 429, 5xx); one that fails on a kept connection before
any answer is sent again at once on a new one, as the server may have closed
it while idle. Each try has ``timeout`` seconds.

The proxy is the environment's (``http_proxy``, ``https_proxy``, ``no_proxy``),
read as Scrapy's ``HttpProxyMiddleware`` reads it for the images, and as the
service's own client reads it for the rest of the store's calls: an
``http://`` endpoint is asked of the proxy, an ``https://`` one through a
tunnel (``CONNECT``) that the proxy opens to it.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit
from urllib.request import getproxies, proxy_bypass

TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})

#: The headers of one attempt, made anew for each (a signature carries its time).
HeadersOf = Callable[[], Awaitable[dict[str, str]]]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


class ConnectionFailed(OSError):
    """No answer: the connection could not be made, broke or timed out."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """An ``http://`` proxy: where it listens, and the ``Proxy-Authorization`` it wants."""

    host: str
    port: int
    authorization: str

    @classmethod
    def for_url(cls, url: SplitResult) -> Proxy | None:
        """The environment's proxy for ``url``, None if there is none or ``no_proxy``
        names its host; ValueError for a proxy that is not ``http://``."""
        given = getproxies().get(url.scheme)
        if not given or proxy_bypass(url.hostname or ""):
            return None
        parts = urlsplit(given if "://" in given else f"http://{given}")
        if parts.scheme != "http" or not parts.hostname:
            where = parts.hostname or "it"
            raise ValueError(f"the {url.scheme} proxy {where}: only http:// proxies are supported")
        authorization = ""
        if parts.username is not None:
            secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(secret.encode()).decode()
        return cls(parts.hostname, parts.port or 80, authorization)


class LoopHTTP:
    """Requests to one ``http(s)://host:port``, each at most ``timeout`` seconds."""

    def __init__(
        self,
        base_url: str,
        tls: ssl.SSLContext | None = None,
        attempts: int = 4,
        timeout: float = 300.0,
        backoff: float = 0.5,
    ) -> None:
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.authority = parts.netloc.rpartition("@")[2]
        self.tls = (tls or ssl.create_default_context()) if self.https else None
        self.proxy = Proxy.for_url(parts)
        # Through a proxy, a plain request names its origin and carries the proxy's
        # credentials; a tunnelled one does neither (the tunnel's CONNECT did).
        self._origin = ""
        self._proxy_fields: dict[str, str] = {}
        if self.proxy and not self.https:
            self._origin = f"http://{self.authority}"
            if self.proxy.authorization:
                self._proxy_fields = {"proxy-authorization": self.proxy.authorization}
        self.attempts = max(1, attempts)
        self.timeout = timeout
        self.backoff = backoff
        self._idle: list[_Connection] = []

    async def send(self, method: str, target: str, body: bytes, headers: HeadersOf) -> Answer:
        """The last answer to ``method target``; ConnectionFailed if none came."""
        attempt = 1
        while True:
            try:
                answer = await self._once(method, target, body, await headers())
                if answer.status not in TRANSIENT or attempt == self.attempts:
                    return answer
            except ConnectionFailed:
                if attempt == self.attempts:
                    raise
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            attempt += 1

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def _once(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> Answer:
        fields = {"host": self.authority, **headers, **self._proxy_fields}
        fields["content-length"] = str(len(body))
        lines = [
            f"{method} {self._origin}{target} HTTP/1.1",
            *(f"{name}: {value}" for name, value in fields.items()),
        ]
        text = "\r\n".join(lines) + "\r\n\r\n"
        if text.count("\n") != len(lines) + 1 or text.count("\r") != len(lines) + 1:
            raise ValueError(f"{method} {target[:80]}: a line break in a header")
        request = text.encode("ascii")
        while self._idle:
            connection = self._idle.pop()
            if not connection.usable:
                connection.close()
                continue
            try:
                return await self._exchange(connection, request, body)
            except _Unanswered:
                continue  # closed by the server while idle: a new connection
        return await self._exchange(await self._connect(), request, body)

    async def _exchange(self, connection: _Connection, request: bytes, body: bytes) -> Answer:
        try:
            async with asyncio.timeout(self.timeout):
                answer = await connection.exchange(request, body)
        except TimeoutError:
            connection.close()
            raise ConnectionFailed(f"no answer in {self.timeout:g} s") from None
        except BaseException:
            connection.close()
            raise
        if connection.usable:
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        proxy = self.proxy
        try:
            async with asyncio.timeout(self.timeout):
                if proxy is None:
                    _, connection = await loop.create_connection(
                        _Connection, self.host, self.port, ssl=self.tls
                    )
                    return connection
                _, connection = await loop.create_connection(_Connection, proxy.host, proxy.port)
                if self.https:
                    await self._tunnel(connection, proxy)
                return connection
        except (OSError, TimeoutError) as exc:
            where = f"through the proxy {proxy.host}:{proxy.port}" if proxy else "to the endpoint"
            raise ConnectionFailed(f"Could not connect {where} ({exc or 'timed out'})") from None

    async def _tunnel(self, connection: _Connection, proxy: Proxy) -> None:
        """Asks ``proxy`` for a tunnel to the endpoint, then speaks TLS through it."""
        authority = f"[{self.host}]" if ":" in self.host else self.host
        authority += f":{self.port}"
        head = f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n"
        if proxy.authorization:
            head += f"proxy-authorization: {proxy.authorization}\r\n"
        connection.tunnelling = True
        try:
            answer = await connection.exchange(f"{head}\r\n".encode(), b"")
            if not 200 <= answer.status < 300:
                raise ConnectionFailed(f"it refused the tunnel: {answer.status}")
            assert connection.transport is not None
            connection.transport = await asyncio.get_running_loop().start_tls(
                connection.transport, connection, self.tls, server_hostname=self.host
            )  # type: ignore[assignment]
        except BaseException:
            connection.close()
            raise
        connection.tunnelling = connection.reused = False
        connection.keep_alive = True


class _Unanswered(ConnectionFailed):
    """A kept connection broke before any byte of an answer."""


class _Broken(ValueError):
    """An answer that is not HTTP/1.x as RFC 9112 frames it."""


class _Connection(asyncio.Protocol):
    """One connection: a request written whole, its answer read as it arrives.

    An answer's body is framed by its ``Content-Length``, by chunks, or by the
    end of the connection (RFC 9112, section 6.3); interim (1xx) answers are
    skipped. Only one request is on a connection at a time.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[Answer] | None = None
        self.reused = False
        self.heard = False
        self.keep_alive = True
        self.tunnelling = False  # a CONNECT's answer: a 2xx has no body
        self._buffer = bytearray()
        self._status = 0
        self._framing: int | str | None = None  # bytes to come, "chunked", "close"; None: the head
        self._chunk = 0  # bytes of the chunk (and its CRLF) to come; -1: the trailers
        self._body: list[bytes] = []

    @property
    def usable(self) -> bool:
        return self.transport is not None and self.keep_alive

    async def exchange(self, head: bytes, body: bytes) -> Answer:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.heard = False
        try:
            self.transport.write(head)
            if body:
                self.transport.write(body)
            return await self.answer
        finally:
            self.reused = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.heard = self.heard or bool(data)
        self._buffer += data
        try:
            if self._read():
                self._answered()
        except ValueError as exc:  # _Broken, or a size that is no number
            self._failed(ConnectionFailed(f"a broken answer ({exc})"))
            self.close()

    def eof_received(self) -> bool | None:
        if self._framing == "close":  # the answer ends with the connection
            self._body.append(bytes(self._buffer))
            self._answered()
        self._failed(self._lost("the server closed the connection"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._failed(self._lost(f"the connection broke ({exc or 'closed'})"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def _read(self) -> bool:
        """Reads what has arrived; True once the whole answer has."""
        buffer = self._buffer
        while self._framing is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > 65536:
                    raise _Broken("a head of more than 64 KiB")
                return False
            head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            del buffer[: end + 4]
            self._head(head)
        if self._framing == "chunked":
            return self._chunks()
        if self._framing == "close":
            return False
        assert isinstance(self._framing, int)
        if len(buffer) < self._framing:
            return False
        self._body.append(bytes(buffer[: self._framing]))
        del buffer[: self._framing]
        return True

    def _head(self, lines: list[str]) -> None:
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise _Broken(f"status line {lines[0][:80]!r}")
        status = int(rest[:3])
        if 100 <= status < 200:
            return  # interim: the answer follows
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        self._status = status
        connection = fields.get("connection", "")
        self.keep_alive = "close" not in connection and (
            version == "HTTP/1.1" or "keep-alive" in connection
        )
        if status in (204, 304) or (self.tunnelling and 200 <= status < 300):
            self._framing = 0
        elif "chunked" in fields.get("transfer-encoding", ""):
            self._framing = "chunked"
        elif (length := fields.get("content-length")) is not None:
            if not length.isdigit():
                raise _Broken(f"Content-Length {length[:20]!r}")
            self._framing = int(length)
        else:
            self._framing = "close"
            self.keep_alive = False

    def _chunks(self) -> bool:
        """Reads the chunks that have arrived; True after the last one and its trailers."""
        buffer = self._buffer
        while True:
            if self._chunk > 0:
                if len(buffer) < self._chunk:
                    return False
                self._body.append(bytes(buffer[: self._chunk - 2]))
                del buffer[: self._chunk]
                self._chunk = 0
            end = buffer.find(b"\r\n")
            if end < 0:
                return False
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            if self._chunk < 0:  # a trailer, or the empty line that ends them
                if not line:
                    return True
                continue
            size = int(line.split(b";")[0].strip(), 16)
            self._chunk = size + 2 if size else -1

    def _answered(self) -> None:
        answer = Answer(self._status, b"".join(self._body))
        if self._buffer:
            self.keep_alive = False  # bytes after the answer: the connection is out of step
        self._framing, self._chunk, self._body = None, 0, []
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(answer)

    def _failed(self, error: ConnectionFailed) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(error)

    def _lost(self, reason: str) -> ConnectionFailed:
        return _Unanswered(reason) if self.reused and not self.heard else ConnectionFailed(reason)
