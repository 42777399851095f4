"""End to end: posts file in, image folder, feeds and counts out."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from igimages.store import StoreUri
from igimages.store.folder import FolderStore
from tests import images
from tests.conftest import (
    proxy_env,
    sha256,
)
from tests.imageserver import ImageServer, Route

EXIT_OK, EXIT_SOME_FAILED = 0, 3


def test_stores_original_bytes_by_post_with_extension_from_content(server, write_posts, crawl):
    served = {
        "/a.jpg": images.jpeg(seed=1),
        "/b.png": images.png(seed=2, mode="RGBA"),  # no JPEG can hold alpha
        "/c.webp": images.webp(seed=3),
        "/d.png": images.png(seed=4, mode="P"),
        "/e.jpg": images.jpeg(seed=5, mode="CMYK"),
        "/f.gif": images.gif(seed=6),
        "/lies.heic": images.jpeg(seed=7),  # the CDN's extension is not the format
        "/also-lies.jpg": images.png(seed=8, mode="LA"),
    }
    urls = [server.add(path, body) for path, body in served.items()]
    posts = write_posts({"111": urls[:4], "222": urls[4:]})

    result = crawl(posts, "LOG_LEVEL=DEBUG")

    assert result.returncode == EXIT_OK, result.stderr
    assert "Using asyncio event loop: uvloop.Loop" in result.stderr  # the faster loop
    expected = [
        ("111", 1, "jpg"),
        ("111", 2, "png"),
        ("111", 3, "webp"),
        ("111", 4, "png"),
        ("222", 1, "jpg"),
        ("222", 2, "gif"),
        ("222", 3, "jpg"),
        ("222", 4, "png"),
    ]
    for (post_id, position, extension), body in zip(expected, served.values(), strict=True):
        image = result.image(post_id, position)
        assert image["status"] == "downloaded"
        assert image["path"].startswith(f"{post_id}/{position}_")
        assert image["path"].endswith(f".{extension}")
        assert result.stored_bytes(post_id, position) == body
        assert image["sha256"] == sha256(body)
        assert image["bytes"] == len(body)
        assert (image["width"], image["height"]) == (64, 48)
    assert sorted(p.name for p in (result.store / "111").iterdir()) == sorted(
        Path(result.image("111", i)["path"]).name for i in range(1, 5)
    )
    summary = result.summary
    assert summary["images/downloaded"] == 8
    assert summary["bytes"] == sum(map(len, served.values()))
    assert summary["posts/done"] == 2
    assert result.failures == []
    assert "igimages finished (finished)" in result.stderr
    assert "TelnetConsole" not in result.stderr  # no open ports
    assert "RemoteControl" not in result.stderr


def test_each_rejection_is_a_failure_with_its_reason_and_nothing_stored(
    server, write_posts, crawl, tmp_path
):
    jpeg = images.jpeg(seed=11)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy me")
    cases = {
        "not_image": server.add("/login.jpg", Route(images.html_page(), content_type="text/html")),
        "truncated": server.add("/half.jpg", jpeg[: len(jpeg) // 2]),
        "empty": server.add("/empty.jpg", b""),
        "too_many_pixels": server.add("/bomb.png", images.bomb_png(20000, 20000)),
        "too_small": server.add("/tiny.png", images.png(8, 8, seed=12)),
        "http_404": server.url("/gone.jpg"),
        "http_403": server.add(
            "/expired.jpg", Route(b"URL signature expired", status=403, content_type="text/plain")
        ),
        "http_500": server.add("/boom.jpg", Route(b"oops", status=500, content_type="text/plain")),
        "timeout": server.add("/slow.jpg", Route(jpeg, delay=3)),
        "unsupported_scheme": secret.as_uri(),
    }
    cut_mid_transfer = server.add("/cut.jpg", Route(images.jpeg(seed=13), truncate_to=200))
    good = server.add("/good.jpg", jpeg)
    posts = write_posts({"p": [*cases.values(), cut_mid_transfer, good]})

    result = crawl(
        posts,
        "IMAGES_MIN_WIDTH=16",
        "IMAGES_MIN_HEIGHT=16",
        "IGIMAGES_MAX_PIXELS=100000000",
        "DOWNLOAD_TIMEOUT=1",
        "RETRY_TIMES=1",
    )

    assert result.returncode == EXIT_SOME_FAILED, result.stderr
    post = result.manifest["p"]
    reasons = [image.get("reason") for image in post["images"]]
    assert reasons == [*cases, "truncated", None]
    assert result.image("p", len(reasons))["status"] == "downloaded"
    assert result.image("p", 6)["http_status"] == 404
    assert result.image("p", 6)["attempts"] == 1  # a 404 is not retried
    assert result.image("p", 8)["attempts"] == 2  # a 500 is, RETRY_TIMES=1
    assert server.hits("/boom.jpg") == 2
    # Only the good image is on disk; no partial file anywhere.
    stored = [
        p
        for p in result.store.rglob("*")
        if p.is_file() and p.parent != result.store and ".igimages" not in p.parts
    ]
    assert [p.read_bytes() for p in stored] == [jpeg]
    assert not any(
        b"do not copy me" in p.read_bytes() for p in result.store.rglob("*") if p.is_file()
    )
    failures = result.failures
    assert [f["reason"] for f in failures] == [*cases, "truncated"]
    assert all(f["post_id"] == "p" and f["post_url"].endswith("/p/p/") for f in failures)
    assert failures[0] == {**failures[0], "url": cases["not_image"], "position": 1}
    summary = result.summary
    assert summary["images/failed"] == len(cases) + 1
    assert summary["failed/truncated"] == 2
    assert summary["failed/http_404"] == 1


def test_same_bytes_in_two_posts_are_stored_once(server, write_posts, crawl):
    body = images.jpeg(seed=21)
    first = server.add("/one.jpg", body)
    second = server.add("/copy-of-one.jpg", body)  # another URL, same bytes
    posts = write_posts({"a": [first], "b": [second], "c": [first]})

    result = crawl(posts, "CONCURRENT_REQUESTS=1")

    assert result.returncode == EXIT_OK, result.stderr
    paths = [result.store / result.image(post, 1)["path"] for post in "abc"]
    assert len({os.stat(p).st_ino for p in paths}) == 1
    assert all(p.read_bytes() == body for p in paths)
    statuses = sorted(result.image(post, 1)["status"] for post in "abc")
    assert statuses == ["downloaded", "duplicate", "duplicate"]
    assert server.hits("/one.jpg") == 1
    assert result.summary["images/duplicate"] == 2


def test_second_run_over_finished_folder_makes_no_image_request(server, write_posts, crawl):
    urls = [server.add(f"/{n}.png", images.png(seed=n)) for n in range(6)]
    posts = write_posts({"x": urls[:3], "y": urls[3:]})
    first = crawl(posts)
    assert first.returncode == EXIT_OK, first.stderr
    server.reset_counters()
    # Same size, other bytes: a run that read or hashed stored files would notice.
    stored = first.store / first.image("x", 1)["path"]
    stored.write_bytes(bytes(len(stored.read_bytes())))

    second = crawl(posts)

    assert second.returncode == EXIT_OK, second.stderr
    assert server.requests == []
    assert second.summary["images/cached"] == 6
    assert second.image("y", 3)["status"] == "cached"
    assert second.image("y", 3)["sha256"] == first.image("y", 3)["sha256"]
    assert set(second.manifest) == {"x", "y"}


def test_files_the_index_lacks_are_adopted_and_damaged_ones_fetched_again(
    server, write_posts, crawl
):
    # As a run killed between a rename and its index record leaves them.
    bodies = [images.jpeg(seed=n) for n in range(3)]
    urls = [server.add(f"/{n}.jpg", body) for n, body in enumerate(bodies)]
    posts = write_posts({"x": urls})
    first = crawl(posts)
    assert first.returncode == EXIT_OK, first.stderr
    phashes = [image["phash"] for image in first.manifest["x"]["images"]]
    for index in (first.store / ".igimages").glob("index.sqlite3*"):
        index.unlink()
    damaged = first.store / first.image("x", 3)["path"]
    damaged.write_bytes(bodies[2][:-200])
    server.reset_counters()

    second = crawl(posts)

    assert second.returncode == EXIT_OK, second.stderr
    assert [r.path for r in server.requests] == ["/2.jpg"]
    assert [i["status"] for i in second.manifest["x"]["images"]] == [
        "cached",
        "cached",
        "downloaded",
    ]
    stored = [(second.store / i["path"]).read_bytes() for i in second.manifest["x"]["images"]]
    assert stored == bodies
    # The adopted files are in the index again.
    index = FolderStore(StoreUri.parse(str(second.store))).index
    assert all(index.lookup("x", i["position"], i["key"]) for i in second.manifest["x"]["images"])
    index.close()
    # ...with their perceptual hash, made from the file read back.
    assert [i["phash"] for i in second.manifest["x"]["images"]] == phashes


def test_rescrape_with_rotated_signatures_on_cdn_host_makes_no_request(
    server, write_posts, crawl, tmp_path
):
    body = images.jpeg(seed=31)
    server.add("/v/t51.2885-15/123_456_n.jpg", body)
    # The test server answers as an HTTP proxy, standing in for the CDN's host.
    env = proxy_env(server)
    scrape = "https://scontent-fra5-1.cdninstagram.com/v/t51.2885-15/123_456_n.jpg?oh={}&oe={}"
    rescrape = scrape.replace("scontent-fra5-1.cdninstagram.com", "instagram.fxyz1-1.fna.fbcdn.net")
    expiry = [f"{int(time.time()) + days * 86400:X}" for days in (3, 10)]  # oe: hex seconds
    week1 = write_posts(
        {"p": [scrape.format("aaa", expiry[0]).replace("https", "http")]}, "w1.json"
    )
    week2 = write_posts(
        {"p": [rescrape.format("b", expiry[1]).replace("https", "http")]}, "w2.json"
    )

    first = crawl(week1, env=env)
    assert first.returncode == EXIT_OK, first.stderr
    assert [r.host for r in server.requests] == ["scontent-fra5-1.cdninstagram.com"]
    server.reset_counters()
    second = crawl(week2, env=env)

    assert second.returncode == EXIT_OK, second.stderr
    assert server.requests == []
    assert second.image("p", 1)["status"] == "cached"
    assert second.stored_bytes("p", 1) == body


@pytest.mark.parametrize("adaptive", [False, True])
def test_concurrency_settings_hold_as_seen_by_the_server(write_posts, crawl, adaptive):
    with ImageServer("127.0.0.1") as one, ImageServer("127.0.0.2", shared=one) as two:
        urls = []
        for n in range(24):
            host = one if n % 2 else two
            urls.append(host.add(f"/slow{n}.jpg", Route(images.jpeg(seed=n), delay=0.15)))
        posts = write_posts({f"post{n}": urls[n : n + 3] for n in range(0, 24, 3)})

        result = crawl(
            posts,
            "CONCURRENT_REQUESTS=3",
            "CONCURRENT_REQUESTS_PER_DOMAIN=2",
            f"AUTOTHROTTLE_ENABLED={adaptive}",
            "IGIMAGES_START_CONCURRENCY=1",  # the adaptive limit grows to the ceiling
            "IGIMAGES_POSTS_IN_FLIGHT=8",
        )

        assert result.returncode == EXIT_OK, result.stderr
        assert result.summary["images/downloaded"] == 24
        assert one.max_in_flight == 3  # the overall cap is reached, never passed
        assert set(one.max_in_flight_per_host.values()) == {2}


def test_posts_in_flight_bound_what_reaches_the_server(server, write_posts, crawl):
    urls = [server.add(f"/{n}.jpg", Route(images.jpeg(seed=n), delay=0.1)) for n in range(12)]
    posts = write_posts({f"p{n}": [url] for n, url in enumerate(urls)})

    result = crawl(
        posts, "CONCURRENT_REQUESTS=8", "IGIMAGES_POSTS_IN_FLIGHT=2", "AUTOTHROTTLE_ENABLED=False"
    )

    assert result.returncode == EXIT_OK, result.stderr
    assert len(result.manifest) == 12
    assert server.max_in_flight == 2


def test_hostile_post_ids_stay_inside_the_store(server, write_posts, crawl, tmp_path):
    ids = [
        "../../x",
        "/etc/cron.d/evil",
        "..",
        ".",
        "a/../../b",
        "nul\x00byte",
        "C:\\win",
        "é" * 300,
        "CON",  # names Windows refuses: a store copied there would lose them
        "nul",
        "COM1",
        "trailing.",
    ]
    urls = [server.add(f"/{n}.png", images.png(seed=41 + n)) for n in range(len(ids))]
    posts = write_posts(
        [{"id": i, "media": {"images": [u]}} for i, u in zip(ids, urls, strict=True)]
    )

    result = crawl(posts)

    assert result.returncode == EXIT_OK, result.stderr
    store = result.store.resolve()
    paths = [(store / result.image(i, 1)["path"]).resolve() for i in ids]
    assert all(store in p.parents for p in paths)
    assert len({p.parent for p in paths}) == len(ids)  # distinct ids, distinct folders
    assert all(len(p.parent.name) < 100 for p in paths)
    for path in paths:  # a name any common file system takes
        name = path.parent.name
        assert name.partition(".")[0].upper() not in {"CON", "NUL", "COM1", "PRN", "AUX"}
        assert not name.endswith((".", " "))
    assert not (tmp_path / "x").exists()
    assert not (tmp_path.parent / "x").exists()
    assert paths[0].read_bytes() == images.png(seed=41)


def test_crawl_ends_promptly_after_its_last_image(server, write_posts, crawl):
    urls = [server.add(f"/{n}.jpg", Route(images.jpeg(seed=n), delay=0.2)) for n in range(3)]
    posts = write_posts({"p": urls})

    result = crawl(posts)

    assert result.returncode == EXIT_OK, result.stderr
    # Stock Scrapy notices the end only at its next 5 s heartbeat.
    assert result.summary["elapsed_seconds"] < 1.5


def test_json_lines_posts_with_repeats_and_a_per_post_cap(server, crawl, tmp_path):
    urls = [server.add(f"/{n}.jpg", images.jpeg(seed=50 + n)) for n in range(4)]
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        json.dumps({"id": "a", "media": {"images": [urls[0], urls[0], urls[1], urls[2]]}})
        + "\n\n"
        + json.dumps({"id": "b", "media": {"images": []}})
        + "\n"
        + json.dumps({"id": 99, "media": {"images": [urls[3]]}})
        + "\n"
    )

    result = crawl(posts, "IGIMAGES_MAX_IMAGES_PER_POST=2")

    assert result.returncode == EXIT_OK, result.stderr
    assert [i["url"] for i in result.manifest["a"]["images"]] == urls[:2]
    assert result.manifest["b"]["images"] == []
    assert result.stored_bytes("99", 1) == images.jpeg(seed=53)
    assert server.hits("/2.jpg") == 0
    assert result.summary["posts/no_images"] == 1
    assert result.summary["images/total"] == 3


def test_same_url_in_posts_downloading_together_is_fetched_once(server, write_posts, crawl):
    body = images.webp(seed=60)
    shared = server.add("/shared.webp", Route(body, delay=0.3))
    posts = write_posts({f"p{n}": [shared] for n in range(4)})

    result = crawl(posts, "CONCURRENT_REQUESTS=8")

    assert result.returncode == EXIT_OK, result.stderr
    assert server.hits("/shared.webp") == 1
    paths = [result.store / result.image(f"p{n}", 1)["path"] for n in range(4)]
    assert len({p.stat().st_ino for p in paths}) == 1
    assert all(p.parent.name == f"p{n}" for n, p in enumerate(paths))
    assert sorted(result.image(f"p{n}", 1)["status"] for n in range(4)) == [
        "downloaded",
        *["duplicate"] * 3,
    ]
    server.reset_counters()
    again = crawl(posts, "CONCURRENT_REQUESTS=8")
    assert again.returncode == EXIT_OK, again.stderr
    assert [again.image(f"p{n}", 1)["status"] for n in range(4)] == ["cached"] * 4
    assert server.requests == []


def test_progress_reports_done_total_rate_and_eta(server, write_posts, crawl):
    urls = [server.add(f"/{n}.png", Route(images.png(seed=n), delay=0.3)) for n in range(12)]
    posts = write_posts({f"p{n}": [url] for n, url in enumerate(urls)})

    result = crawl(posts, "CONCURRENT_REQUESTS=2", "IGIMAGES_PROGRESS_INTERVAL=0.5")

    assert result.returncode == EXIT_OK, result.stderr
    progress = re.findall(
        r"(\d+)/12 images \(\d+%\): (\d+) downloaded, .*; ([\d.]+) images/s, ETA [^;]+; "
        r"(\d+) in flight \(127\.0\.0\.1: (\d+), limit (\d+)\)",
        result.stderr,
    )
    assert len(progress) >= 2
    done = [int(p[0]) for p in progress]
    assert done == sorted(done)
    assert 0 < done[-1] < 12
    # Two in flight at most (CONCURRENT_REQUESTS), all to the one host, whose own
    # limit stays where it starts: with so few in flight it has no reason to grow.
    assert {(p[3], p[4], p[5]) for p in progress} <= {("1", "1", "32"), ("2", "2", "32")}
    assert "downloaded 12 (" in result.stderr
    assert f"wrote {result.store / 'manifest.jsonl'}" in result.stderr


def test_a_summary_that_cannot_be_written_is_one_error_line_and_exit_status_4(
    server, write_posts, crawl, tmp_path
):
    posts = write_posts({"p": [server.add("/a.jpg", images.jpeg(seed=2))]})
    (tmp_path / "a-file").write_text("not a folder")

    result = crawl(posts, f"IGIMAGES_SUMMARY_FILE={tmp_path / 'a-file' / 'summary.json'}")

    assert result.returncode == 4, result.stderr  # finished, but an output was not written
    errors = [line for line in result.stderr.splitlines() if "] ERROR: " in line]
    assert len(errors) == 1
    assert "Cannot write the summary" in errors[0]
    assert "Traceback" not in result.stderr
    assert result.stored_bytes("p", 1) == images.jpeg(seed=2)  # the crawl itself is whole


def test_log_level_still_decides_what_is_logged(server, write_posts, crawl, tmp_path):
    # RuntimeTuning raises the loggers' own levels to LOG_LEVEL: DEBUG must
    # still show Scrapy's per-image lines, and INFO must not.
    posts = write_posts({"p": [server.add("/a.jpg", images.jpeg(seed=1))]})

    debug = crawl(posts, "LOG_LEVEL=DEBUG", target=tmp_path / "debug")
    info = crawl(posts, "LOG_LEVEL=INFO", target=tmp_path / "info")

    assert debug.returncode == info.returncode == EXIT_OK, debug.stderr + info.stderr
    crawled = f"Crawled (200) <GET {server.url('/a.jpg')}>"
    assert crawled in debug.stderr
    assert "] DEBUG: " in debug.stderr
    assert "] DEBUG: " not in info.stderr
    assert "igimages finished (finished)" in info.stderr
