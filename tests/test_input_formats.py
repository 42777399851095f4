"""The input layer on its own: detection, field paths, positions, repeats, errors."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest

from igimages.inputs import InputSpec, PostsFileError, PostSource, Skipped
from igimages.inputs.fields import resolve
from igimages.inputs.seen import SeenSet
from igimages.items import Post
from igimages.plan import make_plan
from tests.test_core import project_settings

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
        ("instaloader", {}, "instaloader", 4, 1),  # nodes as graphql's, detected as instaloader
        ("graphql.json", {}, "graphql", 3, 1),
        ("instagram-v1.json", {}, "instagram-v1", 3, 1),
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


def test_posts_are_found_inside_saved_responses_three_objects_deep(tmp_path):
    node = {"__typename": "GraphImage", "id": "9", "shortcode": "C9", "display_url": "http://h/9"}
    top = {"__typename": "GraphImage", "id": "8", "shortcode": "C8", "display_url": "http://h/8"}
    hashtag = {
        "edge_hashtag_to_top_posts": {"edges": [{"node": top}]},
        "edge_hashtag_to_media": {"count": 2, "edges": [{"node": top}, {"node": node}]},
        "edge_related_tags": {"edges": [{"node": {"name": "lake"}}]},  # no posts: passed over
    }
    responses = tmp_path / "responses.jsonl"
    lines = [
        {"graphql": {"hashtag": hashtag}},
        {"data": {"xdt_shortcode_media": {"__typename": "XDTGraphImage", "id": "7"}}},
        {"data": {"user": {"edge_owner_to_timeline_media": {"count": 0, "edges": []}}}},
        {"items": [{"node": "not a post"}], "more_available": False},  # no post: a bad one
    ]
    responses.write_text("".join(json.dumps(line) + "\n" for line in lines))

    name, entries = read(responses)

    assert name == "graphql"
    assert [(e.id, e.image_urls) for e in entries if isinstance(e, Post)] == [
        ("8", ["http://h/8"]),
        ("9", ["http://h/9"]),
        ("7", []),  # a post page's one post, as newer web responses name its type
    ]
    skipped = [str(e) for e in entries if isinstance(e, Skipped)]
    assert skipped == [
        f"{responses}:1:1: skipped post #2: post 8 is in the input twice (same id): processed once",
        f'{responses}:4:1: skipped post #5: the post has no "id" (a non-empty string or number)',
    ]

    too_deep = tmp_path / "deep.json"
    too_deep.write_text(json.dumps({"a": {"b": {"c": {"d": {"edges": [{"node": node}]}}}}}))
    with pytest.raises(PostsFileError, match="cannot tell the posts format"):
        read(too_deep)


def test_v1_keeps_the_widest_candidate_whatever_their_order(tmp_path):
    def candidate(width: Any, height: Any = 100) -> dict[str, Any]:
        return {"width": width, "height": height, "url": f"http://h/{width}x{height}"}

    def item(pk: int, *candidates: dict[str, Any]) -> dict[str, Any]:
        return {"pk": pk, "media_type": 1, "image_versions2": {"candidates": list(candidates)}}

    posts = tmp_path / "items.json"
    items = [
        item(1, candidate(320), candidate(1440), candidate(1080)),
        item(2, candidate(1080, 1080), candidate(1080, 1350), candidate(750, 2000)),  # then height
        item(3, candidate(None), candidate("wide"), candidate(150)),  # a width not a number
        item(4, {"width": 2000}, candidate(640)),  # a candidate without "url" is none
        item(5),
    ]
    posts.write_text(json.dumps(items))

    name, entries = read(posts)

    assert name == "instagram-v1"
    assert [(p.id, p.image_urls) for p in entries] == [
        ("1", ["http://h/1440x100"]),
        ("2", ["http://h/1080x1350"]),
        ("3", ["http://h/150x100"]),
        ("4", ["http://h/640x100"]),
        ("5", []),
    ]


def test_plan_names_the_detected_format(tmp_path):
    settings = project_settings(tmp_path / "not-created")
    for fixture, name, images in (
        ("graphql.json", "graphql", 4),
        ("instagram-v1.json", "instagram-v1", 4),
    ):
        source = PostSource(InputSpec.from_args({"posts": str(FIXTURES / fixture)}))

        report = make_plan(source, settings).report()

        assert f"{fixture}: {name} posts (detected)" in report
        assert re.search(rf"^  images +{images}$", report, re.MULTILINE), report
        assert "skipped: 1 bad" in report


def test_v1_items_as_the_nodes_of_a_graphql_connection(tmp_path):
    """Today's profile pages answer with v1 items as GraphQL edges' nodes."""
    item = {"__typename": "XDTMediaDict", "pk": "5", "id": "5_1", "code": "C5", "media_type": 1}
    item["image_versions2"] = {"candidates": [{"width": 1080, "height": 1080, "url": "http://h/5"}]}
    connection = {"edges": [{"node": item, "cursor": "5"}], "page_info": {"has_next_page": False}}
    response = tmp_path / "profile.json"
    data = {"xdt_api__v1__feed__user_timeline_graphql_connection": connection}
    response.write_text(json.dumps({"data": data}, indent=2))

    name, entries = read(response)

    assert name == "instagram-v1"
    assert [(p.id, p.url, p.image_urls) for p in entries] == [
        ("5", "https://www.instagram.com/p/C5/", ["http://h/5"])
    ]
