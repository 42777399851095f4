"""Names for posts and images that stay the same across re-scrapes."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from scrapy import Request

#: Hosts whose query strings (signature, expiry, cache hints) rotate on every
#: scrape while the path names the same image.
DEFAULT_PATH_KEY_HOSTS = ("cdninstagram.com", "fbcdn.net")

_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
#: Names Windows gives to devices, whatever their case: a folder cannot have them.
_WINDOWS_RESERVED = re.compile(r"CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9]", re.IGNORECASE)


def image_key(url: str, path_key_hosts: tuple[str, ...] = DEFAULT_PATH_KEY_HOSTS) -> str:
    """A short hash naming the image behind ``url``.

    For CDN hosts that sign their URLs only the path counts, so the same image
    scraped again next week, with a new signature, has the same key.
    """
    parts = urlsplit(url)
    stable = parts.path if is_signed_cdn(parts.hostname, path_key_hosts) else url
    return hashlib.sha1(stable.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def is_signed_cdn(
    host: str | None, path_key_hosts: tuple[str, ...] = DEFAULT_PATH_KEY_HOSTS
) -> bool:
    host = (host or "").lower()
    return any(host == h or host.endswith("." + h) for h in path_key_hosts)


def link_expiry(url: str, path_key_hosts: tuple[str, ...] = DEFAULT_PATH_KEY_HOSTS) -> int | None:
    """When a signed CDN link stops working: its ``oe`` parameter, hex Unix seconds."""
    parts = urlsplit(url)
    if not is_signed_cdn(parts.hostname, path_key_hosts):
        return None
    try:
        return int(parse_qs(parts.query)["oe"][0], 16)
    except (KeyError, ValueError):
        return None


def safe_post_dir(post_id: str) -> str:
    """A folder name for ``post_id`` that cannot leave the store.

    Usual ids (digits, shortcodes) are kept as they are; anything else is
    reduced to safe characters plus a hash of the original, so two different
    ids never share a folder and ``../x``, ``/etc`` or NUL lead nowhere. Names
    a common file system refuses (Windows' ``CON``, ``NUL``, ``COM1``...; a
    trailing dot or space) are not kept either, so a store can be copied anywhere.
    """
    if _SAFE_ID.fullmatch(post_id) and not _WINDOWS_RESERVED.fullmatch(post_id):
        return post_id
    digest = hashlib.sha1(post_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    readable = _UNSAFE_CHARS.sub("_", post_id).strip("_")[:60]
    return f"{readable}~{digest}" if readable else f"~{digest}"


class UrlFingerprinter:
    """Request fingerprints from the URL as it is requested (REQUEST_FINGERPRINTER_CLASS).

    Scrapy's default canonicalises every URL first, a sizeable share of the
    CPU an image costs. Here every request is a GET without a body, and the
    fingerprint only lets posts that want the same URL at the same time share
    one download.
    """

    def fingerprint(self, request: Request) -> bytes:
        return hashlib.sha1(request.url.encode()).digest()
