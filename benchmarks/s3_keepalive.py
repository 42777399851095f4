"""moto's S3 behind waitress, which keeps each connection open as S3 does.

moto's own server (werkzeug's) ends every answer with ``Connection: close``,
so a client opens a TCP connection per request there, which no real S3
makes it do. ``bucket.py``'s ``s3k`` store is this server; with ``--tls``,
``s3s``: the same over HTTPS, as S3 is reached, through a TLS front in this
process (so its CPU counts as the server's).

    .venv/bin/python benchmarks/s3_keepalive.py PORT [--tls CERT KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from waitress import serve


async def tls_front(port: int, backend: int, context: ssl.SSLContext) -> None:
    """Accept TLS on ``port``; relay each connection's bytes to and from ``backend``."""

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(256 * 1024):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            to_reader, to_writer = await asyncio.open_connection("127.0.0.1", backend)
        except OSError:  # moto not listening yet: the client tries again
            writer.close()
            return
        await asyncio.gather(
            relay(reader, to_writer), relay(to_reader, writer), return_exceptions=True
        )

    server = await asyncio.start_server(connection, "127.0.0.1", port, ssl=context)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()
    port = args.port
    os.environ.setdefault("MOTO_PORT", str(port))  # as moto_server sets it
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*args.tls)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            backend = probe.getsockname()[1]
        front = tls_front(port, backend, context)
        threading.Thread(target=asyncio.run, args=(front,), daemon=True).start()
        port = backend
    app = DomainDispatcherApplication(create_backend_app)
    serve(app, host="127.0.0.1", port=port, threads=16, _quiet=True)


if __name__ == "__main__":
    main()
