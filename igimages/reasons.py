"""The reason a download failed, as the failure feed and the limits name it."""

from __future__ import annotations

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
from scrapy.utils._compression import _DecompressionMaxSizeExceeded
from twisted.internet import error as twisted_errors

from igimages.addresses import BlockedAddress
from igimages.handlers import CertificateRefused
from igimages.middlewares import DownloadAborted

#: Download exceptions by the reason they are reported under.
_REASONS: tuple[tuple[str, tuple[type[BaseException], ...]], ...] = (
    ("interrupted", (DownloadAborted,)),
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
    if isinstance(exc.__cause__, _DecompressionMaxSizeExceeded):  # a gzip bomb
        return "too_large"
    for reason, types in _REASONS:
        if isinstance(exc, types):
            return reason
    return "error"
