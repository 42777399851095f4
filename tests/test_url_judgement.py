"""Every image URL is judged before it goes out, and alone."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from scrapy.exceptions import CannotResolveHostError

from igimages.addresses import GuardedResolver, judge_url
from igimages.reasons import failure_reason
from tests import images
from tests.conftest import sha256
from tests.imageserver import Route

EXIT_SOME_FAILED = 3
METADATA_SPELLINGS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://0xA9FEA9FE/latest/meta-data/",  # the same address, as the C library reads it
    "http://2852039166/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://169.254.170.2/v2/credentials/",  # ECS task credentials
]


def test_a_bad_url_fails_alone_and_metadata_addresses_are_never_requested(
    server, write_posts, crawl
):
    bodies = {n: images.jpeg(seed=n) for n in range(4)}
    good = {n: server.add(f"/{n}.jpg", body) for n, body in bodies.items()}
    to_metadata = server.add(
        "/moved.jpg", Route(status=302, headers={"Location": METADATA_SPELLINGS[0]})
    )
    posts = write_posts(
        {
            "a": [good[0], "http://[::1:bad/x.jpg", good[1]],
            "b": [good[2]],
            "c": [*METADATA_SPELLINGS, to_metadata, good[3]],
        }
    )

    result = crawl(posts, "DOWNLOAD_TIMEOUT=5")

    assert result.returncode == EXIT_SOME_FAILED, result.stderr[-3000:]
    manifest = result.manifest
    assert sorted(manifest) == ["a", "b", "c"]
    assert result.summary["posts/done"] == 3
    assert "of 3 posts" in result.stderr
    for post_id, position, n in (("a", 1, 0), ("a", 3, 1), ("b", 1, 2), ("c", 9, 3)):
        assert sha256(result.stored_bytes(post_id, position)) == sha256(bodies[n])
    reasons = {(f["post_id"], f["position"]): f["reason"] for f in result.failures}
    assert reasons == {
        ("a", 2): "invalid_url",
        **{("c", n): "blocked_address" for n in range(1, 9)},
    }
    # The redirect was followed no further than our server.
    assert sorted(r.path for r in server.requests) == ["/0.jpg", "/1.jpg", "/2.jpg", "/3.jpg",
                                                       "/moved.jpg"]  # fmt: skip


def test_a_gzip_bomb_is_too_large_not_filtered(server, write_posts, crawl):
    bomb = gzip.compress(b"\0" * 4_000_000)
    assert len(bomb) < 100_000
    url = server.add("/bomb.jpg", Route(body=bomb, headers={"Content-Encoding": "gzip"}))
    posts = write_posts({"a": [url]})

    result = crawl(posts, "DOWNLOAD_MAXSIZE=1000000")

    assert result.returncode == EXIT_SOME_FAILED, result.stderr[-3000:]
    assert [f["reason"] for f in result.failures] == ["too_large"]


@pytest.mark.parametrize("url", METADATA_SPELLINGS)
def test_metadata_addresses_in_any_spelling_are_blocked(url):
    assert judge_url(url) is not None
    assert judge_url(url)[0] == "blocked_address"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1:bad/x.jpg", "invalid_url"),
        ("file:///etc/passwd", "unsupported_scheme"),
        ("http:///x.jpg", "invalid_url"),
        ("https://scontent.cdninstagram.com/v/x.jpg", None),
        ("http://127.0.0.1:8080/x.jpg", None),
        ("http://[::1]:8080/x.jpg", None),
    ],
)
def test_each_url_is_judged_alone(url, reason):
    verdict = judge_url(url)
    assert (verdict[0] if verdict else None) == reason


class _Answers:
    """Stands in for the system resolver: what DNS would answer for a name."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host, port=0, family=0):
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


def test_a_name_that_resolves_to_a_metadata_address_is_refused():
    guarded = GuardedResolver(_Answers("169.254.169.254"))
    with pytest.raises(OSError, match="link-local or metadata") as caught:
        asyncio.run(guarded.resolve("looks-harmless.example", 80))
    assert failure_reason(CannotResolveHostError(str(caught.value))) == "blocked_address"
    mixed = GuardedResolver(_Answers("169.254.169.254", "93.184.216.34"))
    assert [r["host"] for r in asyncio.run(mixed.resolve("cdn.example", 80))] == ["93.184.216.34"]
