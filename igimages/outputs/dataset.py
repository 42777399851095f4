"""The store as a data set: a Parquet table of every image, and an image-folder's metadata.

With ``IGIMAGES_DATASET=True`` the store's feeds (``igimages.outputs.feeds``)
include two more, made of ``image_rows``: ``manifest.parquet``, a row per
image, failed ones too, for DuckDB, polars or pandas; and ``metadata.jsonl``,
a row per stored image file, which makes the store a Hugging Face
``imagefolder`` (``datasets.load_dataset("imagefolder", data_dir=STORE)``).

A row's ``similar`` group is known only once every image of the run is, so an
exporter keeps the posts it is given in a temporary file (in ``FEED_TEMPDIR``,
as Scrapy's own feeds do; memory stays bounded however many images) and
writes its feed from it at the end, through the same storages as the others:
whole or not at all. pyarrow is imported only here, and only when asked for.
"""

from __future__ import annotations

import json
import tempfile
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from functools import cache
from typing import IO, TYPE_CHECKING, Any, Self

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exporters import BaseItemExporter

from igimages.errors import OneLineError
from igimages.items import FAILED
from igimages.outputs.rows import grouped_rows
from igimages.outputs.storages import spoil

if TYPE_CHECKING:
    import pyarrow as pa

#: An image-folder metadata row: the image file (its path in the store) and its post.
METADATA_FIELDS = (
    "file_name",
    "post_id",
    "position",
    "url",
    "post_url",
    "sha256",
    "width",
    "height",
    "format",
    "status",
    "similar",
)
ROW_GROUP = 65_536  # rows of a Parquet row group
BATCH = 4_096  # rows made into Arrow arrays at a time


class DatasetUnavailable(OneLineError):
    """``IGIMAGES_DATASET=True`` without pyarrow: said before the crawl starts."""


def require_pyarrow() -> None:
    """Refuse a data set that could not be written at the end of the run."""
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise DatasetUnavailable(
            f"IGIMAGES_DATASET=True needs pyarrow, which cannot be imported ({exc}): "
            "pip install 'igimages[dataset]' (or pip install pyarrow)"
        ) from None


@cache
def arrow_schema() -> pa.Schema:
    """The Parquet table's columns, ``ROW_FIELDS`` with their Arrow types."""
    import pyarrow as pa

    text, small = pa.string(), pa.int32()
    return pa.schema(
        [
            pa.field("post_id", text, nullable=False),
            ("post_url", text),
            pa.field("position", small, nullable=False),
            pa.field("url", text, nullable=False),
            pa.field("status", text, nullable=False),
            ("path", text),
            ("sha256", text),
            ("bytes", pa.int64()),
            ("width", small),
            ("height", small),
            ("format", text),
            ("phash", text),
            ("similar", text),
            ("duplicate_of", text),
            ("reason", text),
            ("http_status", small),
            ("attempts", small),
            ("detail", text),
        ]
    )


class PostSpool:
    """The posts given so far, as manifest lines in an unnamed temporary file, read back
    at the end as rows with their ``similar`` group (which needs every image first)."""

    def __init__(self, folder: str | None) -> None:
        self.file: IO[bytes] | None = None
        self.error: OSError | None = None
        try:
            self.file = tempfile.TemporaryFile(prefix="igimages-posts-", dir=folder)  # noqa: SIM115
        except OSError as exc:  # no temporary folder: the feed is not written
            self.error = exc

    def add(self, post: Mapping[str, Any]) -> None:
        if self.error is not None:
            return
        assert self.file is not None
        line = {"id": post["id"], "url": post["url"], "images": post["images"]}
        try:
            self.file.write(json.dumps(line).encode() + b"\n")
        except OSError as exc:  # a full temporary folder: the feed is not written
            self.error = exc

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every image's row, ``similar`` included, in the order the posts came."""
        return grouped_rows(self._posts)

    def _posts(self) -> Iterator[dict[str, Any]]:
        if self.error is not None:
            raise self.error
        assert self.file is not None
        self.file.flush()
        self.file.seek(0)
        for line in self.file:
            yield json.loads(line)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class SpooledExporter(BaseItemExporter):
    """A feed exporter of rows that writes its whole feed when the run ends."""

    def __init__(self, file: IO[bytes], *, spool_folder: str | None = None, **kwargs: Any) -> None:
        super().__init__(dont_fail=True, **kwargs)
        self.file = file
        self.spool = PostSpool(spool_folder)

    @classmethod
    def from_crawler(cls, crawler: Crawler, file: IO[bytes], **kwargs: Any) -> Self:
        return cls(file, spool_folder=crawler.settings.get("FEED_TEMPDIR"), **kwargs)

    def export_item(self, item: Any) -> None:
        self.spool.add(ItemAdapter(item))

    def finish_exporting(self) -> None:
        try:
            self.write(self.spool.rows())
        except OSError as exc:  # the feed's storage then stores nothing, and says why
            spoil(self.file, exc)
        finally:
            self.spool.close()

    @abstractmethod
    def write(self, rows: Iterator[dict[str, Any]]) -> None:
        """Write the whole feed of ``rows`` into ``self.file``."""


class ParquetExporter(SpooledExporter):
    """``FEED_EXPORTERS["parquet"]``: one row per image, with Arrow types (``arrow_schema``)."""

    def write(self, rows: Iterator[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = arrow_schema()
        with pq.ParquetWriter(self.file, schema, compression="zstd") as writer:
            group: list[pa.RecordBatch] = []  # a row group, made of a few batches
            for batch in _batches(rows, schema):
                group.append(batch)
                if len(group) * BATCH >= ROW_GROUP:
                    writer.write_table(pa.Table.from_batches(group))
                    group = []
            if group:
                writer.write_table(pa.Table.from_batches(group))


class ImageFolderExporter(SpooledExporter):
    """``FEED_EXPORTERS["imagefolder"]``: a Hugging Face ``imagefolder`` ``metadata.jsonl``,
    a line per stored image file (``file_name``: its path in the store) with its post."""

    def write(self, rows: Iterator[dict[str, Any]]) -> None:
        for row in rows:
            if row["status"] == FAILED:
                continue
            # A post's missing URL is "": a column null in datasets' first rows
            # would be typed null, and a later URL would then not load.
            row.update(file_name=row["path"], post_url=row["post_url"] or "")
            line = {name: row[name] for name in METADATA_FIELDS}
            self.file.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")


def _batches(rows: Iterator[dict[str, Any]], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == BATCH:
            yield pa.RecordBatch.from_pylist(chunk, schema=schema)
            chunk = []
    if chunk:
        yield pa.RecordBatch.from_pylist(chunk, schema=schema)
