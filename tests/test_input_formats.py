"""The input layer on its own: detection, field paths, positions, repeats, errors."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from igimages.inputs import InputSpec, PostsFileError, PostSource, Skipped
from igimages.inputs.fields import resolve
from igimages.inputs.seen import SeenSet
from igimages.items import Post

FIXTURES = Path(__file__).parent / "fixtures"
FIELDS = {"id_field": "pk", "image_fields": "carousel.image.src,cover.src"}


def read(posts: Path | str, max_images: int = 0, **args: str) -> tuple[str, list[Post | Skipped]]:
    source = PostSource(InputSpec.from_args({"posts": str(posts), **args}))
    return source.format.name, list(source.entries(max_images))


@pytest.mark.parametrize(
    ("fixture", "args", "expected", "posts", "skipped"),
    [
        ("seed.json", {}, "seed", 4, 1),
        ("apify.json", {}, "apify", 5, 2),
        ("instaloader", {}, "instaloader", 4, 1),
        ("gallery-dl", {}, "gallery-dl", 5, 1),
        ("failures.jsonl", {}, "failures", 2, 0),
        ("manifest.jsonl", {}, "manifest", 2, 0),
        ("custom.jsonl", FIELDS, "fields", 3, 1),
    ],
)
def test_each_fixture_is_read_as_its_format(fixture, args, expected, posts, skipped):
    name, entries = read(FIXTURES / fixture, **args)

    assert name == expected
    assert sum(isinstance(e, Post) for e in entries) == posts
    assert sum(isinstance(e, Skipped) for e in entries) == skipped


def test_igimages_feeds_keep_each_images_position_through_the_cap():
    _, failures = read(FIXTURES / "failures.jsonl")
    _, capped = read(FIXTURES / "failures.jsonl", max_images=1)
    _, manifest = read(FIXTURES / "manifest.jsonl")

    assert [(p.id, p.positions) for p in failures] == [
        ("3300000000000000501", [2, 4]),  # two lines of one post: one post
        ("3300000000000000502", [1]),
    ]
    assert [p.position(0) for p in failures] == [2, 1]
    assert capped[0].positions == [2]
    assert len(capped[0].image_urls) == 1
    assert manifest[0].positions == [1, 2]
    assert manifest[1].image_urls == []


def test_field_paths_spread_over_lists_and_pick_by_number():
    value = {
        "a": [{"b": {"c": "x"}}, {"b": {"c": ["y", "z"]}}, {"d": 1}, "text"],
        "n": {"0": "key zero"},
    }
    assert resolve(value, "a.b.c") == ["x", "y", "z"]
    assert resolve(value, "a.1.b.c") == ["y", "z"]
    assert resolve(value, "a.9.b") == []
    assert resolve(value, "n.0") == ["key zero"]
    assert resolve(value, "missing.path") == []


def test_seen_set_tells_repeats_among_many_strings():
    seen = SeenSet(capacity=8)
    ids = [str(3300000000000000000 + n * 7919) for n in range(200_000)]

    assert all(seen.add(i) for i in ids)
    assert not any(seen.add(i) for i in ids[::997])
    assert len(seen) == len(ids)
    assert seen.add("")
    assert not seen.add("")


def test_pretty_printed_documents_and_crlf_lines(tmp_path):
    pretty = tmp_path / "one.json"
    pretty.write_text(json.dumps({"id": 1, "media": {"images": ["http://h/1"]}}, indent=4))
    crlf = tmp_path / "posts.jsonl.gz"
    lines = '{"id": 1, "media": {"images": ["http://h/1"]}}\r\n\r\n{"id": 2, "media": {}}\r\n'
    crlf.write_bytes(gzip.compress(lines.encode("utf-8-sig")))

    assert [p.image_urls for p in read(pretty)[1]] == [["http://h/1"]]
    assert [p.id for p in read(crlf)[1]] == ["1", "2"]


def test_format_can_be_asked_for_where_detection_gives_up(tmp_path):
    posts = tmp_path / "posts.json"
    values = [{"id": n} for n in range(100)] + [{"id": "x", "media": {"images": ["http://h/x"]}}]
    posts.write_text(json.dumps(values))

    with pytest.raises(PostsFileError, match=r"posts.json:1:2: cannot tell the posts format"):
        read(posts)
    name, entries = read(posts, format="seed")
    assert name == "seed"
    assert len(entries) == 101


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"format": "fields"}, "-a format=fields needs -a id_field and -a image_fields"),
        ({"id_field": "pk"}, "field mapping needs -a id_field=PATH and -a image_fields"),
        ({**FIELDS, "format": "apify"}, "and no format other than fields"),
        ({"format": "csv"}, "unknown format 'csv': use one of seed, apify, instaloader,"),
    ],
)
def test_arguments_that_cannot_work_are_errors(args, message):
    with pytest.raises(PostsFileError, match=re.escape(message)):
        InputSpec.from_args({"posts": "posts.json", **args})


def test_folder_without_json_and_broken_file_in_a_folder(tmp_path):
    (tmp_path / "empty" / ".igimages").mkdir(parents=True)
    (tmp_path / "empty" / ".igimages" / "hidden.json").write_text("{}")
    with pytest.raises(PostsFileError, match=r"empty: no \.json files in this folder"):
        read(tmp_path / "empty")

    folder = tmp_path / "gallery"
    folder.mkdir()
    (folder / "a.jpg.json").write_text(json.dumps({"post_id": "1", "num": 1, "display_url": "u"}))
    (folder / "b.jpg.json").write_text('{"post_id": "2", "num": ')
    _, entries = read(folder)
    assert [e.id for e in entries if isinstance(e, Post)] == ["1"]
    (bad,) = (e for e in entries if isinstance(e, Skipped))
    assert str(bad).startswith(f"{folder}/b.jpg.json:1:")
    assert "invalid JSON" in str(bad)


def test_seen_set_moves_past_its_memory_limit_to_disk(monkeypatch):
    monkeypatch.setattr(SeenSet, "MAX_IN_MEMORY", 500)
    seen = SeenSet(capacity=8)
    ids = [f"post-{n}" for n in range(3000)]

    assert all(seen.add(i) for i in ids)
    assert not any(seen.add(i) for i in ids)  # repeats found in memory and on disk
    assert len(seen) == 3000
    assert len(seen._slots) <= 1024  # the table stopped growing at the limit
