"""Download every image of a file of scraped social-media posts.

From Python: ``igimages.download(posts, store, **options)`` (``igimages.api``).
"""

from importlib import import_module
from typing import Any

__all__ = ["DownloadError", "Result", "download"]


def __getattr__(name: str) -> Any:
    # Imported when first used: ``scrapy`` imports this package for every command.
    if name in __all__:
        return getattr(import_module("igimages.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
