"""The small pure parts: reading posts, checking images, naming things."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
    UnsupportedURLSchemeError,
)
from twisted.internet.error import ConnectionLost, DNSLookupError

from igimages.fetch.addresses import BlockedAddress
from igimages.fetch.gate import DownloadAborted
from igimages.fetch.handler import CertificateRefused
from igimages.fetch.reasons import failure_reason
from igimages.inputs import reader as reader_module
from igimages.inputs.post import BadPost
from igimages.inputs.reader import JsonValues
from igimages.inputs.seed import Seed
from igimages.keys import image_key, safe_post_dir
from igimages.outputs.storages import FeedNotStored
from igimages.store import INDEX_DIR, StoredImage, StoreUri
from igimages.store.folder import FolderStore
from igimages.validation import ImageRejected, inspect_image
from tests import images


def test_json_array_is_read_in_chunks_with_exact_positions(tmp_path, monkeypatch):
    monkeypatch.setattr(reader_module, "CHUNK_CHARS", 37)  # posts straddle chunks
    values = [
        {"id": n, "media": {"images": [f"http://h/{n}/{k}" for k in range(n % 4)]}}
        for n in range(300)
    ]
    path = tmp_path / "posts.json"
    path.write_text(json.dumps(values, indent=2))
    lines = path.read_text().split("\n")

    found = list(JsonValues(str(path)))

    assert [f.value for f in found] == values
    assert [f.index for f in found] == list(range(1, 301))
    assert all(lines[f.line - 1][f.column - 1] == "{" for f in found)


def test_json_lines_keep_line_numbers_and_mark_malformed_lines(tmp_path):
    path = tmp_path / "posts.jsonl"
    path.write_text('{"id": 1}\n\n  {"id": 2}\n{not json\n{"id": 3}\n')

    found = list(JsonValues(str(path)))

    assert [(f.line, f.column, f.index) for f in found] == [
        (1, 1, 1),
        (3, 3, 2),
        (4, 2, 3),
        (5, 1, 4),
    ]
    with pytest.raises(BadPost, match="invalid JSON"):
        Seed().to_post(found[2].value)


def test_post_urls_keep_order_and_lose_repeats():
    value = {"id": 7, "url": "u", "media": {"images": ["b", "a", "b", " ", "c"]}}
    assert Seed().to_post(value).image_urls == ["b", "a", "c"]
    assert Seed().to_post(value).id == "7"


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        "x",
        {"id": ""},
        {"id": True},
        {"id": 1, "media": {"images": "http://x"}},
        {"id": 1, "media": {"images": [None]}},
        {"id": {"a": 1}},
    ],
)
def test_unusable_posts_are_bad_posts(value):
    with pytest.raises(BadPost):
        Seed().to_post(value)


def test_jpeg_cut_short_is_truncated_even_with_a_valid_header():
    body = images.jpeg(200, 150, seed=1)
    assert inspect_image(body).format == "JPEG"
    with pytest.raises(ImageRejected) as rejected:
        inspect_image(body[: len(body) - 100])
    assert rejected.value.reason == "truncated"


@pytest.mark.parametrize("make", [images.png, images.webp, images.gif])
def test_other_formats_cut_short_are_truncated(make):
    body = make(120, 90, seed=2)
    with pytest.raises(ImageRejected) as rejected:
        inspect_image(body[: len(body) * 2 // 3])
    assert rejected.value.reason == "truncated"


def test_inspecting_images_imports_only_the_kept_formats_plugins(tmp_path):
    # Asked for a format whose plugin is not loaded, Image.open imports all of
    # Pillow's plugins: about 35 ms and 4 MiB in every crawl.
    for name, body in [
        ("jpg", images.jpeg()),
        ("png", images.png()),
        ("webp", images.webp()),
        ("gif", images.gif()),
        ("html", images.html_page()),
    ]:
        (tmp_path / name).write_bytes(body)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from igimages.validation import ImageRejected, inspect_image\n"
        "for path in sorted(Path(sys.argv[1]).iterdir()):\n"
        "    try:\n"
        "        print(path.name, inspect_image(path.read_bytes()).format)\n"
        "    except ImageRejected as exc:\n"
        "        print(path.name, exc.reason)\n"
        "print(*sorted(name for name in sys.modules if name.endswith('ImagePlugin')))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    *results, plugins = run.stdout.splitlines()
    assert results == ["gif GIF", "html not_image", "jpg JPEG", "png PNG", "webp WEBP"]
    kept = {"Bmp", "Gif", "Jpeg", "Mpo", "Png", "Tiff", "WebP", "Ppm"}  # Ppm: Pillow's own pick
    assert set(plugins.split()) <= {f"PIL.{name}ImagePlugin" for name in kept}


def test_a_new_store_opens_while_another_process_holds_its_index(tmp_path):
    # Processes splitting one input start together on one new folder. The
    # first to switch the index to WAL needs the file alone, and SQLite makes
    # the others fail at once rather than wait: one two-process benchmark run
    # in three lost a process that way.
    index = tmp_path / INDEX_DIR / "index.sqlite3"
    index.parent.mkdir()
    other = sqlite3.connect(index, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE other (x)")
    threading.Timer(0.3, other.execute, ["COMMIT"]).start()

    store = FolderStore(StoreUri.parse(str(tmp_path)))
    image = StoredImage("p", 0, "k", "p/0_k.jpg", "0" * 64, 3, 1, 1, "JPEG")
    store.write(image.path, b"abc")
    store.index.record(image)
    assert store.index.lookup("p", 0, "k") == image
    store.index.close()
    other.close()


def test_signed_cdn_urls_share_a_key_whatever_their_query_or_cdn_host():
    one = "https://scontent-a.cdninstagram.com/v/t51/1_n.jpg?oh=aa&oe=6A85EE48"
    two = "https://instagram.fabc1-1.fna.fbcdn.net/v/t51/1_n.jpg?oh=bb&oe=6A9F0000"
    other = "https://example.com/v/t51/1_n.jpg?size=large"
    assert image_key(one) == image_key(two)
    assert image_key(other) != image_key(other.replace("large", "small"))
    assert image_key("https://evilcdninstagram.com/v/t51/1_n.jpg?a=1") != image_key(
        "https://evilcdninstagram.com/v/t51/1_n.jpg?a=2"
    )


WINDOWS_RESERVED = ["CON", "con", "PRN", "AUX", "NUL", "Nul", "COM1", "com9", "LPT1", "LPT0"]


@pytest.mark.parametrize(
    "post_id",
    [
        "../../x",
        "..",
        ".",
        "",
        "/abs",
        "a\x00b",
        "x" * 500,
        "é",
        "x.",
        "x ",
        "a:b",
        *WINDOWS_RESERVED,
    ],
)
def test_post_dirs_are_single_safe_names(post_id):
    name = safe_post_dir(post_id)
    assert name not in ("", ".", "..")
    assert "/" not in name
    assert "\x00" not in name
    assert len(name) <= 100
    assert name.isascii()
    # Windows refuses these names in any case, with or without an extension,
    # and names ending with a dot or a space, and ":" (a stream).
    assert name.partition(".")[0].upper() not in {n.upper() for n in WINDOWS_RESERVED}
    assert not name.endswith((".", " "))
    assert not set(name) & set('<>:"\\|?*')


def test_usual_ids_keep_their_name():
    for post_id in (
        "3301234567890123456",
        "C1aBcDeFgHi",
        "post_1-a",
        "CONSOLE",
        "COM10",
        "x" * 100,
    ):
        assert safe_post_dir(post_id) == post_id


def test_distinct_ids_never_share_a_folder():
    ids = ["a/b", "a_b", "a b", "a\\b", "A_B", "1", "01"]
    assert len({safe_post_dir(i) for i in ids}) == len(ids)


@pytest.mark.parametrize(
    ("exception", "reason"),
    [
        (CannotResolveHostError(), "dns"),
        (DNSLookupError(), "dns"),
        (DownloadTimeoutError(), "timeout"),
        (DownloadConnectionRefusedError(), "connection"),
        (ConnectionLost(), "connection"),
        (ResponseDataLossError(), "truncated"),
        (UnsupportedURLSchemeError(), "unsupported_scheme"),
        (DownloadAborted(), "interrupted"),
        (BlockedAddress(), "blocked_address"),
        (CertificateRefused(), "certificate"),
        (IgnoreRequest(), "filtered"),
        (ValueError("odd"), "error"),
    ],
)
def test_download_exceptions_map_to_reasons(exception, reason):
    assert failure_reason(exception) == reason


def test_a_feed_that_cannot_be_stored_is_logged_in_one_line(caplog):
    try:
        raise FeedNotStored("No space left on device")
    except FeedNotStored:
        logging.getLogger("scrapy.extensions.feedexport").error(
            "Error storing %s", "jsonlines feed (3 items) in: out/manifest.jsonl", exc_info=True
        )

    (record,) = caplog.records
    assert caplog.text.strip().endswith(
        "Error storing jsonlines feed (3 items) in: out/manifest.jsonl: No space left on device"
    )
    assert record.exc_info is None
    assert "Traceback" not in caplog.text


def test_a_crawl_that_is_not_a_job_loads_neither_redis_nor_the_report():
    probe = (
        "import sys, igimages.pipeline.post_images, igimages.outputs.progress, "
        "igimages.commands.crawl, igimages.commands.job, igimages.commands.report, "
        "igimages.spiders.post_images, igimages.fetch.gate, igimages.job; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'scrapy_redis') "
        "or m.startswith('igimages.report') or m.startswith('igimages.job.')))"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "[]"
