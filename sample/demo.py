"""Run the real crawl on the shipped sample, with no internet.

Serves ``sample/cdn/`` on 127.0.0.1:8765 (a stand-in for the CDN, including a
login page where an image should be and a deleted image), runs
``scrapy crawl post_images -a posts=sample/posts.json`` into ``demo-output/``,
then shows what it left there; its report is ``demo-output/report/index.html``.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent
ROOT = SAMPLE.parent
OUTPUT = ROOT / "demo-output"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    handler = functools.partial(QuietHandler, directory=str(SAMPLE / "cdn"))
    with ThreadingHTTPServer(("127.0.0.1", 8765), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        command = [
            sys.executable, "-m", "scrapy", "crawl", "post_images",
            "-a", f"posts={SAMPLE / 'posts.json'}",
            "-s", f"IMAGES_STORE={OUTPUT}", "-s", "IGIMAGES_REPORT=True",
        ]  # fmt: skip
        status = subprocess.run(command, cwd=ROOT).returncode
        server.shutdown()
    print(f"\nexit status {status} (3: finished, some images failed)\n{OUTPUT}:")
    for path in sorted(OUTPUT.rglob("*")):
        if path.is_file() and not {".igimages", "report"} & set(path.parts):
            print(f"  {path.relative_to(OUTPUT)}  ({path.stat().st_size} bytes)")
    print("\nfailures.jsonl:")
    print((OUTPUT / "failures.jsonl").read_text())
    print(f"See it all: {(OUTPUT / 'report' / 'index.html').as_uri()}")
    return 0 if status in (0, 3) else status


if __name__ == "__main__":
    sys.exit(main())
