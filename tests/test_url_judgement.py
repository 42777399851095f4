"""Every image URL is judged before it goes out, alone, and again where the
connection is made: by the address it names, resolves to, or redirects to."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from igimages.fetch.addresses import AddressPolicy, AddressRefused, GuardedResolver
from tests import images
from tests.cloud import free_port
from tests.conftest import crawl_env, proxy_env, sha256
from tests.imageserver import Route

EXIT_OK, EXIT_SOME_FAILED = 0, 3
METADATA = "a link-local or cloud metadata address"
PRIVATE = "a loopback, private or shared address, refused by IGIMAGES_REFUSE_PRIVATE_ADDRESSES"
METADATA_SPELLINGS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://0xA9FEA9FE/latest/meta-data/",  # the same address, as the C library reads it
    "http://2852039166/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://169.254.170.2/v2/credentials/",  # ECS task credentials
]
# Each an address that is refused always, or carries one (NAT64, 6to4, Teredo...).
ALWAYS_REFUSED = [
    "100.100.100.200",  # Alibaba Cloud's metadata
    "168.63.129.16",  # Azure's WireServer
    "192.0.0.192",  # Oracle Cloud Classic's metadata
    "[fd20:ce::254]",  # Google Cloud's, IPv6
    "[fd00:c1::a9fe:a9fe]",  # Oracle Cloud's, IPv6
    "[fe80::1]",
    "metadata.goog",
    "[64:ff9b::a9fe:a9fe]",  # NAT64: 169.254.169.254
    "[64:ff9b::169.254.169.254]",
    "[64:ff9b:1::a9fe:a9fe]",  # NAT64, local-use prefix, as a /96
    "[64:ff9b:1:a9fe:a9:fe00::]",  # ... as a /48 (octet 8 skipped)
    "[64:ff9b:1::a9:fea9:fe00:0]",  # ... as a /64
    "[::ffff:0:a9fe:a9fe]",  # IPv4-translated
    "[::a9fe:a9fe]",  # IPv4-compatible
    "[2002:a9fe:a9fe::1]",  # 6to4
    "[2001:0:4136:e378:8000:63bf:5601:5601]",  # Teredo, client 169.254.169.254
    "[::ffff:100.100.100.200]",
]
# Refused only with IGIMAGES_REFUSE_PRIVATE_ADDRESSES.
PRIVATE_ADDRESSES = [
    "127.0.0.1",
    "2130706433",  # 127.0.0.1
    "0.0.0.0",
    "[::]",
    "[::1]",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[::ffff:127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[64:ff9b:1::cb00:7107]",
    "[2002:c0a8:101::1]",  # 6to4: 192.168.1.1
]
PUBLIC = ["203.0.113.7", "[2001:db8::1]", "[64:ff9b::cb00:7107]", "cdn.example"]


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


def test_through_a_proxy_every_destination_is_judged_before_the_proxy_sees_it(
    server, write_posts, crawl
):
    body = images.jpeg(seed=40)
    server.add("/v/good_n.jpg", body)
    redirects = {
        "to_alibaba": "http://100.100.100.200/latest/meta-data/",
        "to_nat64": "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "to_mailto": "mailto:someone@example.com",
        "to_javascript": "javascript:alert(1)",
        "to_data": "data:image/gif;base64,R0lGODlhAQABAAAAACw=",
    }
    for name, location in redirects.items():
        server.add(f"/v/{name}.jpg", Route(status=302, headers={"Location": location}))
    cdn = "http://scontent.cdninstagram.com/v/{}.jpg"
    urls = [
        "http://looks-harmless.example/v/x.jpg",  # the test's resolver: 169.254.169.254
        "http://nowhere.example/v/x.jpg",  # resolves nowhere: it cannot be checked
        *(cdn.format(name) for name in redirects),
        cdn.format("good_n"),
    ]
    posts = write_posts({"p": urls})
    env = proxy_env(
        server, hosts={"looks-harmless.example": "169.254.169.254", "nowhere.example": ""}
    )

    result = crawl(posts, "IGIMAGES_RETRY_BACKOFF_BASE=0.05", env=env)

    assert result.returncode == EXIT_SOME_FAILED, result.stderr[-3000:]
    assert sha256(result.stored_bytes("p", 8)) == sha256(body)
    failures = {f["position"]: f for f in result.failures}
    outcome = {n: (f["reason"], f["attempts"]) for n, f in failures.items()}
    assert outcome == {
        1: ("blocked_address", 1),
        2: ("dns", 3),
        3: ("blocked_address", 2),  # the redirect, then its target: refused, not retried
        4: ("blocked_address", 2),
        5: ("unsupported_scheme", 1),
        6: ("unsupported_scheme", 1),
        7: ("unsupported_scheme", 1),
    }
    assert (
        failures[1]["detail"] == f"looks-harmless.example resolves to 169.254.169.254, {METADATA}"
    )
    assert failures[2]["detail"].startswith("cannot resolve nowhere.example to check it before")
    assert failures[3]["detail"] == f"100.100.100.200 is {METADATA}"
    assert (
        failures[4]["detail"]
        == f"64:ff9b::a9fe:a9fe is an IPv6 form of 169.254.169.254, {METADATA}"
    )
    assert failures[5]["detail"] == "redirect to mailto:someone@example.com"
    assert failures[6]["detail"] == "redirect to javascript:alert(1)"
    assert all("object at 0x" not in f["detail"] for f in result.failures)
    # The proxy was asked for the CDN's paths only, each once.
    seen = sorted((r.host, r.path) for r in server.requests)
    assert seen == sorted(
        ("scontent.cdninstagram.com", f"/v/{n}.jpg") for n in [*redirects, "good_n"]
    )


def test_private_addresses_are_refused_when_asked_even_behind_a_name(
    server, write_posts, crawl, tmp_path
):
    body = images.jpeg(seed=41)
    server.add("/mirror.jpg", body)
    by_name = server.url("/mirror.jpg", host="mirror.example")  # the test's resolver: 127.0.0.1
    closed = f"http://127.0.0.1:{free_port()}/x.jpg"
    posts = write_posts({"p": [by_name, closed]})
    env = crawl_env(hosts={"mirror.example": "127.0.0.1"})
    settings = ("RETRY_TIMES=0",)

    refused = crawl(posts, *settings, "IGIMAGES_REFUSE_PRIVATE_ADDRESSES=True", env=env)
    assert server.requests == []
    allowed = crawl(posts, *settings, env=env, target=tmp_path / "allowed")

    assert refused.returncode == EXIT_SOME_FAILED, refused.stderr[-3000:]
    outcome = [(f["reason"], f["attempts"], f["detail"]) for f in refused.failures]
    assert outcome == [
        ("blocked_address", 1, f"mirror.example resolves to 127.0.0.1, {PRIVATE}"),
        ("blocked_address", 0, f"127.0.0.1 is {PRIVATE}"),  # never requested
    ]
    assert not (refused.store / "p").exists()
    # By default, a local mirror is fetched; failures are told in words.
    assert allowed.returncode == EXIT_SOME_FAILED, allowed.stderr[-3000:]
    assert sha256(allowed.stored_bytes("p", 1)) == sha256(body)
    port = closed.split(":")[2].split("/")[0]
    [failure] = allowed.failures
    assert (failure["reason"], failure["detail"]) == (
        "connection",
        f"cannot connect to 127.0.0.1:{port}: Connection refused",
    )


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
    verdict = AddressPolicy().judge_url(url)
    assert verdict is not None
    assert verdict[0] == "blocked_address"


@pytest.mark.parametrize("host", ALWAYS_REFUSED)
def test_metadata_addresses_and_their_ipv6_forms_are_always_refused(host):
    url = f"http://{host}/latest/meta-data/"
    assert AddressPolicy().judge_url(url)[0] == "blocked_address"


@pytest.mark.parametrize("host", PRIVATE_ADDRESSES)
def test_private_addresses_are_refused_only_when_asked(host):
    url = f"http://{host}/x.jpg"
    assert AddressPolicy().judge_url(url) is None
    reason, detail = AddressPolicy(refuse_private=True).judge_url(url)
    assert reason == "blocked_address"
    assert detail.endswith(PRIVATE)


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_are_never_refused(host):
    assert AddressPolicy(refuse_private=True).judge_url(f"https://{host}/x.jpg") is None


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
    verdict = AddressPolicy().judge_url(url)
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


def test_a_name_with_any_refused_address_is_refused():
    policy = AddressPolicy()
    for answers in (("169.254.169.254",), ("93.184.216.34", "fe80::1%2")):
        guarded = GuardedResolver(_Answers(*answers), policy)
        with pytest.raises(AddressRefused, match="link-local or cloud metadata"):
            asyncio.run(guarded.resolve("looks-harmless.example", 80))
    fine = GuardedResolver(_Answers("93.184.216.34", "2001:db8::1"), policy)
    assert [r["host"] for r in asyncio.run(fine.resolve("cdn.example", 80))] == [
        "93.184.216.34",
        "2001:db8::1",
    ]
