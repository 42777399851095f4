"""The failure feed: one line per image that could not be stored.

Scrapy exports items, and an item here is a post; this exporter turns each
post into a line per failed image, so ``failures.jsonl`` can be read back as
the input of a retry run.
"""

from __future__ import annotations

from typing import Any

from scrapy.exporters import JsonLinesItemExporter
from scrapy.extensions.feedexport import ItemFilter

from igimages.items import Post

FAILURE_FIELDS = ("url", "position", "reason", "http_status", "attempts", "detail")


class HasFailures(ItemFilter):
    """Feed item filter: only posts with at least one failed image."""

    def accepts(self, item: Any) -> bool:
        return isinstance(item, Post) and any(i["status"] == "failed" for i in item.images)


class FailuresExporter(JsonLinesItemExporter):
    def export_item(self, item: Post) -> None:
        for image in item.images:
            if image["status"] != "failed":
                continue
            line = {"post_id": item.id, "post_url": item.url}
            line.update((name, image.get(name)) for name in FAILURE_FIELDS)
            super().export_item(line)
