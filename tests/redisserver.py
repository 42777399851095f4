"""A real ``redis-server`` on loopback for the job tests (Debian's package)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import redis

from tests.cloud import free_port

# Must never show in a log, a feed or the summary, in any form. Quotes, a
# colon and an at sign: every character a redaction might stop at.
PASSWORD = "igimages-'redis\"-Kx:72@q"


def redis_url(port: int) -> str:
    """The URL of a Redis on ``port`` with the password: its "@" percent-encoded,
    as a URL requires (redis-py decodes it)."""
    return f"redis://:{PASSWORD.replace('@', '%40')}@127.0.0.1:{port}/0"


class RedisServer:
    """With a password, as a Redis that workers reach over a network has."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return redis_url(self.port)

    def start(self) -> Self:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: run scripts/install-system-packages.sh"
        command = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.directory), "--requirepass", PASSWORD]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = self.client()
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return self
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=PASSWORD)

    @contextmanager
    def commands(self) -> Iterator[list[tuple[str, list[str]]]]:
        """Every command Redis runs meanwhile, as ``MONITOR`` shows it: who ran it
        (``lua`` for a script, else ``tcp``) and the command's words."""
        seen: list[tuple[str, list[str]]] = []
        end = f"end-of-watch-{uuid.uuid4().hex}"
        ended = threading.Event()

        def read(monitor: redis.client.Monitor) -> None:
            while not ended.is_set():
                command = monitor.next_command()
                words = command["command"].split(" ")
                if words == ["ECHO", end]:
                    ended.set()
                else:
                    seen.append((command["client_type"], words))

        with self.client().monitor() as monitor:
            reader = threading.Thread(target=read, args=(monitor,), daemon=True)
            reader.start()
            try:
                yield seen
            finally:
                self.client().echo(end)  # every command before it has been seen
                assert ended.wait(10), "MONITOR did not catch up"
                reader.join(10)

    def kill(self) -> None:
        """Gone at once, as a machine that vanishes (its data with it)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
