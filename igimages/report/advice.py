"""What each failure reason of the manifest means, and what to do about it."""

from __future__ import annotations

_ADVICE = {
    "expired": "the signed CDN link has expired: rescrape the post for fresh links",
    "not_image": "a web page came instead of an image: usually a login wall",
    "http_404": "deleted: the image, or its post, is gone",
    "http_410": "deleted: the image, or its post, is gone",
    "http_403": "refused: a private post, or a link the server will not serve",
    "http_401": "refused: the server wants a login",
    "http_429": "rate-limited: run the same command again later",
    "timeout": "no answer in time: run again, or raise DOWNLOAD_TIMEOUT",
    "dns": "the host name does not resolve: check the network, then run again",
    "connection": "the connection failed: check the network, then run again",
    "truncated": "the download ended early: run again",
    "empty": "the server sent nothing: run again later",
    "corrupt": "the bytes are not a readable image",
    "too_large": "larger than DOWNLOAD_MAXSIZE",
    "too_small": "smaller than IMAGES_MIN_WIDTH or IMAGES_MIN_HEIGHT",
    "too_many_pixels": "more pixels than IGIMAGES_MAX_PIXELS (a decompression bomb?)",
    "too_many_redirects": "redirected in circles: the link is broken",
    "unsupported_scheme": "not an http(s) link: never requested",
    "invalid_url": "not a valid URL: fix the posts file",
    "blocked_address": "a link-local or cloud metadata address (or, with"
    " IGIMAGES_REFUSE_PRIVATE_ADDRESSES, a private one): never requested",
    "certificate": "the server's HTTPS certificate did not verify: for a mirror you trust,"
    " give its CA in SSL_CERT_FILE, or set DOWNLOAD_VERIFY_CERTIFICATES=False",
    "filtered": "dropped by a downloader middleware",
}


def advice(reason: str) -> str:
    """One line for the reason, or an empty string for one that has no advice."""
    if reason in _ADVICE:
        return _ADVICE[reason]
    if reason.startswith("http_5"):
        return "the server failed: run again later"
    if reason.startswith("http_"):
        return "the server refused the request"
    return ""
