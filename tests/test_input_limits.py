"""A hostile posts input meets explicit limits: one post's size, its nesting, its
numbers, its images' positions. Past one, a value is a bad post (JSON Lines, a
folder) or the whole input is refused at its place (an array); never a traceback."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from igimages.inputs import InputSpec, PostsFileError, PostSource, Skipped
from igimages.items import Post
from tests import images
from tests.conftest import sha256

EXIT_OK, EXIT_BAD_INPUT = 0, 2
MIB = 1 << 20


def seed(post_id: str, *urls: str, **extra: object) -> str:
    return json.dumps({"id": post_id, "media": {"images": list(urls)}, **extra})


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


HOSTILE_LINES = {  # each a post past one limit, and what it is told
    "deep": ('{"id": "deep", "media": {"images": []}, "x": ' + nested(100_000) + "}", "nested"),
    "101": ('{"id": "101", "media": {"images": []}, "x": ' + nested(100) + "}", "nested"),
    "digits": ('{"id": ' + "7" * 5000 + ', "media": {"images": []}}', "longer than 4,300 digits"),
    "long": (seed("long", "http://x/" + "a" * (17 * MIB)), "longer than 16 MiB"),
}


def entries(path: Path, **args: str) -> list[Post | Skipped]:
    return list(PostSource(InputSpec.from_args({"posts": str(path), **args})).entries())


def test_each_limit_makes_a_json_lines_post_bad_and_the_rest_goes_on(tmp_path):
    lines = [seed("first", "http://x/1.jpg")]
    for number, (text, _) in enumerate(HOSTILE_LINES.values()):
        lines += [text, seed(f"after-{number}", "http://x/2.jpg")]
    # Exactly at the limits: still posts (100 levels in all, 4,300 digits).
    lines.append('{"id": "100", "media": {"images": []}, "x": ' + nested(98) + "}")
    lines.append('{"id": ' + "7" * 4300 + ', "media": {"images": []}}')
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n")

    found = entries(path)

    posts = [entry.id for entry in found if isinstance(entry, Post)]
    assert posts == ["first", "after-0", "after-1", "after-2", "after-3", "100", "7" * 4300]
    bad = {entry.at.line: str(entry) for entry in found if isinstance(entry, Skipped)}
    assert sorted(bad) == [2, 4, 6, 8]
    for line, (_, said) in zip(sorted(bad), HOSTILE_LINES.values(), strict=True):
        assert f"posts.jsonl:{line}:1: skipped post #{line}: " in bad[line]
        assert said in bad[line]
    assert "nested deeper than 100 levels" in bad[4]


def test_an_over_long_line_is_read_through_without_holding_it(tmp_path):
    path = tmp_path / "posts.jsonl"
    with path.open("w") as file:
        file.write(seed("a", "http://x/1.jpg") + "\n")
        file.write('{"id": "huge", "media": {"images": ["' + "a" * (48 * MIB) + '"]}}\n')
        file.write(seed("b", "http://x/2.jpg") + "\n")
    tracemalloc.start()

    found = entries(path)

    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [e.id if isinstance(e, Post) else e.at.line for e in found] == ["a", 2, "b"]
    assert peak < 40 * MIB, f"{peak / MIB:.0f} MiB to skip a 48 MiB line"


def test_positions_outside_their_range_are_bad_posts(tmp_path):
    def manifest_line(post_id: str, position: int) -> str:
        image = {"url": f"http://x/{post_id}.jpg", "position": position}
        return json.dumps({"id": post_id, "url": None, "images": [image]})

    path = tmp_path / "manifest.jsonl"
    positions = {"max": 100_000, "over": 100_001, "huge": 2**63, "zero": 0}
    path.write_text("".join(manifest_line(i, n) + "\n" for i, n in positions.items()))

    found = entries(path)

    assert [e.id for e in found if isinstance(e, Post)] == ["max"]
    assert found[0].positions == [100_000]
    bad = [str(e) for e in found if isinstance(e, Skipped)]
    assert len(bad) == 3
    assert all('has a "position" outside 1 to 100,000' in line for line in bad)


@pytest.mark.parametrize(
    ("element", "said"),
    [
        ('{"id": "deep", "media": {"images": []}, "x": ' + nested(5000) + "}", "nested deeper"),
        ('{"id": "101", "media": {"images": []}, "x": ' + nested(100) + "}", "nested deeper"),
        ('{"id": ' + "7" * 5000 + "}", "a number longer than 4,300 digits"),
        (seed("big", "http://x/" + "a" * (17 * MIB)), "post #2 is larger than 16 MiB"),
    ],
    ids=["recursion", "depth", "digits", "size"],
)
def test_an_array_with_a_post_past_a_limit_is_refused_at_its_place(tmp_path, element, said):
    path = tmp_path / "posts.json"
    path.write_text("[\n " + seed("ok", "http://x/1.jpg") + ",\n " + element + "\n]\n")

    with pytest.raises(PostsFileError) as refused:
        entries(path)

    assert str(refused.value).startswith(f"{path}:3:")
    assert said in str(refused.value)


def test_json_lines_are_told_by_their_first_line_however_long(tmp_path):
    first = seed("first", "http://x/1.jpg", caption="c" * 200_000)  # past the 64 KiB head
    path = tmp_path / "posts.jsonl"
    path.write_text(f"{first}\n{{not json\n{seed('last', 'http://x/2.jpg')}\n")

    found = entries(path)

    assert [e.id if isinstance(e, Post) else e.at.line for e in found] == ["first", 2, "last"]


def test_a_crawl_skips_hostile_lines_and_refuses_a_hostile_array(server, store, crawl, tmp_path):
    bodies = [images.jpeg(seed=n) for n in range(2)]
    urls = [server.add(f"/{n}.jpg", body) for n, body in enumerate(bodies)]
    lines = [seed("a", urls[0]), *(text for text, _ in HOSTILE_LINES.values()), seed("b", urls[1])]
    hostile_lines = tmp_path / "posts.jsonl"
    hostile_lines.write_text("\n".join(lines) + "\n")

    result = crawl(hostile_lines)

    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert sha256(result.stored_bytes("a", 1)) == sha256(bodies[0])
    assert sha256(result.stored_bytes("b", 1)) == sha256(bodies[1])
    assert result.summary["posts/bad"] == len(HOSTILE_LINES)
    warned = [line for line in result.stderr.splitlines() if "skipped post #" in line]
    assert len(warned) == len(HOSTILE_LINES)
    plan = crawl(hostile_lines, args=["plan=1"])
    assert plan.returncode == EXIT_OK
    assert f"skipped: {len(HOSTILE_LINES)} bad" in plan.stdout
    assert "Traceback" not in plan.stderr

    manifest = (store / "manifest.jsonl").read_bytes()
    hostile_array = tmp_path / "posts.json"
    hostile_array.write_text(f"[{seed('c', urls[0])},\n{HOSTILE_LINES['deep'][0]}]")
    refused = crawl(hostile_array)

    assert refused.returncode == EXIT_BAD_INPUT
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {hostile_array}:2:1: post #2: nested deeper than 100 levels"]
    assert "Traceback" not in refused.stderr
    assert (store / "manifest.jsonl").read_bytes() == manifest  # nothing written
