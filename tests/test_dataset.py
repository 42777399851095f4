"""The store as a data set (IGIMAGES_DATASET): what pyarrow and Hugging Face's datasets read.

Real crawls against the loopback image server, in a folder, a bucket (moto's
S3) and a job (a real redis-server); the table is read back by pyarrow, the
image folder by ``datasets.load_dataset("imagefolder")`` itself, offline.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import igimages
from igimages.commands.report import write_report
from igimages.items import Post
from igimages.outputs.dataset import ImageFolderExporter
from igimages.outputs.rows import hash_pairs, image_rows
from igimages.outputs.storages import UNWRITTEN
from igimages.similar import similar_groups
from tests import images
from tests.conftest import PROJECT_ROOT, crawl_env, read_jsonl, sha256
from tests.imageserver import Route
from tests.test_core import crawl_here, project_settings

EXIT_OK, EXIT_STOPPED, EXIT_SOME_FAILED, EXIT_NOT_WRITTEN = 0, 1, 3, 4
NO_PYARROW = PROJECT_ROOT / "tests" / "no_pyarrow"  # a sitecustomize: import pyarrow fails
DATASET = "IGIMAGES_DATASET=True"


@pytest.fixture
def corpus(server) -> tuple[dict[str, list[str]], dict[str, bytes]]:
    """Three posts: a JPEG, a PNG, the JPEG again under another URL, a WebP, a 404.
    Returns the posts and each URL's bytes."""
    bodies = {
        "/a.jpg": images.jpeg(80, 60, seed=1),
        "/b.png": images.png(40, 30, seed=2),
        "/copy-of-a.jpg": images.jpeg(80, 60, seed=1),
        "/c.webp": images.webp(50, 70, seed=3),
    }
    # The copy answers last, so the first post's image is the one stored.
    urls = {
        path: server.add(path, Route(body, delay=0.3 if path == "/copy-of-a.jpg" else 0))
        for path, body in bodies.items()
    }
    gone = server.add("/gone.jpg", Route(status=404))
    posts = {
        "p1": [urls["/a.jpg"], urls["/b.png"]],
        "p2": [urls["/copy-of-a.jpg"], gone],
        "p3": [urls["/c.webp"]],
    }
    return posts, {url: bodies[path] for path, url in urls.items()}


def expected_rows(manifest: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifest's images flattened, with the groups ``similar_groups`` gives them."""
    groups = similar_groups(hash_pairs(row for post in manifest for row in image_rows(post)))
    return [row for post in manifest for row in image_rows(post, groups)]


def check_table(table: pa.Table, manifest: list[dict[str, Any]], bodies: dict[str, bytes]) -> None:
    """One row per image, failed ones too, with Arrow types and the right values."""
    assert table.schema.field("position").type == pa.int32()
    assert table.schema.field("bytes").type == pa.int64()
    assert table.schema.field("http_status").type == pa.int32()
    assert table.schema.field("similar").type == pa.string()
    rows = table.to_pylist()
    assert rows == expected_rows(manifest)
    by_place = {(row["post_id"], row["position"]): row for row in rows}
    assert sorted(by_place) == [("p1", 1), ("p1", 2), ("p2", 1), ("p2", 2), ("p3", 1)]
    for row in rows:
        if row["status"] == "failed":
            continue
        body = bodies[row["url"]]
        assert row["sha256"] == sha256(body)
        assert (row["width"], row["height"]) == Image.open(io.BytesIO(body)).size
        assert row["bytes"] == len(body)
        assert row["similar"] is not None
    failed = by_place[("p2", 2)]
    assert (failed["status"], failed["reason"], failed["http_status"]) == (
        "failed",
        "http_404",
        404,
    )
    assert failed["path"] is failed["sha256"] is failed["similar"] is failed["width"] is None
    copy = by_place[("p2", 1)]
    assert (copy["status"], copy["duplicate_of"]) == ("duplicate", by_place[("p1", 1)]["path"])
    assert copy["similar"] == by_place[("p1", 1)]["similar"]


def check_metadata(lines: list[dict[str, Any]], manifest: list[dict[str, Any]]) -> None:
    """A line per stored image file, named by its path in the store, failed ones left out."""
    stored = [row for row in expected_rows(manifest) if row["status"] != "failed"]
    assert [line["file_name"] for line in lines] == [row["path"] for row in stored]
    for line, row in zip(lines, stored, strict=True):
        assert line == {
            "file_name": row["path"],
            **{name: row[name] for name in list(line)[1:]},
        }
    assert list(lines[0]) == [
        "file_name", "post_id", "position", "url", "post_url", "sha256",
        "width", "height", "format", "status", "similar",
    ]  # fmt: skip


@pytest.mark.timeout(60)
def test_a_folder_store_loads_as_an_imagefolder_and_its_table_in_arrow(
    server, corpus, tmp_path, monkeypatch
):
    posts, bodies = corpus
    store = tmp_path / "store"
    crawled = crawl_here(posts, store, IGIMAGES_DATASET=True)
    assert write_report(project_settings(store)) == 0  # report/ and its thumbnails too
    assert list((store / ".igimages" / "thumbs").rglob("*.jpg"))
    (store / "report" / "chart.png").write_bytes(images.png(seed=9))  # an image not of a post
    manifest = read_jsonl(store / "manifest.jsonl")

    check_table(pq.read_table(store / "manifest.parquet"), manifest, bodies)
    check_metadata(read_jsonl(store / "metadata.jsonl"), manifest)
    assert {str(store / "manifest.parquet"), str(store / "metadata.jsonl")} <= set(
        crawled.stats["igimages/outputs/written"]
    )

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets  # heavy: only here

    loaded = datasets.load_dataset(
        "imagefolder", data_dir=str(store), split="train", cache_dir=str(tmp_path / "hf")
    )
    examples = sorted(loaded, key=lambda example: (example["post_id"], example["position"]))
    stored = sorted(
        (row for row in expected_rows(manifest) if row["status"] != "failed"),
        key=lambda row: (row["post_id"], row["position"]),
    )  # the manifest is in the order posts finished
    assert [(e["post_id"], e["position"]) for e in examples] == [
        ("p1", 1), ("p1", 2), ("p2", 1), ("p3", 1)
    ]  # fmt: skip
    for example, row in zip(examples, stored, strict=True):
        body = bodies[row["url"]]
        assert example["sha256"] == row["sha256"] == sha256(body)
        assert example["image"].size == (example["width"], example["height"])
        assert example["image"].size == Image.open(io.BytesIO(body)).size
        assert (example["status"], example["similar"]) == (row["status"], row["similar"])
    assert examples[2]["image"].tobytes() == examples[0]["image"].tobytes()  # the hard link


def test_a_dataset_feed_that_cannot_be_written_leaves_the_previous_one_whole(
    server, corpus, tmp_path
):
    posts, _ = corpus
    store = tmp_path / "store"
    crawl_here(posts, store, IGIMAGES_DATASET=True)
    before = {name: (store / name).read_bytes() for name in ("manifest.parquet", "metadata.jsonl")}
    posts["p4"] = [server.add("/d.png", images.png(seed=4))]

    # No folder for the posts the exporters keep until the end.
    crawled = crawl_here(posts, store, IGIMAGES_DATASET=True, FEED_TEMPDIR=str(tmp_path / "none"))

    assert crawled.stats[UNWRITTEN] == [
        f"{store / name}: No such file or directory" for name in before
    ]
    for name, data in before.items():
        assert (store / name).read_bytes() == data, f"{name} changed"
    assert "p4" in crawled.images  # the other feeds are written
    assert list(store.rglob("*.part")) == []


@pytest.mark.timeout(60)
def test_without_pyarrow_a_dataset_crawl_is_refused_in_one_line_before_any_download(
    server, corpus, write_posts, crawl, store
):
    posts = write_posts(corpus[0])
    env = crawl_env(PYTHONPATH=os.pathsep.join((str(NO_PYARROW), str(PROJECT_ROOT))))

    refused = crawl(posts, DATASET, env=env)

    assert refused.returncode == EXIT_STOPPED, refused.stderr[-3000:]
    errors = [line for line in refused.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        "error: IGIMAGES_DATASET=True needs pyarrow, which cannot be imported "
        "(No module named 'pyarrow'): pip install 'igimages[dataset]' (or pip install pyarrow)"
    ]
    assert server.requests == []
    assert not (store / "p1").exists()

    plain = crawl(posts, env=env)  # pyarrow is needed for the data set only
    assert plain.returncode == EXIT_SOME_FAILED, plain.stderr[-3000:]
    assert not (store / "manifest.parquet").exists()


@pytest.mark.timeout(90)
def test_a_bucket_store_gets_the_table_and_the_metadata(corpus, write_posts, crawl, s3_bucket):
    posts, bodies = corpus
    bucket = s3_bucket

    result = crawl(write_posts(posts), *bucket.settings, DATASET, env=bucket.env, target=bucket.uri)

    assert result.returncode == EXIT_SOME_FAILED, result.stderr[-3000:]
    objects = bucket.objects()
    manifest = [json.loads(line) for line in objects["manifest.jsonl"].splitlines()]
    check_table(pq.read_table(pa.BufferReader(objects["manifest.parquet"])), manifest, bodies)
    lines = [json.loads(line) for line in objects["metadata.jsonl"].splitlines()]
    check_metadata(lines, manifest)
    for line in lines:  # each names an object of the bucket, with those bytes
        assert sha256(objects[line["file_name"]]) == line["sha256"]


@pytest.mark.timeout(90)
def test_a_job_writes_the_dataset_with_its_feeds_and_refuses_to_start_without_pyarrow(
    server, corpus, write_posts, crawl, store, job
):
    posts, bodies = corpus
    no_pyarrow = crawl_env(PYTHONPATH=os.pathsep.join((str(NO_PYARROW), str(PROJECT_ROOT))))
    refused = crawl(write_posts(posts), *job.settings, DATASET, env=no_pyarrow)
    assert refused.returncode == EXIT_STOPPED, refused.stderr[-3000:]
    assert "error: IGIMAGES_DATASET=True needs pyarrow" in refused.stderr
    assert server.requests == []

    worker = crawl(write_posts(posts), *job.settings, DATASET)

    assert worker.returncode == EXIT_SOME_FAILED, worker.stderr[-3000:]
    manifest = read_jsonl(store / "manifest.jsonl")
    check_table(pq.read_table(store / "manifest.parquet"), manifest, bodies)
    check_metadata(read_jsonl(store / "metadata.jsonl"), manifest)


def test_rows_flatten_a_manifest_line_with_nulls_where_nothing_applies():
    line = {
        "id": "p",
        "url": None,
        "images": [
            {"url": "u1", "position": 1, "status": "downloaded", "sha256": "ab" * 32, "phash": ""},
            {"url": "u2", "position": 2, "status": "failed", "reason": "timeout", "attempts": 3},
        ],
    }
    groups = {"ab" * 32: "g1"}

    first, second = image_rows(line, groups)

    assert (first["post_id"], first["post_url"], first["similar"], first["phash"]) == (
        "p", None, "g1", None
    )  # fmt: skip
    assert first["reason"] is None
    assert (second["similar"], second["sha256"], second["reason"]) == (None, None, "timeout")
    assert list(hash_pairs([first, second])) == [("ab" * 32, "")]


def test_a_post_without_url_has_an_empty_post_url_in_the_image_folder_metadata(tmp_path):
    """datasets types a column by its first 10 MB of lines: a post URL null there
    would make a later one fail to load, so a missing one is ""."""
    output = io.BytesIO()
    exporter = ImageFolderExporter(output, spool_folder=str(tmp_path))
    image = {
        "url": "u",
        "position": 1,
        "status": "downloaded",
        "path": "p/1_k.jpg",
        "sha256": "0" * 64,
    }
    exporter.export_item(Post("p", None, [], [image]))
    exporter.finish_exporting()

    (line,) = [json.loads(text) for text in output.getvalue().splitlines()]
    assert (line["file_name"], line["post_url"]) == ("p/1_k.jpg", "")


def test_the_apis_image_rows_are_the_tables_and_it_writes_the_dataset(server, corpus, tmp_path):
    posts, bodies = corpus
    store = tmp_path / "store"

    result = igimages.download(posts_file(posts, tmp_path), store, dataset=True)

    assert result.exit_status == EXIT_SOME_FAILED
    assert result.feeds["manifest.parquet"] == str(store / "manifest.parquet")
    assert result.feeds["metadata.jsonl"] == str(store / "metadata.jsonl")
    table = pq.read_table(store / "manifest.parquet")
    check_table(table, read_jsonl(store / "manifest.jsonl"), bodies)
    assert list(result.images()) == table.to_pylist()  # one flattening


@pytest.mark.timeout(60)
def test_without_pyarrow_the_api_raises_the_line_scrapy_crawl_prints(server, corpus, tmp_path):
    script = textwrap.dedent(
        f"""
        import igimages
        try:
            igimages.download({str(posts_file(corpus[0], tmp_path))!r}, {str(tmp_path)!r} + "/s",
                              dataset=True)
        except igimages.DownloadError as exc:
            print(exc.exit_status, exc)
        """
    )
    env = crawl_env(PYTHONPATH=os.pathsep.join((str(NO_PYARROW), str(PROJECT_ROOT))))

    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )

    assert ran.stdout.splitlines() == [
        "1 IGIMAGES_DATASET=True needs pyarrow, which cannot be imported "
        "(No module named 'pyarrow'): pip install 'igimages[dataset]' (or pip install pyarrow)"
    ], ran.stderr[-3000:]
    assert server.requests == []


def posts_file(posts: dict[str, list[str]], folder: Path) -> Path:
    path = folder / "posts.json"
    path.write_text(
        json.dumps([{"id": post, "media": {"images": urls}} for post, urls in posts.items()])
    )
    return path
