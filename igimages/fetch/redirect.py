"""Redirects, as Scrapy follows them, with one exception."""

from __future__ import annotations

from scrapy import Request
from scrapy.downloadermiddlewares.redirect import RedirectMiddleware
from scrapy.http import Response


class ImageRedirectMiddleware(RedirectMiddleware):
    """Scrapy's redirects, except that one to a URL of which Scrapy makes no
    request at all (``mailto:``, ``javascript:``: no ``//``) is left to the
    pipeline, as Scrapy leaves one to ``file:`` or ``data:``, and fails as
    ``unsupported_scheme`` instead of an error.
    """

    def process_response(self, request: Request, response: Response) -> Request | Response:
        try:
            return super().process_response(request, response)
        except ValueError:  # "Missing scheme in request url: mailto:..."
            return response
