"""End to end: every posts format users export, crawled from the fixtures in ``fixtures/``.

The fixtures' image URLs name Instagram CDN hosts over plain http; the test
server answers as their proxy, so the crawl fetches them from loopback. Each
image path is served distinct bytes, and each test asserts which file holds
which bytes on disk, and which paths were requested at all.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests import images
from tests.conftest import PROJECT_ROOT, CrawlResult, crawl_command, proxy_env
from tests.imageserver import ImageServer

FIXTURES = Path(__file__).parent / "fixtures"
EXIT_OK, EXIT_BAD_INPUT, EXIT_SOME_FAILED = 0, 2, 3
_PATH = re.compile(r"http://[a-z0-9.-]+(/[^\"?\s]+)")


def body(path: str) -> bytes:
    return images.jpeg(seed=zlib.crc32(path.encode()))


def serve(server: ImageServer, *texts: str) -> None:
    """Serve every URL path named in ``texts``, each with bytes of its own."""
    for text in texts:
        for path in _PATH.findall(text):
            server.add(path, body(path))


def fixture_text(path: Path) -> str:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return "".join(p.read_text() for p in files)


def run(
    posts: Path | str,
    store: Path,
    server: ImageServer,
    *settings: str,
    args: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> CrawlResult:
    command = crawl_command(posts, store, *settings)
    for name, value in (args or {}).items():
        command += ["-a", f"{name}={value}"]
    done = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=proxy_env(server),
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=90,
    )
    return CrawlResult(done.returncode, done.stdout.decode() + done.stderr.decode(), store)


def name(path: str) -> str:
    """``/v/t51.2885-15/apify_one_n.jpg`` -> ``apify_one``."""
    return path.rsplit("/", 1)[1].removesuffix("_n.jpg")


def assert_stored(result: CrawlResult, expected: dict[str, list[str]]) -> None:
    """Each post's folder holds exactly its images, in order, byte for byte."""
    assert set(result.manifest) == set(expected), result.stderr
    for post_id, names in expected.items():
        folder = result.store / post_id
        files = sorted(folder.iterdir()) if folder.exists() else []
        assert len(files) == len(names), (post_id, files)
        for position, image in enumerate(names, start=1):
            (file,) = folder.glob(f"{position}_*")
            path = f"/v/t51.2885-15/{image}_n.jpg"
            assert file.read_bytes() == body(path), (post_id, position, image)
            assert name(result.manifest[post_id]["images"][position - 1]["url"].split("?")[0]) == (
                image
            )


def requested(server: ImageServer) -> set[str]:
    return {name(r.path) if r.path.endswith("_n.jpg") else r.path for r in server.requests}


APIFY = {
    "3300000000000000101": ["apify_side_1", "apify_side_2", "apify_side_3"],  # carousel
    "3300000000000000102": ["apify_one"],  # single image; its repeat is dropped
    "3300000000000000103": ["apify_video_cover"],  # video: its cover
    "3300000000000000104": ["apify_bare"],  # only id and displayUrl
    "3300000000000000105": ["apify_kids_1", "apify_kids_2"],  # no images: displayUrl + childPosts
}


@pytest.mark.parametrize("layout", ["array", "jsonl.bz2"])
def test_apify_export_as_array_or_compressed_json_lines(server, store, tmp_path, layout):
    source = FIXTURES / "apify.json"
    serve(server, source.read_text())
    posts = source
    if layout == "jsonl.bz2":
        posts = tmp_path / "apify.jsonl.bz2"
        lines = "".join(json.dumps(post) + "\n" for post in json.loads(source.read_text()))
        posts.write_bytes(bz2.compress(lines.encode()))

    result = run(posts, store, server)

    assert result.returncode == EXIT_OK, result.stderr
    assert_stored(result, APIFY)
    assert requested(server) == {image for names in APIFY.values() for image in names}
    summary = result.summary
    assert (summary["posts/bad"], summary["posts/duplicate_input"]) == (1, 1)
    assert summary["images/total"] == summary["images/downloaded"] == 8
    assert "apify posts (detected)" in result.stderr
    assert 'skipped post #1: the post has no "id"' in result.stderr


def test_instaloader_folder_of_json_and_json_xz_files(server, store, tmp_path):
    folder = shutil.copytree(FIXTURES / "instaloader", tmp_path / "instaloader")
    plain = folder / "someuser" / "2024-05-02_10-00-00_UTC.json"  # instaloader's default: xz
    Path(f"{plain}.xz").write_bytes(lzma.compress(plain.read_bytes()))
    plain.unlink()
    serve(server, fixture_text(FIXTURES / "instaloader"))

    result = run(folder, store, server)

    assert result.returncode == EXIT_OK, result.stderr
    expected = {
        "3300000000000000201": ["load_side_1", "load_side_2", "load_side_3"],  # carousel
        "3300000000000000202": ["load_one"],  # single image, from the .json.xz
        "3300000000000000203": ["load_video_cover"],  # video: its cover
        "3300000000000000204": ["load_bare"],  # only id and display_url
    }
    assert_stored(result, expected)
    # Not the video files, not the profile picture, nothing from the comments.
    assert requested(server) == {image for names in expected.values() for image in names}
    assert result.summary["posts/bad"] == 1
    assert "2024-05-05_10-00-00_UTC.json:1:1: skipped post #" in result.stderr
    assert 'the post has no "node.id"' in result.stderr


def test_instaloader_single_json_xz_from_standard_input(server, store):
    one = FIXTURES / "instaloader" / "someuser" / "2024-05-01_10-00-00_UTC.json"
    serve(server, one.read_text())

    result = run("-", store, server, stdin=lzma.compress(one.read_bytes()))

    assert result.returncode == EXIT_OK, result.stderr
    assert_stored(result, {"3300000000000000201": ["load_side_1", "load_side_2", "load_side_3"]})
    assert "<stdin>: instaloader posts (detected)" in result.stderr
    assert "images/total" not in result.summary  # standard input is read once, not surveyed


def test_gallery_dl_folder_grouped_by_post_id_in_num_order(server, store):
    folder = FIXTURES / "gallery-dl"
    serve(server, fixture_text(folder))

    result = run(folder, store, server)

    assert result.returncode == EXIT_OK, result.stderr
    expected = {
        "3300000000000000301": ["gdl_side_1", "gdl_side_2", "gdl_side_3"],  # by num, not name
        "3300000000000000302": ["gdl_one"],
        "3300000000000000303": ["gdl_video_cover"],  # video: its cover
        "3300000000000000304": ["gdl_bare"],  # no num, no post_url
        "3300000000000000305": ["gdl_other_1", "gdl_other_2"],  # another folder
    }
    assert_stored(result, expected)
    assert requested(server) == {image for names in expected.values() for image in names}
    assert result.manifest["3300000000000000304"]["url"] == "https://www.instagram.com/p/C1g0304/"
    assert result.summary["posts/bad"] == 1
    assert 'no_post_id.jpg.json:1:1: skipped post #9: the post has no "post_id"' in result.stderr


def test_any_other_shape_through_field_paths(server, store):
    posts = FIXTURES / "custom.jsonl"
    serve(server, posts.read_text())
    fields = {"id_field": "pk", "image_fields": "carousel.image.src,cover.src"}

    result = run(posts, store, server, args={**fields, "url_field": "permalink"})

    assert result.returncode == EXIT_OK, result.stderr
    expected = {
        "3300000000000000401": ["custom_side_1", "custom_side_2", "custom_side_3"],
        "3300000000000000402": ["custom_one"],  # a numeric id, no carousel
        "3300000000000000403": ["custom_video_cover"],
    }
    assert_stored(result, expected)
    assert result.manifest["3300000000000000402"]["url"].endswith("/p/C1custOne1/")
    assert f'{posts}:4:1: skipped post #4: the post has no "pk"' in result.stderr


@pytest.mark.parametrize("how", ["json.gz", "jsonl.xz on stdin"])
def test_seed_shape_compressed_or_piped_with_a_repeated_post(server, store, tmp_path, how):
    values = json.loads((FIXTURES / "seed.json").read_text())
    serve(server, json.dumps(values))
    if how == "json.gz":
        posts, stdin = tmp_path / "posts.json.gz", None
        posts.write_bytes(gzip.compress(json.dumps(values).encode()))
    else:
        posts, stdin = "-", lzma.compress("".join(json.dumps(v) + "\n" for v in values).encode())

    result = run(posts, store, server, stdin=stdin)

    assert result.returncode == EXIT_OK, result.stderr
    assert_stored(
        result,
        {
            "3300000000000000001": ["seed_side_1", "seed_side_2", "seed_side_3"],
            "3300000000000000002": ["seed_one"],
            "3300000000000000003": ["seed_video_cover"],
            "3300000000000000004": [],  # no media: a post without images
        },
    )
    assert "seed_one_again" not in requested(server)  # the second post with id ...002
    assert result.summary["posts/duplicate_input"] == 1
    assert "1 posts were in" in result.stderr


def test_retry_from_failures_jsonl_fetches_only_the_failed_into_their_places(
    server, store, write_posts
):
    good = {n: server.add(f"/v/t51.2885-15/good{n}_n.jpg", body(f"good{n}")) for n in range(4)}
    broken = {n: server.url(f"/v/t51.2885-15/broken{n}_n.jpg") for n in range(2)}  # 404 now
    posts = write_posts({"a": [good[0], broken[0], good[1]], "b": [broken[1]], "c": [good[2]]})
    first = run(posts, store, server)
    assert first.returncode == EXIT_SOME_FAILED, first.stderr
    assert sorted((f["post_id"], f["position"]) for f in first.failures) == [("a", 2), ("b", 1)]
    first_manifest = store.parent / "first-manifest.jsonl"
    shutil.copy(store / "manifest.jsonl", first_manifest)
    for n in range(2):  # the server is fixed
        server.add(f"/v/t51.2885-15/broken{n}_n.jpg", body(f"broken{n}"))
    server.reset_counters()

    retry = run(store / "failures.jsonl", store, server)  # the feed this run rewrites

    assert retry.returncode == EXIT_OK, retry.stderr
    assert sorted(r.path for r in server.requests) == [
        "/v/t51.2885-15/broken0_n.jpg",
        "/v/t51.2885-15/broken1_n.jpg",
    ]
    (a2,) = (store / "a").glob("2_*.jpg")
    (b1,) = (store / "b").glob("1_*.jpg")
    assert (a2.read_bytes(), b1.read_bytes()) == (body("broken0"), body("broken1"))
    assert len(list((store / "a").iterdir())) == 3  # positions 1 and 3 as they were
    assert retry.manifest["a"]["images"][0]["position"] == 2
    assert retry.failures == []
    assert retry.summary["images/downloaded"] == 2

    # The first run's manifest, read back: everything is there now, nothing to fetch.
    server.reset_counters()
    again = run(first_manifest, store, server)
    assert again.returncode == EXIT_OK, again.stderr
    assert server.requests == []
    assert [i["position"] for i in again.manifest["a"]["images"]] == [1, 2, 3]
    assert again.summary["images/cached"] == 5


def test_plan_counts_without_downloading_or_writing(server, store, tmp_path, write_posts):
    cdn = "http://scontent-fra5-1.cdninstagram.com/v/t51.2885-15/{}_n.jpg?oh=00_Af&oe={:X}"
    future, past = 0x7FFFFFFF, 0x5F000000  # oe: 2038 and 2020
    server.add("/v/t51.2885-15/stored_n.jpg", body("stored"))
    first = run(write_posts({"p0": [cdn.format("stored", future)]}, "first.json"), store, server)
    assert first.returncode == EXIT_OK, first.stderr
    rescraped = cdn.format("stored", future).replace(
        "scontent-fra5-1.cdninstagram.com", "x.fna.fbcdn.net"
    )
    fresh = [cdn.format(f"fresh{n}", future) for n in range(3)]
    expired = cdn.format("expired", past)
    values = {"p1": [rescraped, fresh[0], expired], "p2": [fresh[1], fresh[0]], "p3": [fresh[2]]}
    posts = write_posts(values)
    before = sorted((p, p.stat().st_mtime_ns) for p in store.rglob("*") if p.is_file())
    server.reset_counters()

    plan = run(posts, store, server, "CONCURRENT_REQUESTS=2", args={"plan": "1"})

    assert plan.returncode == EXIT_OK, plan.stderr
    report = dict(re.findall(r"^  ([a-zA-Z ]+?)  +([\d,]+)\b(?! with)", plan.stderr, re.MULTILINE))
    assert report == {
        "posts": "3",
        "images": "6",
        "distinct URLs": "5",
        "hosts": "2",
        "already stored": "1",  # its path, on another CDN host: no request needed
        "links expired": "1",
        "to download": "3",  # fresh0 twice is one download
    }
    assert "with 2 downloads in flight, assuming 0.5 s per image" in plan.stderr
    assert server.requests == []
    assert sorted((p, p.stat().st_mtime_ns) for p in store.rglob("*") if p.is_file()) == before
    nowhere = tmp_path / "not-created"
    assert run(posts, nowhere, server, args={"plan": "1"}).returncode == EXIT_OK
    assert not nowhere.exists()


_MANY_POSTS = json.dumps(
    [{"id": n, "media": {"images": [f"http://x/{n}.jpg"]}} for n in range(9000)]
)


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ('[{"id": 1, "pictures": []}]', {}, "posts.json:1:2: cannot tell the posts format"),
        ('[{"id": 1}]', {"format": "instagram"}, "unknown format 'instagram': use one of seed,"),
        (gzip.compress(_MANY_POSTS.encode())[:-2000], {}, "gzip data is corrupt or cut short"),
    ],
)
def test_unreadable_inputs_name_the_file_and_position(
    server, store, tmp_path, content, args, message
):
    posts = tmp_path / "posts.json"
    if isinstance(content, bytes):
        posts.write_bytes(content)
    else:
        posts.write_text(content)

    result = run(posts, store, server, args=args)

    assert result.returncode == EXIT_BAD_INPUT
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    assert not store.exists()


def test_reading_memory_stays_flat_from_1k_to_100k_posts(tmp_path):
    def peak_kb(count: int) -> int:
        path = tmp_path / f"{count}.json"
        url = (
            "https://scontent-fra5-1.cdninstagram.com/v/t51.2885-15/{}_{}_n.jpg?stp=dst-jpg_e35"
            "&_nc_ht=scontent-fra5-1.cdninstagram.com&_nc_ohc=AbCdEf&oh=00_AfB1234567890&oe=6A85EE48"
        )
        with path.open("w") as out:
            out.write("[\n")
            for n in range(count):
                urls = json.dumps([url.format(n, k) for k in range(4)])
                post = f'{{"id": "{3300000000000000000 + n}", "media": {{"images": {urls}}}}}'
                out.write(("" if n == 0 else ",\n") + post)
            out.write("\n]\n")
        code = (
            "import sys\n"
            "from igimages.inputs import InputSpec, survey\n"
            "found = survey(InputSpec.from_args({'posts': sys.argv[1]}))\n"
            "assert found.posts == int(sys.argv[2]), found\n"
            "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(path), str(count)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return int(done.stdout)

    small, big = peak_kb(1_000), peak_kb(100_000)  # 1 MB and 100 MB of posts

    # The file is 100 times bigger; the reading may only grow by the seen-ids
    # table (8 bytes a slot, about 2 MB here) and allocator noise.
    assert big - small < 5 * 1024, (small, big)
