"""Decide whether downloaded bytes are a complete, usable image.

Pillow reads only the header on ``Image.open``; a full decode costs far more
than the download itself, so completeness is checked from the bytes each
format ends with where that is enough, and by decoding only for the rare
formats that give no such end marker.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from io import BytesIO

# Each kept format's plugin, imported here: asked for a format whose plugin is
# not loaded yet, Image.open imports all of Pillow's forty-odd plugins.
from PIL import (  # noqa: F401
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

#: Pillow format name -> file extension used in the store.
EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
    "MPO": "jpg",
}
#: The formats to try, most common first; MPO files open through JPEG's.
_OPENERS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


class ImageRejected(Exception):
    """The bytes are not an image worth keeping; ``reason`` says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str
    extension: str
    width: int
    height: int


def inspect_image(
    data: bytes, *, min_width: int = 0, min_height: int = 0, max_pixels: int = 0
) -> ImageInfo:
    """Return what the image is, or raise ``ImageRejected`` with the reason."""
    if not data:
        raise ImageRejected("empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(BytesIO(data), formats=_OPENERS)
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from exc
    except Exception as exc:  # Pillow raises several types for "not an image"
        raise _unreadable(data) from exc
    width, height = image.size
    if max_pixels and width * height > max_pixels:
        raise ImageRejected("too_many_pixels", f"{width}x{height}")
    if width < min_width or height < min_height:
        raise ImageRejected("too_small", f"{width}x{height}")
    if not _is_complete(image, data):
        raise ImageRejected("truncated", f"{image.format} data ends early")
    return ImageInfo(image.format, EXTENSIONS[image.format], width, height)


def _is_complete(image: Image.Image, data: bytes) -> bool:
    fmt = image.format
    if fmt in ("JPEG", "MPO"):
        # An encoder ends the stream with EOI; some append padding after it.
        return b"\xff\xd9" in data[-1024:]
    if fmt == "WEBP":
        # RIFF header states the payload size.
        return len(data) >= 8 + _riff_size(data)
    if fmt == "GIF":
        return data.rstrip(b"\x00").endswith(b";")
    try:
        if fmt == "PNG":
            image.verify()  # walks the chunks and their CRCs without decoding
        else:
            image.load()
    except Exception:
        return False
    return True


_MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF8": "GIF",
    b"RIFF": "WEBP",
}


def _unreadable(data: bytes) -> ImageRejected:
    """Say why Pillow could not open ``data``: damaged image, or no image."""
    for magic, fmt in _MAGIC.items():
        if data.startswith(magic):
            if fmt == "WEBP" and len(data) >= 8 and len(data) < 8 + _riff_size(data):
                return ImageRejected("truncated", "WEBP data ends early")
            return ImageRejected("corrupt", f"{fmt} header, unreadable data")
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return ImageRejected("not_image", "HTML page")
    return ImageRejected("not_image", f"{len(data)} bytes starting {data[:8]!r}")


def _riff_size(data: bytes) -> int:
    return struct.unpack_from("<I", data, 4)[0]
