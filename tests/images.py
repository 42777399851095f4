"""Deterministic, real image bytes for tests.

Tests need genuine encoded images (so decoding, hashing and thumbnailing
behave as in production) that are identical on every run, so everything
here is derived from the arguments alone.
"""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image, ImageDraw


def _base(width: int, height: int, seed: int) -> Image.Image:
    """RGB gradient plus seeded shapes, so different seeds give different bytes."""
    rng = random.Random(seed)
    ramp = Image.linear_gradient("L")
    red = ramp.rotate(90).resize((width, height))
    green = ramp.resize((width, height))
    blue = Image.new("L", (width, height), rng.randrange(256))
    img = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, x1 = sorted(rng.randrange(width + 1) for _ in range(2))
        y0, y1 = sorted(rng.randrange(height + 1) for _ in range(2))
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    return img


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def jpeg(width: int = 64, height: int = 48, seed: int = 0, mode: str = "RGB") -> bytes:
    """JPEG in mode "RGB", "L" or "CMYK" (CMYK covers the conversion path)."""
    return _encode(_base(width, height, seed).convert(mode), "JPEG", quality=90)


def png(width: int = 64, height: int = 48, seed: int = 0, mode: str = "RGB") -> bytes:
    """PNG in mode "RGB", "RGBA", "P", "LA" or "L" (alpha/palette need flattening)."""
    img = _base(width, height, seed)
    if mode in ("RGBA", "LA"):
        alpha = Image.linear_gradient("L").resize((width, height))
        img = img.convert(mode[:-1])
        img.putalpha(alpha)
    elif mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    else:
        img = img.convert(mode)
    return _encode(img, "PNG")


def webp(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """Lossy WebP, a format CDNs commonly serve."""
    return _encode(_base(width, height, seed), "WEBP", quality=80)


def gif(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """Single-frame palette GIF."""
    return _encode(_base(width, height, seed).convert("P"), "GIF")


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """Valid 1-bit all-black PNG declaring a huge pixel count, small on disk.

    Built by hand because Pillow would allocate the whole bitmap first.
    """
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed zero bits
    rows_per_step = max(1, (1 << 20) // len(row))
    comp = zlib.compressobj(9)
    parts = []
    done = 0
    while done < height:
        step = min(rows_per_step, height - done)
        parts.append(comp.compress(row * step))
        done += step
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def html_page() -> bytes:
    """What a CDN or login wall returns instead of an image."""
    return (
        b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        b"<title>Login \xe2\x80\xa2 Instagram</title></head>\n"
        b'<body><form method="post" action="/accounts/login/">'
        b'<input name="username"><input name="password" type="password">'
        b'<button type="submit">Log in</button></form></body></html>\n'
    )


def noise_png(width: int = 120, height: int = 120, seed: int = 0) -> bytes:
    """An image that does not compress: its size on disk is about w * h * 3."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    return _encode(Image.frombytes("RGB", (width, height), pixels), "PNG")
