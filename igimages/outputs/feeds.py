"""The store's feeds: what a crawl leaves beside the images, and how a post becomes lines.

``manifest.jsonl`` has a line per post with its image results;
``failures.jsonl`` a line per failed image, so it can be read back as the
input of a retry run; with ``IGIMAGES_DATASET=True``, ``manifest.parquet`` and
``metadata.jsonl`` too (``igimages.outputs.dataset``). ``StoreFeeds`` is the
add-on that puts them, and ``summary.json``, beside the images unless ``FEEDS``
says otherwise: a plain crawl's outputs. (A job writes the same ones when it
ends: ``igimages.job``.)
"""

from __future__ import annotations

from typing import Any

from scrapy.exporters import JsonLinesItemExporter
from scrapy.extensions.feedexport import ItemFilter
from scrapy.settings import BaseSettings

from igimages.items import FAILED, Post, has_failures
from igimages.store import StoreUri

MANIFEST, FAILURES, SUMMARY = "manifest.jsonl", "failures.jsonl", "summary.json"
TABLE, METADATA = "manifest.parquet", "metadata.jsonl"
MANIFEST_FIELDS = ["id", "url", "images"]
FAILURE_FIELDS = ("url", "position", "reason", "http_status", "attempts", "detail")


class HasFailures(ItemFilter):
    """Feed item filter: only posts with at least one failed image."""

    def accepts(self, item: Any) -> bool:
        return isinstance(item, Post) and has_failures(item.images)


class FailuresExporter(JsonLinesItemExporter):
    def export_item(self, item: Post) -> None:
        for image in item.images:
            if image["status"] != FAILED:
                continue
            line = {"post_id": item.id, "post_url": item.url}
            line.update((name, image.get(name)) for name in FAILURE_FIELDS)
            super().export_item(line)


class StoreFeeds:
    """The add-on for a crawl's own outputs: the manifest, the failure feed and the
    summary beside the images (in a bucket too), each replaced once written whole."""

    def update_settings(self, settings: BaseSettings) -> None:
        store = StoreUri.from_settings(settings)
        feeds = store_feeds(store, settings)  # a data set without pyarrow stops here
        if not settings.getdict("FEEDS"):
            settings.set("FEEDS", feeds, priority="addon")
        if not settings.get("IGIMAGES_SUMMARY_FILE"):
            settings.set("IGIMAGES_SUMMARY_FILE", store.file(SUMMARY), priority="addon")


def store_feeds(store: StoreUri, settings: BaseSettings) -> dict[str, dict[str, Any]]:
    """The feeds a crawl, or a job at its end, writes beside the images (``FEEDS``)."""
    feeds = {
        store.file(MANIFEST): {"format": "jsonlines", "overwrite": True, "fields": MANIFEST_FIELDS},
        store.file(FAILURES): {
            "format": "failures",
            "overwrite": True,
            "item_filter": "igimages.outputs.feeds.HasFailures",
        },
    }
    if settings.getbool("IGIMAGES_DATASET"):
        from igimages.outputs.dataset import require_pyarrow

        require_pyarrow()
        feeds[store.file(TABLE)] = {"format": "parquet", "overwrite": True}
        feeds[store.file(METADATA)] = {"format": "imagefolder", "overwrite": True}
    return feeds
