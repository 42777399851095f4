"""How fast each posts format is read, and how much memory the reading takes.

    .venv/bin/python benchmarks/parse_speed.py [--posts 100000] [--formats seed,apify,...]

For each format a posts input of ``--posts`` posts (3.7 images each, CDN-like
URLs of about 200 characters) is generated in a temporary folder, then read
by igimages' input layer in a fresh process, as the crawl reads it before
starting (``igimages.inputs.survey``: parse, convert, drop repeated ids).
Printed per format: posts per second and the reading process's peak RSS.
Folder formats (one file per post, or per image) get a tenth of the posts:
their cost is opening files. No network, nothing written outside the
temporary folder.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import lzma
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FORMATS = (
    "seed",
    "seed-jsonl",
    "seed-gz",
    "seed-xz",
    "seed-bz2",
    "apify",
    "apify-jsonl",
    "instaloader",
    "graphql",
    "instagram-v1",
    "gallery-dl",
    "failures",
    "manifest",
    "fields",
)
FOLDER_FORMATS = ("instaloader", "gallery-dl")


def cdn_url(rng: random.Random, n: int) -> str:
    a, b = rng.randrange(10**17, 10**18), rng.randrange(10**15, 10**16)
    return (
        f"https://scontent-fra{n % 9}-1.cdninstagram.com/v/t51.2885-15/{a}_{b}_n.jpg"
        f"?stp=dst-jpg_e35_p1080x1080&_nc_ht=scontent-fra5-1.cdninstagram.com"
        f"&_nc_cat=10{n % 7}&_nc_ohc=Ab{b:x}&oh=00_{a:x}{b:x}&oe=6A85EE48"
    )


def posts(count: int, seed: int = 1) -> Iterator[tuple[str, list[str]]]:
    rng = random.Random(seed)
    for n in range(count):
        yield (
            str(3300000000000000000 + n),
            [cdn_url(rng, n) for _ in range(rng.choice((1, 3, 4, 5, 5)))],
        )


def seed_value(post_id: str, urls: list[str]) -> dict[str, Any]:
    link = f"https://www.instagram.com/p/C{post_id[-9:]}/"
    return {"id": post_id, "url": link, "media": {"images": urls}}


def apify_value(post_id: str, urls: list[str]) -> dict[str, Any]:
    sidecar = len(urls) > 1
    return {
        "id": post_id,
        "type": "Sidecar" if sidecar else "Image",
        "shortCode": f"C{post_id[-9:]}",
        "url": f"https://www.instagram.com/p/C{post_id[-9:]}/",
        "caption": "a caption of a usual length, with a #hashtag or two " * 3,
        "ownerUsername": "someone",
        "timestamp": "2024-05-01T10:00:00.000Z",
        "dimensionsHeight": 1350,
        "dimensionsWidth": 1080,
        "displayUrl": urls[0],
        "images": urls if sidecar else [],
        "childPosts": [{"type": "Image", "displayUrl": url} for url in urls] if sidecar else [],
        "likesCount": 123,
        "commentsCount": 4,
    }


def graphql_edge(post_id: str, urls: list[str]) -> dict[str, Any]:
    """A web GraphQL edge, as a profile's ``edge_owner_to_timeline_media`` lists it."""
    node = {"__typename": "GraphSidecar" if len(urls) > 1 else "GraphImage", "id": post_id}
    node |= {"shortcode": f"C{post_id[-9:]}", "display_url": urls[0], "is_video": False}
    node |= {"dimensions": {"height": 1350, "width": 1080}, "taken_at_timestamp": 1714557600}
    node["display_resources"] = [
        {"src": urls[0], "config_width": width, "config_height": width} for width in (640, 1080)
    ]
    node["edge_media_to_caption"] = {"edges": [{"node": {"text": "a caption #hashtag " * 5}}]}
    if len(urls) > 1:
        children = [{"node": {"__typename": "GraphImage", "display_url": url}} for url in urls]
        node["edge_sidecar_to_children"] = {"edges": children}
    return {"node": node}


def v1_item(post_id: str, urls: list[str]) -> dict[str, Any]:
    """A private-API v1 item: each picture in three sizes, the widest in the middle."""

    def versions(url: str) -> dict[str, Any]:
        sizes = (640, 1080, 320)
        return {"candidates": [{"width": w, "height": w, "url": f"{url}&s={w}"} for w in sizes]}

    item = {"pk": int(post_id), "id": f"{post_id}_1234567", "code": f"C{post_id[-9:]}"}
    item |= {"taken_at": 1714557600, "caption": {"text": "a caption #hashtag " * 5}}
    if len(urls) > 1:
        children = [{"media_type": 1, "image_versions2": versions(url)} for url in urls]
        return item | {"media_type": 8, "carousel_media": children}
    return item | {"media_type": 1, "image_versions2": versions(urls[0])}


def feed_pages(count: int, size: int = 12) -> Iterator[dict[str, Any]]:
    """v1 items as a feed answers them, ``size`` to a page."""
    page: list[dict[str, Any]] = []
    for post in posts(count):
        page.append(v1_item(*post))
        if len(page) == size:
            yield {"items": page, "num_results": size, "more_available": True}
            page = []
    if page:
        yield {"items": page, "num_results": len(page), "more_available": False}


def write_lines(path: Path, values: Iterator[Any], opener: Callable[..., Any] = open) -> None:
    with opener(path, "wt", encoding="utf-8") as out:
        for value in values:
            out.write(json.dumps(value) + "\n")


def write_array(path: Path, values: Iterator[Any], opener: Callable[..., Any] = open) -> None:
    with opener(path, "wt", encoding="utf-8") as out:
        out.write("[\n")
        for n, value in enumerate(values):
            out.write((",\n" if n else "") + json.dumps(value, indent=1))
        out.write("\n]\n")


def generate(name: str, count: int, folder: Path) -> tuple[Path, dict[str, str]]:
    """Write ``count`` posts in format ``name``; the path and spider arguments to read it."""
    seeds = (seed_value(*post) for post in posts(count))
    compressed = {"seed-gz": gzip.open, "seed-xz": lzma.open, "seed-bz2": bz2.open}
    if name == "seed":
        write_array(path := folder / "posts.json", seeds)
    elif name in compressed:
        suffix = {"seed-gz": "gz", "seed-xz": "xz", "seed-bz2": "bz2"}[name]
        write_array(path := folder / f"posts.json.{suffix}", seeds, compressed[name])
    elif name == "seed-jsonl":
        write_lines(path := folder / "posts.jsonl", seeds)
    elif name == "apify":
        write_array(path := folder / "apify.json", (apify_value(*p) for p in posts(count)))
    elif name == "apify-jsonl":
        write_lines(path := folder / "apify.jsonl", (apify_value(*p) for p in posts(count)))
    elif name == "instaloader":
        path = folder / "profile"
        path.mkdir()
        for post_id, urls in posts(count):
            edges = [{"node": {"display_url": url, "is_video": False}} for url in urls]
            node = {"__typename": "GraphSidecar", "id": post_id, "shortcode": f"C{post_id[-9:]}"}
            node |= {"display_url": urls[0], "edge_sidecar_to_children": {"edges": edges}}
            value = {"node": node, "instaloader": {"node_type": "Post", "version": "4.13"}}
            with lzma.open(path / f"{post_id}_UTC.json.xz", "wt") as out:
                json.dump(value, out, separators=(",", ":"))
    elif name == "graphql":
        write_array(path := folder / "edges.json", (graphql_edge(*p) for p in posts(count)))
    elif name == "instagram-v1":
        write_lines(path := folder / "feed.jsonl", feed_pages(count))
    elif name == "gallery-dl":
        path = folder / "instagram"
        path.mkdir()
        for post_id, urls in posts(count):
            for num, url in enumerate(urls, start=1):
                value = {"category": "instagram", "post_id": post_id, "num": num}
                value |= {"display_url": url, "post_url": f"https://www.instagram.com/p/{post_id}/"}
                (path / f"{post_id}_{num}.jpg.json").write_text(json.dumps(value, indent=4))
    elif name == "failures":
        lines = (
            {"post_id": post_id, "post_url": None, "url": url, "position": position}
            | {"reason": "http_404", "http_status": 404, "attempts": 1, "detail": ""}
            for post_id, urls in posts(count)
            for position, url in enumerate(urls, start=1)
        )
        write_lines(path := folder / "failures.jsonl", lines)
    elif name == "manifest":
        lines = (
            {"id": post_id, "url": None, "images": [_image(u, n) for n, u in enumerate(urls, 1)]}
            for post_id, urls in posts(count)
        )
        write_lines(path := folder / "manifest.jsonl", lines)
    elif name == "fields":
        lines = (
            {"pk": post_id, "carousel": [{"image": {"src": url}} for url in urls]}
            for post_id, urls in posts(count)
        )
        write_lines(path := folder / "custom.jsonl", lines)
        return path, {"id_field": "pk", "image_fields": "carousel.image.src"}
    else:
        raise SystemExit(f"unknown format {name}")
    return path, {}


def _image(url: str, position: int) -> dict[str, Any]:
    key = f"{position:016x}"
    return {"url": url, "position": position, "status": "downloaded", "key": key}


def read(path: str, arguments: dict[str, str]) -> dict[str, Any]:
    """In this process: read the input as the crawl does; time and peak memory."""
    sys.path.insert(0, str(ROOT))
    from igimages.inputs import InputSpec, survey

    started = time.perf_counter()
    found = survey(InputSpec.from_args({"posts": path, **arguments}))
    seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across exec.
    status = Path("/proc/self/status").read_text()
    peak_kb = int(status.split("VmHWM:")[1].split()[0])
    return {"posts": found.posts, "images": found.images, "seconds": seconds, "peak_kb": peak_kb}


def measure(path: Path, arguments: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--read", str(path), json.dumps(arguments)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--read", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.read:
        print(json.dumps(read(options.read[0], json.loads(options.read[1]))))
        return
    print(
        f"{'format':<12} {'posts':>9} {'images':>9} {'seconds':>8} {'posts/s':>9} {'peak RSS':>9}"
    )
    for name in options.formats.split(","):
        count = options.posts // 10 if name in FOLDER_FORMATS else options.posts
        with tempfile.TemporaryDirectory() as folder:
            path, arguments = generate(name, count, Path(folder))
            result = measure(path, arguments)
        rate = result["posts"] / result["seconds"]
        print(
            f"{name:<12} {result['posts']:>9,} {result['images']:>9,} {result['seconds']:>8.2f}"
            f" {rate:>9,.0f} {result['peak_kb'] / 1024:>7.1f}MB",
            flush=True,
        )


if __name__ == "__main__":
    main()
