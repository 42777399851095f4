"""The benchmark's corpus: a pool of image files and the posts that use them.

Everything is derived from fixed seeds, so every run (and every machine)
downloads the same bytes in the same order. Images are noise over a coloured
gradient so that JPEG and WebP stay between 20 and 400 KB, as real photos do,
instead of compressing to a few KB. The pool is cached on disk
(``benchmarks/.cache/corpus/``) and grown on demand; the posts are rebuilt each run
(cheap) because their URLs carry the server's port.

Posts reference the pool in order, one new image per reference, except for a
few references that repeat an image of an earlier post: half with the very
same URL, half with the same path and a fresh query string (a CDN signature
that rotated). Past the end of the pool (large runs), references reuse pool
images under new paths, so each one is still a download.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import PIL
from PIL import Image, ImageDraw, ImageOps

GENERATOR_VERSION = 1  # bump when the images change, to get a new cache folder
CACHE_DIR = Path(__file__).resolve().parent / ".cache" / "corpus"
PATH_PREFIX = "/v/t51.2885-15/"
#: (extension, Pillow format, share of the pool, encoder options)
FORMATS = (
    ("jpg", "JPEG", 0.6, {"quality": 85}),
    ("png", "PNG", 0.2, {"compress_level": 1}),
    ("webp", "WEBP", 0.2, {"quality": 80, "method": 2}),
)
#: Images per post, 1 to 10 (Instagram carousels), weighted: mean 3.7.
IMAGES_PER_POST_WEIGHTS = (38, 11, 10, 8, 7, 6, 6, 5, 4, 5)
ASPECTS = (1.0, 0.8, 1.91, 0.75)  # width / height of Instagram's usual shapes


@dataclass(frozen=True, slots=True)
class PoolImage:
    index: int
    ext: str
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return f"{self.index:06d}.{self.ext}"


@dataclass(frozen=True, slots=True)
class Reference:
    """One image URL of one post, without scheme and host (``path?query``)."""

    image: int  # index into the pool
    target: str


@dataclass(frozen=True, slots=True)
class Post:
    id: str
    url: str
    refs: tuple[Reference, ...]


@dataclass
class Corpus:
    pool_dir: Path
    images: list[PoolImage]
    posts: list[Post]

    @property
    def references(self) -> int:
        return sum(len(post.refs) for post in self.posts)

    @property
    def distinct_urls(self) -> int:
        return len({ref.target for post in self.posts for ref in post.refs})

    @property
    def distinct_images(self) -> int:
        return len({ref.image for post in self.posts for ref in post.refs})

    def pool_bytes(self) -> int:
        used = {ref.image for post in self.posts for ref in post.refs}
        return sum(self.images[index].size for index in used)

    def expected(self) -> dict[str, list[str]]:
        """sha256 of every image of every post, by post id, in post order."""
        return {
            post.id: [self.images[ref.image].sha256 for ref in post.refs] for post in self.posts
        }

    def write_posts(self, path: Path, base_url: str) -> None:
        """The crawl's input: a JSON array of posts, one post per line."""
        with open(path, "w", encoding="utf-8") as out:
            out.write("[\n")
            for number, post in enumerate(self.posts):
                record = {
                    "id": post.id,
                    "url": post.url,
                    "media": {"images": [base_url + ref.target for ref in post.refs]},
                }
                out.write(("" if number == 0 else ",\n") + json.dumps(record))
            out.write("\n]\n")


def load(posts: int, images: int, seed: int = 1, min_kb: int = 20, max_kb: int = 400) -> Corpus:
    """The corpus for these parameters, generating missing pool images first."""
    post_list = make_posts(posts, images, seed)
    needed = min(images, max(ref.image for post in post_list for ref in post.refs) + 1)
    pool_dir = CACHE_DIR / (
        f"pool-v{GENERATOR_VERSION}-seed{seed}-{min_kb}-{max_kb}kb-pillow{PIL.__version__}"
    )
    return Corpus(pool_dir, ensure_pool(pool_dir, needed, seed, min_kb, max_kb), post_list)


def ensure_pool(pool_dir: Path, count: int, seed: int, min_kb: int, max_kb: int) -> list[PoolImage]:
    """Images 0..count-1 of the pool, generating (on all cores) those not cached."""
    pool_dir.mkdir(parents=True, exist_ok=True)
    index_file = pool_dir / "index.json"
    known: dict[int, PoolImage] = {}
    if index_file.exists():
        for entry in json.loads(index_file.read_text()):
            image = PoolImage(**entry)
            if (pool_dir / image.name).is_file():
                known[image.index] = image
    missing = [index for index in range(count) if index not in known]
    if missing:
        print(f"generating {len(missing)} corpus images in {pool_dir.name} ...", flush=True)
        jobs = [(index, seed, min_kb * 1000, max_kb * 1000) for index in missing]
        with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
            for index, ext, data in pool.map(_make_image, jobs, chunksize=16):
                image = PoolImage(index, ext, len(data), hashlib.sha256(data).hexdigest())
                (pool_dir / image.name).write_bytes(data)
                known[index] = image
        entries = [_as_dict(known[index]) for index in sorted(known)]
        tmp = index_file.with_suffix(".part")
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, index_file)
    return [known[index] for index in range(count)]


def make_posts(count: int, pool_size: int, seed: int, share_rate: float = 0.05) -> list[Post]:
    """``count`` posts; see the module docstring for how they use the pool."""
    rng = random.Random(f"posts:{seed}")
    posts: list[Post] = []
    earlier: list[Reference] = []  # every reference so far, for shares
    fresh = 0
    for number in range(count):
        post_id = str(3_300_000_000_000_000_000 + number * 7_919)
        refs: list[Reference] = []
        for _ in range(rng.choices(range(1, 11), IMAGES_PER_POST_WEIGHTS)[0]):
            ref = None
            if earlier and rng.random() < share_rate:
                shared = rng.choice(earlier)
                if all(r.image != shared.image for r in refs):
                    if rng.random() < 0.5:
                        ref = shared
                    else:
                        path = shared.target.partition("?")[0]
                        ref = Reference(shared.image, path + "?" + _query(rng))
            if ref is None:
                image, variant = fresh % pool_size, fresh // pool_size
                fresh += 1
                ext = image_ext(image, seed)
                tag = rng.getrandbits(48)
                path = f"{PATH_PREFIX}{image:06d}_{variant}_{tag:012x}_n.{ext}"
                ref = Reference(image, path + "?" + _query(rng))
            refs.append(ref)
        earlier.extend(refs)
        posts.append(
            Post(post_id, f"https://www.instagram.com/p/{_shortcode(post_id)}/", tuple(refs))
        )
    return posts


def image_ext(index: int, seed: int) -> str:
    """The extension (and so the format) of pool image ``index``."""
    pick = random.Random(f"format:{seed}:{index}").random()
    for ext, _, share, _ in FORMATS:
        if pick < share:
            return ext
        pick -= share
    return FORMATS[-1][0]


def image_index(path: str) -> int | None:
    """The pool index a URL path asks for (the server's routing), or None."""
    name = path.rpartition("/")[2]
    number = name.partition("_")[0]
    return int(number) if path.startswith(PATH_PREFIX) and number.isdigit() else None


def _make_image(job: tuple[int, int, int, int]) -> tuple[int, str, bytes]:
    """Encode pool image ``index`` to a size drawn between the bounds."""
    index, seed, low, high = job
    rng = random.Random(f"image:{seed}:{index}")
    ext = image_ext(index, seed)
    _, fmt, _, options = next(f for f in FORMATS if f[0] == ext)
    target = math.exp(rng.uniform(math.log(low * 1.05), math.log(high * 0.95)))
    aspect = rng.choice(ASPECTS)
    look = random.Random(rng.getrandbits(64))  # the same picture whatever its size
    look_seed = look.getrandbits(64)
    per_pixel = {"JPEG": 0.8, "PNG": 2.5, "WEBP": 0.7}[fmt]
    for _ in range(12):
        height = max(64, round(math.sqrt(target / per_pixel / aspect)))
        width = max(64, round(height * aspect))
        data = _encode(_picture(width, height, look_seed), fmt, options)
        if low <= len(data) <= high and abs(len(data) / target - 1) < 0.2:
            break
        per_pixel = len(data) / (width * height)
    if not low <= len(data) <= high:
        raise RuntimeError(f"image {index}: {len(data)} bytes, outside {low}-{high}")
    return index, ext, data


def _picture(width: int, height: int, look_seed: int) -> Image.Image:
    """A coloured gradient with a few shapes, under seeded noise."""
    rng = random.Random(look_seed)
    colours = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(2)]
    ramp = Image.linear_gradient("L").rotate(rng.uniform(0, 360), expand=True)
    base = ImageOps.colorize(ramp.resize((width, height)), colours[0], colours[1])
    draw = ImageDraw.Draw(base)
    for _ in range(rng.randrange(2, 7)):
        x0, x1 = sorted(rng.randrange(width) for _ in range(2))
        y0, y1 = sorted(rng.randrange(height) for _ in range(2))
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    noise = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    return Image.blend(base, noise, rng.uniform(0.25, 0.6))


def _encode(picture: Image.Image, fmt: str, options: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue()


def _query(rng: random.Random) -> str:
    """A query string shaped like an Instagram CDN signature."""
    return (
        "stp=dst-jpg_e35_p1080x1080&_nc_ht=scontent.cdninstagram.com"
        f"&_nc_cat={rng.randrange(1, 112)}"
        f"&oh=00_{rng.getrandbits(160):040x}&oe={rng.randrange(0x6A000000, 0x6B000000):08X}"
    )


def _shortcode(post_id: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    number, code = int(post_id), ""
    while number:
        number, digit = divmod(number, 64)
        code = alphabet[digit] + code
    return code[-11:]


def _as_dict(image: PoolImage) -> dict[str, object]:
    return {"index": image.index, "ext": image.ext, "size": image.size, "sha256": image.sha256}
