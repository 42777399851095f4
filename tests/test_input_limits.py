"""A hostile posts input meets explicit limits: one post's size, its nesting, its
integers, its images and their positions. Past one, a value is a bad post (JSON
Lines, a folder) or the whole input is refused at its place (an array, a run of
documents); never a traceback, and never more than a bounded cost."""

from __future__ import annotations

import gzip
import json
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from igimages.inputs import InputSpec, PostsFileError, PostSource, Skipped
from igimages.items import Post
from tests import images
from tests.conftest import PROJECT_ROOT, CrawlResult, crawl_command, crawl_env, sha256

EXIT_OK, EXIT_BAD_INPUT = 0, 2
MIB = 1 << 20


def seed(post_id: str, *urls: str, **extra: object) -> str:
    return json.dumps({"id": post_id, "media": {"images": list(urls)}, **extra})


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def deep(post_id: str, levels: int) -> str:
    """A post ``levels`` deep in all (the post itself is the first level), with
    more brackets than levels, so its nesting is counted, not just its brackets."""
    return f'{{"id": "{post_id}", "media": {{"images": []}}, "x": {nested(levels - 1)}}}'


HOSTILE = {  # a post past each limit, and what it is told
    "recursion": (deep("recursion", 100_000), "nested deeper than 100 levels"),
    "depth": (deep("depth", 101), "nested deeper than 100 levels"),
    "digits": ('{"id": -' + "7" * 4301 + "}", "an integer longer than 4,300 digits"),
    "size": (seed("size", "http://x/" + "a" * (16 * MIB)), "larger than 16 MiB"),
}


def entries(path: Path | str, **args: str) -> list[Post | Skipped]:
    return list(PostSource(InputSpec.from_args({"posts": str(path), **args})).entries())


def outcome(found: list[Post | Skipped]) -> list[str]:
    """Each post's id, or the line that says why a value was skipped."""
    return [entry.id if isinstance(entry, Post) else str(entry) for entry in found]


def test_each_limit_makes_a_json_lines_post_bad_and_the_rest_goes_on(tmp_path):
    path = tmp_path / "posts.jsonl"
    lines = []  # a hostile line first: JSON Lines are told from it all the same
    for name, (text, _) in HOSTILE.items():
        lines += [text, seed(f"after-{name}", "http://x/1.jpg")]
    # Exactly at the limits: still posts.
    lines += [deep("100-levels", 100), '{"id": -' + "7" * 4300 + "}"]
    path.write_text("\n".join(lines) + "\n")

    found = entries(path)

    skipped = [
        f"{path}:{2 * n + 1}:1: skipped post #{2 * n + 1}: {said}"
        for n, (_, said) in enumerate(HOSTILE.values())
    ]
    after = [f"after-{name}" for name in HOSTILE]
    assert outcome(found) == [
        *(line for pair in zip(skipped, after, strict=True) for line in pair),
        "100-levels",
        "-" + "7" * 4300,
    ]


@pytest.mark.parametrize("first", [*HOSTILE, "long"])
def test_json_lines_are_told_by_their_whole_first_line(tmp_path, first):
    # A valid first line past the 64 KiB head, or one past a limit: either way
    # the file is JSON Lines, and a malformed line later is one bad post.
    if first == "long":
        line, said = seed("long", "http://x/1.jpg", caption="c" * 200_000), None
    else:
        line, said = HOSTILE[first]
    path = tmp_path / "posts.jsonl"
    path.write_text(f"{line}\n{{not json\n{seed('last', 'http://x/2.jpg')}\n")

    found = entries(path)

    bad_line = f"{path}:2:2: skipped post #2: invalid JSON: Expecting property name"
    head = ["long"] if said is None else [f"{path}:1:1: skipped post #1: {said}"]
    assert outcome(found) == [*head, bad_line + " enclosed in double quotes", "last"]


def test_an_over_long_post_is_never_held_whole(tmp_path):
    huge = '{"id": "huge", "media": {"images": ["' + "a" * (48 * MIB) + '"]}}'
    lines, array = tmp_path / "posts.jsonl", tmp_path / "posts.json"
    lines.write_text(f"{seed('a', 'http://x/1.jpg')}\n{huge}\n{seed('b', 'http://x/2.jpg')}\n")
    array.write_text(f"[{seed('a', 'http://x/1.jpg')},\n{huge}]")
    del huge
    tracemalloc.start()

    found = entries(lines)
    with pytest.raises(PostsFileError) as refused:
        entries(array)

    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert outcome(found) == ["a", f"{lines}:2:1: skipped post #2: larger than 16 MiB", "b"]
    assert str(refused.value) == f"{array}:2:1: post #2: larger than 16 MiB"
    # Less than the post alone: at most the 16 MiB limit, read ahead, copied once.
    assert peak < 48 * MIB, f"{peak / MIB:.0f} MiB to read past a 48 MiB post"


@pytest.mark.parametrize("limit", HOSTILE)
def test_an_array_with_a_post_past_a_limit_is_refused_at_its_place(tmp_path, limit):
    element, said = HOSTILE[limit]
    path = tmp_path / "posts.json"
    path.write_text("[\n " + seed("ok", "http://x/1.jpg") + ",\n " + element + "\n]\n")

    with pytest.raises(PostsFileError) as refused:
        entries(path)

    assert str(refused.value) == f"{path}:3:2: post #2: {said}"


def test_a_malformed_array_element_is_told_as_such_however_much_follows(tmp_path):
    path = tmp_path / "posts.json"
    good = seed("good", "http://x/" + "a" * 1000)
    path.write_text(f'[{good},\n{{"id": "bad" "x": 1}},\n' + ",\n".join([good] * 20_000) + "]")

    with pytest.raises(PostsFileError) as refused:
        entries(path)

    assert str(refused.value) == f"{path}:2:14: invalid JSON: Expecting ',' delimiter"


def test_a_long_array_element_costs_a_few_decodings_not_one_per_chunk(tmp_path):
    lists = ",".join(["[]"] * MIB)  # 3 MiB of them
    element = f'{{"id": "wide", "media": {{"images": []}}, "x": [{lists}]}}'
    path = tmp_path / "posts.json"
    path.write_text(f"[{element}]")
    started = time.process_time()
    json.loads(element)
    once = time.process_time() - started

    started = time.process_time()
    found = entries(path)
    read = time.process_time() - started

    assert outcome(found) == ["wide"]
    assert read < 12 * once, f"{read:.2f} s of CPU to read what one decoding does in {once:.2f} s"


def test_a_folder_file_past_a_limit_is_a_bad_post_and_a_lone_one_is_refused(tmp_path):
    folder = tmp_path / "profile"
    folder.mkdir()
    post = {"instaloader": {"node_type": "Post"}, "node": {"id": "1", "display_url": "http://x/1"}}
    (folder / "a.json").write_text(json.dumps(post, indent=2))
    too_deep = {**post, "node": {"id": "2", "display_url": "http://x/2", "x": [[[]]] * 2}}
    text = json.dumps(too_deep, indent=2).replace("[]", nested(100))
    (folder / "b.json").write_text(text)
    (folder / "c.json").write_text(json.dumps({**post, "node": {**post["node"], "id": "3"}}))
    where = f"{folder / 'b.json'}:1:1"

    found = entries(folder)

    assert outcome(found) == ["1", f"{where}: skipped post #2: nested deeper than 100 levels", "3"]
    with pytest.raises(PostsFileError) as refused:  # the same file alone: the whole input
        entries(folder / "b.json")
    assert str(refused.value) == f"{where}: nested deeper than 100 levels"


def test_positions_and_image_counts_outside_their_range_are_bad_posts(tmp_path):
    def manifest_line(post_id: str, position: int) -> str:
        image = {"url": f"http://x/{post_id}.jpg", "position": position}
        return json.dumps({"id": post_id, "url": None, "images": [image]})

    manifest = tmp_path / "manifest.jsonl"
    positions = {"max": 100_000, "over": 100_001, "huge": 2**63, "zero": 0}
    manifest.write_text("".join(manifest_line(i, n) + "\n" for i, n in positions.items()))
    many = tmp_path / "posts.jsonl"
    many.write_text(seed("most", *(f"http://x/{n}" for n in range(100_000))) + "\n")
    many.write_text(many.read_text() + seed("many", *(f"http://x/{n}" for n in range(100_001))))
    failures = tmp_path / "failures.jsonl"
    with failures.open("w") as out:  # one post's 100,001 failed images, one line each
        for n in range(100_001):
            out.write(f'{{"post_id": "many", "url": "http://x/{n}", "position": 1, ')
            out.write('"reason": "http_404"}\n')
    gallery = tmp_path / "gallery-dl.json"  # a file of gallery-dl's may list many URLs
    many_urls = [f"http://x/{n}" for n in range(100_001)]
    gallery.write_text(json.dumps({"post_id": "many", "num": 1, "display_url": many_urls}))

    found = entries(manifest)
    assert found[0].positions == [100_000]
    assert outcome(found) == [
        "max",
        *(
            f"{manifest}:{n}:1: skipped post #{n}: post {name}: image http://x/{name}.jpg"
            ' has a "position" outside 1 to 100,000'
            for n, name in ((2, "over"), (3, "huge"), (4, "zero"))
        ),
    ]
    too_many = "post many: more than 100,000 images"
    assert outcome(entries(many)) == ["most", f"{many}:2:1: skipped post #2: {too_many}"]
    assert outcome(entries(failures)) == [f"{failures}:1:1: skipped post #1: {too_many}"]
    assert outcome(entries(gallery)) == [f"{gallery}:1:1: skipped post #1: {too_many}"]


def test_a_compressed_first_line_cut_short_is_one_error(tmp_path):
    path = tmp_path / "posts.jsonl.gz"
    data = gzip.compress((seed("a", "http://x/1.jpg", caption="c" * 300_000) + "\n").encode())
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(PostsFileError) as refused:
        entries(path)

    assert str(refused.value).startswith(f"{path}:1:1: the gzip data is corrupt or cut short (")


def store_files(store: Path) -> dict[str, str]:
    """Every file of the store and its sha256."""
    files = (path for path in store.rglob("*") if path.is_file())
    return {str(path.relative_to(store)): sha256(path.read_bytes()) for path in files}


def test_a_crawl_skips_hostile_lines_and_refuses_a_hostile_array(server, store, crawl, tmp_path):
    bodies = [images.jpeg(seed=n) for n in range(2)]
    urls = [server.add(f"/{n}.jpg", body) for n, body in enumerate(bodies)]
    hostile = [text for text, _ in HOSTILE.values()]
    hostile_lines = tmp_path / "posts.jsonl"
    hostile_lines.write_text("\n".join([*hostile, seed("a", urls[0]), seed("b", urls[1])]) + "\n")

    # Standard input: read by the crawl alone, as it goes.
    done = subprocess.run(
        crawl_command("-", store),
        cwd=PROJECT_ROOT,
        env=crawl_env(),
        input=hostile_lines.read_bytes(),
        capture_output=True,
        timeout=90,
    )

    result = CrawlResult(done.returncode, done.stderr.decode(), store)
    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert sorted(result.manifest) == ["a", "b"]
    assert sha256(result.stored_bytes("a", 1)) == sha256(bodies[0])
    assert sha256(result.stored_bytes("b", 1)) == sha256(bodies[1])
    assert result.summary["posts/bad"] == len(HOSTILE)
    warned = [line for line in result.stderr.splitlines() if "skipped post #" in line]
    assert [line.split("<stdin>:")[1] for line in warned] == [
        f"{n}:1: skipped post #{n}: {said}" for n, (_, said) in enumerate(HOSTILE.values(), 1)
    ]
    plan = crawl(hostile_lines, args=["plan=1"])
    assert plan.returncode == EXIT_OK
    assert f"skipped: {len(HOSTILE)} bad" in plan.stdout
    assert "Traceback" not in plan.stderr

    before = store_files(store)
    hostile_array = tmp_path / "posts.json"
    hostile_array.write_text(f"[{seed('c', urls[0])},\n{HOSTILE['recursion'][0]}]")
    refused = crawl(hostile_array)

    assert refused.returncode == EXIT_BAD_INPUT
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {hostile_array}:2:1: post #2: nested deeper than 100 levels"]
    assert "Traceback" not in refused.stderr
    assert store_files(store) == before  # nothing written
