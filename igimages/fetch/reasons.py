"""Why an image failed, as the failure feed and the limits name it.

A download's exception becomes a reason (``failure_reason``), and an image
that cannot be stored becomes an ``ImageFailed`` carrying it, whatever
failed: the request, the answer, or the bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    NotSupported,
    ResponseDataLossError,
    UnsupportedURLSchemeError,
)
from scrapy.http import Response
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet import error as twisted_errors

from igimages.compat import DecompressionMaxSizeExceeded
from igimages.fetch.addresses import BlockedAddress
from igimages.fetch.gate import DownloadAborted
from igimages.fetch.handler import CertificateRefused
from igimages.items import FAILED, INTERRUPTED

#: Download exceptions by the reason they are reported under.
_REASONS: tuple[tuple[str, tuple[type[BaseException], ...]], ...] = (
    (INTERRUPTED, (DownloadAborted,)),
    ("blocked_address", (BlockedAddress,)),
    ("certificate", (CertificateRefused,)),
    ("too_large", (DownloadCancelledError,)),  # over DOWNLOAD_MAXSIZE
    ("timeout", (DownloadTimeoutError, twisted_errors.TimeoutError)),
    ("dns", (CannotResolveHostError, twisted_errors.DNSLookupError)),
    ("truncated", (ResponseDataLossError,)),
    ("unsupported_scheme", (UnsupportedURLSchemeError, NotSupported)),
    ("filtered", (IgnoreRequest,)),
    (
        "connection",
        (
            DownloadConnectionRefusedError,
            DownloadFailedError,
            twisted_errors.ConnectError,
            twisted_errors.ConnectionLost,
            twisted_errors.ConnectionDone,
        ),
    ),
)


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, IgnoreRequest) and "max redirections" in str(exc):
        return "too_many_redirects"
    if isinstance(exc.__cause__, DecompressionMaxSizeExceeded):  # a gzip bomb
        return "too_large"
    for reason, types in _REASONS:
        if isinstance(exc, types):
            return reason
    return "error"


class ImageFailed(Exception):
    """An image that cannot be stored, with a reason the failure feed keeps."""

    def __init__(
        self, reason: str, detail: str = "", http_status: int | None = None, attempts: int = 0
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.http_status = http_status
        self.attempts = attempts

    @classmethod
    def of(cls, exc: BaseException, attempts: int = 0) -> ImageFailed:
        """A download's exception as the feed reports it."""
        if isinstance(exc, ImageFailed):
            return exc
        return cls(failure_reason(exc), str(exc) or type(exc).__name__, attempts=attempts)

    @classmethod
    def interrupted(cls, exc: BaseException, attempts: int = 0) -> ImageFailed:
        """An image the crawl stopped before it was done: not failed, a later run fetches it."""
        return cls(INTERRUPTED, str(exc), attempts=attempts)

    def result(self, url: str, position: int) -> dict[str, Any]:
        """The image's entry in its post's results."""
        return {
            "url": url,
            "position": position,
            "status": INTERRUPTED if self.reason == INTERRUPTED else FAILED,
            "reason": self.reason,
            "http_status": self.http_status,
            "attempts": self.attempts,
            "detail": self.detail,
        }


def failed_answer(
    response: Response,
    attempts: int,
    signed_cdn: Callable[[str | None], bool],
    judge_url: Callable[[str], tuple[str, str] | None],
) -> ImageFailed:
    """An answer other than 200, as the failure feed says it."""
    status, reason, detail = response.status, f"http_{response.status}", ""
    if status == 403 and signed_cdn(urlparse_cached(response).hostname):
        reason, detail = "expired", "the CDN refused the signed link; rescrape the post"
    elif 300 <= status < 400 and (location := response.headers.get(b"Location")):
        # Not followed: judged as a posts file's URL is, to say why.
        to = location.decode("latin-1")
        if verdict := judge_url(urljoin(response.url, to)):
            reason, detail = verdict[0], f"redirect to {to}"
    return ImageFailed(reason, detail, http_status=status, attempts=attempts)


def expired_link(expiry: float) -> ImageFailed:
    """A signed link past its expiry: not worth a request, only a new scrape helps."""
    when = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return ImageFailed("expired", f"signed link expired {when}")
