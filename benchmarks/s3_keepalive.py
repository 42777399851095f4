"""moto's S3 behind waitress, which keeps each connection open as S3 does.

moto's own server (werkzeug's) ends every answer with ``Connection: close``,
so a client opens a TCP connection per request there, which no real S3
makes it do. ``bucket.py``'s ``s3k`` store is this server.

    .venv/bin/python benchmarks/s3_keepalive.py PORT
"""

from __future__ import annotations

import os
import sys

from moto.server import DomainDispatcherApplication, create_backend_app
from waitress import serve


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))  # as moto_server sets it
    app = DomainDispatcherApplication(create_backend_app)
    serve(app, host="127.0.0.1", port=port, threads=16, _quiet=True)


if __name__ == "__main__":
    main()
