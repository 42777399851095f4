"""When a failed download goes out again: Scrapy's retries, spaced out.

Scrapy's ``RetryMiddleware`` sends a retry again at once, with no regard for
``Retry-After``; ``BackoffRetryMiddleware`` marks each retry with the time
before which it must not go (``NOT_BEFORE``), which the gate holds it to.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

from scrapy import Request
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Response
from scrapy.settings import BaseSettings
from scrapy.utils.response import response_status_message

#: Request meta key: the monotonic time before which the request must not go.
NOT_BEFORE = "igimages_not_before"


def retry_after(response: Response, cap: float) -> float | None:
    """Seconds from the ``Retry-After`` header (delta or HTTP date), capped."""
    value = response.headers.get(b"Retry-After")
    if not value:
        return None
    text = value.decode("latin-1").strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    return min(max(seconds, 0.0), cap)


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retries, spaced out: exponential backoff with jitter, or the
    server's ``Retry-After`` when it gives one.

    Only what may pass is retried (``RETRY_HTTP_CODES``: 408, 429, 5xx;
    ``RETRY_EXCEPTIONS``: timeouts, dropped connections); a 404 or a 403
    fails at once.
    """

    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self.base = settings.getfloat("IGIMAGES_RETRY_BACKOFF_BASE")
        self.cap = settings.getfloat("IGIMAGES_RETRY_BACKOFF_MAX")
        self.retry_after_max = settings.getfloat("IGIMAGES_RETRY_AFTER_MAX")

    def process_response(self, request: Request, response: Response) -> Request | Response:
        if request.meta.get("dont_retry") or response.status not in self.retry_http_codes:
            return response
        retry = self._retry(request, response_status_message(response.status))
        if retry is None:
            return response
        wait = retry_after(response, self.retry_after_max)
        self._hold(retry, self._backoff(retry) if wait is None else wait)
        return retry

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        retry = super().process_exception(request, exception)
        if isinstance(retry, Request):
            self._hold(retry, self._backoff(retry))
        return retry

    def _backoff(self, retry: Request) -> float:
        """base * 2^(n-1), at most the cap, of which a random 50-100 %."""
        ceiling = min(self.cap, self.base * 2 ** (retry.meta.get("retry_times", 1) - 1))
        return ceiling * random.uniform(0.5, 1.0)

    @staticmethod
    def _hold(retry: Request, seconds: float) -> None:
        retry.meta[NOT_BEFORE] = time.monotonic() + seconds
