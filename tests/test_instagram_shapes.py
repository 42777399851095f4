"""Instagram's own shapes, crawled: web GraphQL nodes and private-API v1 items.

Each shape a scraper saves (a list of edges, bare nodes, a whole response;
v1 items, feed pages) is written from the fixtures, their CDN host pointed at
the loopback image server, which serves each path bytes of its own; the
crawl runs in this process. Asserted: the bytes each post's folder holds at
each position, the manifest's ids and links, and every path the server was
asked for (never a smaller candidate, never a video).
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import images
from tests.conftest import read_jsonl, sha256
from tests.imageserver import ImageServer
from tests.test_core import crawl_input

pytestmark = pytest.mark.timeout(60)

FIXTURES = Path(__file__).parent / "fixtures"
CDN = "http://scontent-fra5-1.cdninstagram.com"
_IMAGE = re.compile(r"/v/t51\.2885-15/(\w+)_n\.jpg")

#: Each post's id: its shortcode, and the images its folder holds, in order.
Expected = dict[str, tuple[str, list[str]]]
GRAPHQL: Expected = {
    "3300000000000000601": ("C1graphSide", ["gql_side_1", "gql_side_2_cover"]),  # a video child
    "3300000000000000602": ("C1graphOne1", ["gql_one"]),  # display_url, no display_resources
    "3300000000000000603": ("C1graphVid1", ["gql_video_cover"]),
}
V1: Expected = {
    "3300000000000000701": ("C1v1One0001", ["v1_one_1080"]),  # the widest of 640, 1080, 320
    "3300000000000000702": ("C1v1Side001", ["v1_side_1_1080", "v1_side_2_cover_720"]),
    "3300000000000000703": ("C1v1Vid0001", ["v1_video_cover_720"]),  # "id", not the rounded "pk"
}


def image_path(name: str) -> str:
    return f"/v/t51.2885-15/{name}_n.jpg"


def body(name: str) -> bytes:
    return images.jpeg(seed=zlib.crc32(name.encode()))


def fixture_values(name: str, server: ImageServer) -> list[Any]:
    """The fixture's values, its CDN URLs on the loopback server, each image path served."""
    text = (FIXTURES / name).read_text()
    for image in set(_IMAGE.findall(text)):
        server.add(image_path(image), body(image))
    return json.loads(text.replace(CDN, server.url("")))


def array(values: list[Any]) -> bytes:
    return json.dumps(values).encode()


def bare_nodes_gzip_lines(edges: list[Any]) -> bytes:
    return gzip.compress("".join(json.dumps(e["node"]) + "\n" for e in edges).encode())


def profile_response(edges: list[Any]) -> bytes:
    """A profile page's answer, saved whole: the posts three objects down, beside a
    connection of accounts, which holds no posts."""
    media = {"count": len(edges), "page_info": {"has_next_page": False}, "edges": edges}
    followers = {"count": 1, "edges": [{"node": {"id": "42", "username": "friend"}}]}
    user = {"edge_mutual_followed_by": followers, "edge_owner_to_timeline_media": media}
    return json.dumps({"data": {"user": user}, "status": "ok"}, indent=2).encode()


def feed_pages(items: list[Any]) -> bytes:
    """A feed fetched page by page, one response a line."""
    pages = [items[:2], items[2:]]
    return "".join(
        json.dumps({"items": page, "num_results": len(page), "more_available": more}) + "\n"
        for page, more in zip(pages, (True, False), strict=True)
    ).encode()


@pytest.mark.parametrize(
    ("fixture", "shape", "expected"),
    [
        ("graphql.json", array, GRAPHQL),
        ("graphql.json", bare_nodes_gzip_lines, GRAPHQL),
        ("graphql.json", profile_response, GRAPHQL),
        ("instagram-v1.json", array, V1),
        ("instagram-v1.json", feed_pages, V1),
    ],
    ids=["edges", "bare-nodes", "profile-response", "v1-items", "v1-feed-pages"],
)
def test_each_shape_stores_each_posts_images_in_order(
    server: ImageServer,
    tmp_path: Path,
    fixture: str,
    shape: Callable[[list[Any]], bytes],
    expected: Expected,
):
    posts = tmp_path / "posts"
    posts.write_bytes(shape(fixture_values(fixture, server)))
    store = tmp_path / "images"

    crawled = crawl_input({"posts": str(posts)}, store)

    stored = {
        post: [(i["position"], sha256(crawled.stored_bytes(i))) for i in found]
        for post, found in crawled.images.items()
    }
    assert stored == {
        post: [(n, sha256(body(name))) for n, name in enumerate(names, start=1)]
        for post, (_, names) in expected.items()
    }
    wanted = sorted(image_path(name) for _, names in expected.values() for name in names)
    assert sorted(r.path for r in server.requests) == wanted  # no other size, no video
    links = {line["id"]: line["url"] for line in read_jsonl(store / "manifest.jsonl")}
    assert links == {
        post: f"https://www.instagram.com/p/{code}/" for post, (code, _) in expected.items()
    }
    assert crawled.stats["igimages/posts/bad"] == 1
