"""A labelled set for near-copy detection: pictures, their reposts, and look-alikes.

Generated (fixed seeds, no downloads). Each *family* is a template: a palette,
a gradient, a header band with a caption, a layout of shapes; each *base*
picture of a family fills it with its own shapes, texture and text. Bases of
one family look alike but are different pictures (the hard negatives). Each
base has near-copies, as reposts make them: resized to 50-80 % and
recompressed as JPEG at quality 40-90, converted to WebP, cropped by 2-8 %,
made a little brighter or darker. Two images are a positive pair when they
come from the same base.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

WIDTH, HEIGHT = 1080, 1350  # Instagram's portrait size


@dataclass(frozen=True, slots=True)
class Labelled:
    base: int  # the picture it is, or a copy of
    family: int  # its template: same family, alike but different pictures
    variant: str  # "original", "jpeg-q55-62%", "webp", "crop-5%", "bright+8%"...
    data: bytes


def labelled_set(
    families: int = 8, bases: int = 4, scale: float = 1.0, seed: int = 22
) -> list[Labelled]:
    """``families`` x ``bases`` pictures, each with its near-copies."""
    rng = random.Random(seed)
    size = (round(WIDTH * scale), round(HEIGHT * scale))
    images = []
    for family in range(families):
        template = _Template.make(rng)
        for number in range(bases):
            base = family * bases + number
            picture = template.picture(size, random.Random(rng.random()))
            for variant, data in _copies(picture, random.Random(rng.random())):
                images.append(Labelled(base, family, variant, data))
    return images


def pairs(images: list[Labelled]) -> Iterator[tuple[int, int, bool]]:
    """Every pair of images (as indexes), and whether it is a near-copy pair."""
    for a, b in combinations(range(len(images)), 2):
        yield a, b, images[a].base == images[b].base


@dataclass(frozen=True, slots=True)
class _Template:
    palette: list[tuple[int, int, int]]
    gradient: tuple[tuple[int, int, int], tuple[int, int, int]]
    vertical: bool
    header: float  # the header band's height, a fraction of the picture's
    caption: str
    region: tuple[float, float, float, float]  # where the shapes go (fractions)

    @classmethod
    def make(cls, rng: random.Random) -> _Template:
        palette = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(4)]
        top, bottom = (tuple(rng.randrange(256) for _ in range(3)) for _ in range(2))
        left, upper = rng.uniform(0.05, 0.3), rng.uniform(0.25, 0.4)
        return cls(
            palette,  # type: ignore[arg-type]
            (top, bottom),  # type: ignore[arg-type]
            rng.random() < 0.5,
            rng.uniform(0.08, 0.18),
            rng.choice(["SUMMER SALE", "NEW IN", "LIMITED DROP", "#ad", "TODAY ONLY"]),
            (left, upper, left + rng.uniform(0.4, 0.65), upper + rng.uniform(0.3, 0.5)),
        )

    def picture(self, size: tuple[int, int], rng: random.Random) -> Image.Image:
        """One picture of this template: its own shapes, texture and text."""
        width, height = size
        ramp = np.linspace(0.0, 1.0, height if self.vertical else width)
        ramp = ramp[:, None] if self.vertical else ramp[None, :]
        top, bottom = (np.array(colour, dtype=float) for colour in self.gradient)
        canvas = top + (bottom - top) * ramp[..., None]
        canvas = np.broadcast_to(canvas, (height, width, 3)).copy()
        # Texture: low-frequency blotches and fine grain, as in a photo.
        blotches = _noise(rng, (15, 12, 3)).resize((width, height), Image.Resampling.BICUBIC)
        blotches = np.asarray(blotches, dtype=float)
        grain = np.frombuffer(rng.randbytes(width * height), dtype=np.uint8).reshape(height, width)
        canvas += (blotches - 128) * 0.2 + (grain[..., None] - 128.0) * 0.12
        image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        left, upper, right, lower = (
            round(f * d) for f, d in zip(self.region, (width, height, width, height), strict=True)
        )
        for _ in range(rng.randrange(3, 7)):
            x0, x1 = sorted(rng.randrange(left, right) for _ in range(2))
            y0, y1 = sorted(rng.randrange(upper, lower) for _ in range(2))
            fill = rng.choice(self.palette)
            shape = rng.choice((draw.ellipse, draw.rectangle, draw.rounded_rectangle))
            shape((x0, y0, x1 + 20, y1 + 20), fill=fill)
        band = round(self.header * height)
        draw.rectangle((0, 0, width, band), fill=self.palette[0])
        font = ImageFont.load_default(size=max(10, band // 2))
        draw.text((width // 20, band // 4), self.caption, fill=self.palette[1], font=font)
        words = " ".join(rng.choice(("sun", "sea", "city", "cafe", "run", "gold")) for _ in "abc")
        small = ImageFont.load_default(size=max(8, height // 30))
        draw.text((width // 20, round(height * 0.88)), words, fill=self.palette[2], font=small)
        return image


def _noise(rng: random.Random, shape: tuple[int, int, int]) -> Image.Image:
    values = np.frombuffer(rng.randbytes(int(np.prod(shape))), dtype=np.uint8).reshape(shape)
    return Image.fromarray(values)


def _copies(picture: Image.Image, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """The original (a JPEG at quality 92) and its reposts."""
    yield "original", _encode(picture, "JPEG", 92)
    scale = rng.uniform(0.5, 0.8)
    quality = rng.randrange(40, 91)
    smaller = picture.resize(
        (round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS
    )
    yield f"jpeg-q{quality}-{scale:.0%}", _encode(smaller, "JPEG", quality)
    yield "webp", _encode(picture, "WEBP", rng.randrange(60, 90))
    crop = rng.uniform(0.02, 0.08)
    dx, dy = round(picture.width * crop), round(picture.height * crop)
    x, y = rng.randrange(dx + 1), rng.randrange(dy + 1)
    cropped = picture.crop((x, y, picture.width - (dx - x), picture.height - (dy - y)))
    yield f"crop-{crop:.0%}", _encode(cropped, "JPEG", 85)
    change = rng.choice((-1, 1)) * rng.uniform(0.04, 0.10)
    brighter = ImageEnhance.Brightness(picture).enhance(1 + change)
    yield f"bright{change:+.0%}", _encode(brighter, "JPEG", 85)
    again = smaller.resize((round(smaller.width * 0.8), round(smaller.height * 0.8)))
    yield "repost-of-repost", _encode(again, "WEBP", 70)


def _encode(image: Image.Image, format: str, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format, quality=quality)
    return out.getvalue()
