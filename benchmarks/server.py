"""The benchmark's image server: the corpus pool over HTTP/1.1 on 127.0.0.1.

It stands for a CDN far away: each response waits ``--latency`` seconds, and
the first response on a new connection waits ``--connect-latency`` more (TCP
and TLS set-up). It has to stay cheap on CPU, because it shares the machine's
two cores with the client being measured: one process, one asyncio loop, no
threads, keep-alive, and each whole response (headers and body) prepared in
memory at start-up, so serving one is a single ``write``.

Two worlds besides a healthy host:

* ``--link-mbit R``: the responses share a link of R Mbit/s. They go out in
  chunks, each when the link has carried the chunks before it (one virtual
  clock for all connections), so answers slow down together once the link is
  full, as on the seed's satellite link.
* ``--refuse-above K``: a host that throttles. While K requests are being
  served, any other is answered 429 (after the same latency: the network is
  as far away; or after ``--refusal-latency``, as a rate limiter in front of
  the host answers before any work), with ``Retry-After`` if
  ``--retry-after`` is given.

The harness runs it as a child process and talks to it over stdin/stdout:
it prints ``{"port": N}`` once listening; each ``stats`` line read on stdin
is answered by one JSON line of counters since the previous one (requests,
429s, peak requests in flight, time of the first request and of the last
response, the server's own CPU seconds); ``stats timeline`` adds each answer
of the period as ``[time, status, requests in flight when it came]``. End of
stdin, or ``--max-seconds``, stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

from corpus import image_index

CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
IDLE_SECONDS = 60  # a connection quiet this long is closed
MAX_HEAD = 16 * 1024  # request line and headers; longer requests are dropped


LINK_CHUNK = 32 * 1024  # bytes a link-capped response is sent in


class ImageServer:
    def __init__(
        self,
        pool_dir: Path,
        count: int,
        latency: float,
        connect_latency: float,
        max_conns: int,
        link_mbit: float = 0.0,
        refuse_above: int = 0,
        retry_after: float | None = None,
        refusal_latency: float | None = None,
    ) -> None:
        self.latency = latency
        self.refusal_latency = latency if refusal_latency is None else refusal_latency
        self.connect_latency = connect_latency
        self.max_conns = max_conns
        self.link_rate = link_mbit * 1e6 / 8  # bytes per second; 0: no cap
        self.link_free_at = 0.0  # when the link has sent all it was given
        self.refuse_above = refuse_above
        self.refusal = (
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
            + (f"Retry-After: {retry_after:g}\r\n".encode() if retry_after is not None else b"")
            + b"Content-Length: 12\r\n\r\nslow down.\r\n"
        )
        self.serving = 0  # in flight and not refused
        self.responses: dict[int, tuple[str, bytes]] = {}  # index -> (extension, response)
        for entry in json.loads((pool_dir / "index.json").read_text())[:count]:
            name = f"{entry['index']:06d}.{entry['ext']}"
            body = (pool_dir / name).read_bytes()
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPES[entry['ext']]}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: max-age=1209600\r\n\r\n"
            )
            self.responses[entry["index"]] = (entry["ext"], head.encode() + body)
        self.open_conns = 0
        self.in_flight = 0
        self._reset()

    def _reset(self) -> None:
        self.requests = 0
        self.refused = 0
        self.timeline: list[tuple[float, int, int]] = []
        self.not_found = 0
        self.connections = 0
        self.bytes_sent = 0
        self.max_in_flight = 0
        self.first_request: float | None = None
        self.last_response: float | None = None
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_mark = usage.ru_utime + usage.ru_stime
        self.user_mark = usage.ru_utime

    def stats(self, timeline: bool = False) -> dict[str, object]:
        """Counters since the previous call, which starts a new period."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stats = {
            "requests": self.requests,
            "refused": self.refused,
            "not_found": self.not_found,
            "connections": self.connections,
            "bytes": self.bytes_sent,
            "max_in_flight": self.max_in_flight,
            "first_request": self.first_request,
            "last_response": self.last_response,
            "cpu_seconds": usage.ru_utime + usage.ru_stime - self.cpu_mark,
            "user_seconds": usage.ru_utime - self.user_mark,
        }
        if timeline:
            stats["timeline"] = [[round(t, 4), status, n] for t, status, n in self.timeline]
        self._reset()
        return stats

    def respond(self, method: bytes, target: bytes) -> bytes:
        path = target.partition(b"?")[0].decode("latin-1")
        index = image_index(path)
        found = self.responses.get(index) if index is not None else None
        if found is None or not path.endswith("." + found[0]):
            self.not_found += 1
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        response = found[1]
        if method == b"HEAD":
            return response[: response.index(b"\r\n\r\n") + 4]
        return response

    async def send(self, writer: asyncio.StreamWriter, response: bytes) -> None:
        """Write the response, at the link's pace if it has one."""
        if not self.link_rate:
            writer.write(response)
            await writer.drain()
            return
        loop = asyncio.get_running_loop()
        for start in range(0, len(response), LINK_CHUNK):
            chunk = response[start : start + LINK_CHUNK]
            now = loop.time()
            self.link_free_at = max(self.link_free_at, now) + len(chunk) / self.link_rate
            await asyncio.sleep(self.link_free_at - now)
            writer.write(chunk)
        await writer.drain()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_conns >= self.max_conns:
            writer.close()
            return
        self.open_conns += 1
        self.connections += 1
        extra = self.connect_latency
        try:
            while True:
                async with asyncio.timeout(IDLE_SECONDS):
                    head = await reader.readuntil(b"\r\n\r\n")
                method, target, version = head[: head.index(b"\r\n")].split(b" ", 2)
                lowered = head.lower()
                keep_alive = b"connection: close" not in lowered and (
                    version != b"HTTP/1.0" or b"connection: keep-alive" in lowered
                )
                self.requests += 1
                self.in_flight += 1
                arrived_with = self.in_flight
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                if self.first_request is None:
                    self.first_request = time.time()
                refused = bool(self.refuse_above) and self.serving >= self.refuse_above
                self.serving += not refused
                try:
                    delay = (self.refusal_latency if refused else self.latency) + extra
                    if delay > 0:
                        await asyncio.sleep(delay)
                    extra = 0.0
                    if refused:
                        response = self.refusal
                    elif method not in (b"GET", b"HEAD"):
                        response = b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"
                    else:
                        response = self.respond(method, target)
                    if not keep_alive:
                        response = response.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
                    await self.send(writer, response)
                finally:
                    self.in_flight -= 1
                    self.serving -= not refused
                self.refused += refused
                self.bytes_sent += len(response)
                self.last_response = time.time()
                status = int(response[9:12])
                self.timeline.append((self.last_response, status, arrived_with))
                if not keep_alive:
                    break
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            TimeoutError,
            ValueError,  # a malformed request line
        ):
            pass
        finally:
            self.open_conns -= 1
            writer.close()


async def serve(args: argparse.Namespace) -> None:
    server = ImageServer(
        Path(args.pool),
        args.images,
        args.latency,
        args.connect_latency,
        args.max_connections,
        link_mbit=args.link_mbit,
        refuse_above=args.refuse_above,
        retry_after=args.retry_after,
        refusal_latency=args.refusal_latency,
    )
    listener = await asyncio.start_server(
        server.handle, "127.0.0.1", args.port, limit=MAX_HEAD, backlog=1024
    )
    port = listener.sockets[0].getsockname()[1]
    print(json.dumps({"port": port, "images": len(server.responses)}), flush=True)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)

    async def control() -> None:
        while line := await commands.readline():
            if line.split()[:1] == [b"stats"]:
                print(json.dumps(server.stats(timeline=b"timeline" in line)), flush=True)

    async with listener:
        await asyncio.wait(
            [asyncio.create_task(control()), asyncio.create_task(asyncio.sleep(args.max_seconds))],
            return_when=asyncio.FIRST_COMPLETED,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--pool", required=True, help="corpus pool folder (with index.json)")
    parser.add_argument("--images", type=int, required=True, help="pool images to serve")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per response")
    parser.add_argument(
        "--connect-latency", type=float, default=0.2, help="extra seconds on a new connection"
    )
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--max-connections", type=int, default=1024)
    parser.add_argument("--link-mbit", type=float, default=0.0, help="link capacity (0: none)")
    parser.add_argument("--refuse-above", type=int, default=0, help="429 above this (0: never)")
    parser.add_argument("--retry-after", type=float, help="Retry-After of the 429s, in seconds")
    parser.add_argument(
        "--refusal-latency", type=float, help="seconds before a 429 (default: --latency)"
    )
    parser.add_argument("--max-seconds", type=float, default=3 * 3600, help="stop after this")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
