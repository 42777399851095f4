"""The store's feeds: what a crawl leaves beside the images, and how a post becomes lines.

``manifest.jsonl`` has a line per post with its image results;
``failures.jsonl`` a line per failed image, so it can be read back as the
input of a retry run. ``StoreFeeds`` is the add-on that puts both, and
``summary.json``, beside the images unless ``FEEDS`` says otherwise: a plain
crawl's outputs. (A job writes its own when it ends: ``igimages.job``.)
"""

from __future__ import annotations

from typing import Any

from scrapy.exporters import JsonLinesItemExporter
from scrapy.extensions.feedexport import ItemFilter
from scrapy.settings import BaseSettings

from igimages.items import FAILED, Post, has_failures
from igimages.store import StoreUri

MANIFEST, FAILURES, SUMMARY = "manifest.jsonl", "failures.jsonl", "summary.json"
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
        if not settings.getdict("FEEDS"):
            settings.set("FEEDS", store_feeds(store), priority="addon")
        if not settings.get("IGIMAGES_SUMMARY_FILE"):
            settings.set("IGIMAGES_SUMMARY_FILE", store.file(SUMMARY), priority="addon")


def store_feeds(store: StoreUri) -> dict[str, dict[str, Any]]:
    return {
        store.file(MANIFEST): {"format": "jsonlines", "overwrite": True, "fields": MANIFEST_FIELDS},
        store.file(FAILURES): {
            "format": "failures",
            "overwrite": True,
            "item_filter": "igimages.outputs.feeds.HasFailures",
        },
    }
