"""Every private part of Scrapy and aiohttp that igimages relies on, in one place.

Each is named here once, with why it is needed; nothing else in igimages
reaches past a public interface. ``check()`` runs before a crawl starts and
says in one line when the installed Scrapy or aiohttp is a version these were
not checked against, or when one of them is gone.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import scrapy
from scrapy.core.downloader.handlers._aiohttp import AiohttpDownloadHandler
from scrapy.core.scraper import Scraper
from scrapy.utils._compression import _DecompressionMaxSizeExceeded

__all__ = [
    "AiohttpDownloadHandler",
    "DecompressionMaxSizeExceeded",
    "check",
]

#: The releases these were checked against (major.minor).
KNOWN_VERSIONS = {"scrapy": ("2.19",), "aiohttp": ("3.12", "3.13", "3.14")}

#: Scrapy's aiohttp download handler (``AiohttpDownloadHandler``) is in a
#: private module in 2.19; igimages' handler extends it.
#: A gzip bomb's error, raised by HttpCompressionMiddleware under DownloadCancelled.
DecompressionMaxSizeExceeded = _DecompressionMaxSizeExceeded

#: The attributes used, by the class that has them; ``check()`` looks for each.
_ATTRIBUTES: tuple[tuple[Any, str], ...] = (
    (AiohttpDownloadHandler, "_DEFAULT_CONNECT_TIMEOUT"),
    (aiohttp.TCPConnector, "_resolve_host"),
    (Scraper, "_check_if_closing"),
)  # and two that instances get (the engine's ``_slot``, the connector's ``_resolver``)


# The aiohttp handler's session and connector: Scrapy builds them, aiohttp offers no setter.


def connector(handler: AiohttpDownloadHandler) -> aiohttp.TCPConnector:
    return handler._session.connector  # type: ignore[return-value]


def wrap_resolver(handler: AiohttpDownloadHandler, wrap: Any) -> None:
    """Put ``wrap(resolver)`` in place of the connector's resolver."""
    tcp = connector(handler)
    tcp._resolver = wrap(tcp._resolver)  # type: ignore[attr-defined]


async def resolve_host(handler: AiohttpDownloadHandler, host: str, port: int) -> Any:
    """The connector's own cached lookup (through the wrapped resolver)."""
    return await connector(handler)._resolve_host(host, port)  # type: ignore[attr-defined]


def connect_timeout(handler: AiohttpDownloadHandler) -> float:
    return handler._DEFAULT_CONNECT_TIMEOUT  # type: ignore[attr-defined]


# The engine re-checks for idleness only after responses, and for a finished
# stop never; posts come from start(), not from responses (igimages.runtime).


def engine_open(engine: Any) -> bool:
    return engine._slot is not None and engine.scraper.slot is not None


def look_again(engine: Any) -> None:
    """Ask the engine to check now whether the crawl is idle, or its stop complete."""
    closing = engine.scraper.slot.closing
    if closing is None:
        engine._slot.nextcall.schedule()
    elif not closing.called:
        engine.scraper._check_if_closing()


def check() -> str | None:
    """One line saying what is unknown, or None when everything is as checked."""
    installed = {"scrapy": scrapy.__version__, "aiohttp": aiohttp.__version__}
    for name, known in KNOWN_VERSIONS.items():
        version = installed[name]
        if not version.startswith(tuple(f"{release}." for release in known)):
            return (
                f"{name} {version} is not a version igimages knows ({', '.join(known)}): "
                f"install the one requirements.txt names"
            )
    for owner, attribute in _ATTRIBUTES:
        if not hasattr(owner, attribute):
            return (
                f"{owner.__module__}.{owner.__qualname__}.{attribute} is gone in "
                f"scrapy {scrapy.__version__} / aiohttp {aiohttp.__version__}: "
                "install the versions requirements.txt names"
            )
    return None
