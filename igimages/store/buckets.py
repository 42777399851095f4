"""Images straight into a bucket: S3 (and S3-compatible services) or GCS.

A bucket store keeps the folder's promises with object storage:

* an object appears whole or not at all (a PUT is atomic), under the same
  layout as on disk, with its sha256, dimensions and format as metadata;
* identical bytes are uploaded once; other places get a server-side copy
  (S3 ``CopyObject``, GCS rewrite), which moves no bytes through this machine;
* the index lives in a local state folder (``IGIMAGES_STATE_DIR``) for
  look-ups without a request, and is mirrored into the bucket as gzipped
  segments (``.igimages/index/*.jsonl.gz``): a run elsewhere, or with its
  state deleted, reads the segments, never an image, and on a new state also
  lists the objects to drop what is gone and adopt what a killed run stored
  but did not get to record (from the objects' metadata);
* uploads run in a pool of ``IGIMAGES_STORE_UPLOADS`` threads, off the event
  loop; a post is done only when its uploads are, so a bucket slower than the
  CDN holds posts in the pipeline and the spider waits (backpressure).

Clients, credentials and endpoints come from Scrapy's own stores and
settings (``S3FilesStore``: ``AWS_*``; ``GCSFilesStore``: ``GCS_PROJECT_ID``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from scrapy.crawler import Crawler
from scrapy.pipelines.files import GCSFilesStore, S3FilesStore
from scrapy.settings import BaseSettings
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from igimages.compat import botocore_arguments, max_pool_connections
from igimages.store import StoreUri
from igimages.store.index import FIELDS, INDEX_DIR, INDEX_NAME, ImageIndex, StoredImage, StoreError

SEGMENTS = f"{INDEX_DIR}/index/"
PROBE = f"{INDEX_DIR}/writable"
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
_META_PREFIX = "igimages-"
_CONTENT_FIELDS = ("sha256", "width", "height", "format")
_T = TypeVar("_T")

#: One object as a listing gives it: path under the prefix, size, metadata if
#: the listing carries it (GCS does, S3 does not).
Listed = tuple[str, int, dict[str, str] | None]


@dataclass(frozen=True, slots=True)
class _Segment:
    name: str
    last_rowid: int
    upload: tuple[str, bytes, dict[str, str], str]  # _put's arguments


class BucketStore:
    """Everything but the object calls, which each service's subclass makes.

    Subclasses set ``bucket_name``, ``prefix`` and ``endpoint``, then call
    ``_open(uri)``; their object calls run in worker threads and raise
    ``StoreError`` in one line.
    """

    STATE_DIR: ClassVar[str] = ""
    UPLOADS: ClassVar[int] = 16
    SYNC_INTERVAL: ClassVar[float] = 60.0

    bucket_name: str
    prefix: str
    endpoint: str

    @classmethod
    def from_crawler(cls, crawler: Crawler, uri: StoreUri) -> Self:
        cls.configure(crawler.settings)
        return cls(uri)

    @classmethod
    def configure(cls, settings: BaseSettings) -> None:
        """Scrapy's settings into the class's attributes, as ``FilesPipeline`` does."""
        BucketStore.UPLOADS = max(1, settings.getint("IGIMAGES_STORE_UPLOADS"))
        BucketStore.SYNC_INTERVAL = settings.getfloat("IGIMAGES_INDEX_SYNC_INTERVAL")
        BucketStore.STATE_DIR = settings.get("IGIMAGES_STATE_DIR") or ""

    @classmethod
    def state_folder(cls, uri: StoreUri, settings: BaseSettings) -> Path:
        root = settings.get("IGIMAGES_STATE_DIR") or ""
        return state_dir(uri, cls.endpoint_of(settings), root)

    @classmethod
    def endpoint_of(cls, settings: BaseSettings | None) -> str:
        """The service the bucket is on, which names its local state with it."""
        raise NotImplementedError

    def _open(self, uri: StoreUri) -> None:
        self.uri = uri.identity
        self._pool = ThreadPool(minthreads=0, maxthreads=self.UPLOADS, name="igimages-store")
        self._pool.start()
        state = state_dir(uri, self.endpoint, self.STATE_DIR)
        self.index = ImageIndex.open(
            state / INDEX_NAME,
            lambda image: True,
            self.uri,
            rebuilt="from the bucket's mirror of the index and a listing of its objects",
        )
        self._last_sync = time.monotonic()
        self._syncing: Deferred[None] | None = None
        try:
            self._check()
            self._put(PROBE, b"", {}, "text/plain")  # refused writes show now, not mid-crawl
            self._sync_now()  # what a killed run here recorded but did not mirror
            self._read_segments()
            if self.index.get_state("reconciled") != "yes":  # a new state
                self._reconcile()
                self.index.set_state("reconciled", "yes")
            self.index.set_state("synced", str(self.index.last_rowid()))
        except BaseException:
            self._pool.stop()
            self.index.close()
            raise

    # What the pipeline calls

    def find_unindexed(self, post: str, prefix: str) -> str | None:
        return None  # a new state adopts unrecorded objects when it opens (_reconcile)

    def read(self, path: str) -> bytes:
        return self._get(path)

    async def save(self, image: StoredImage, data: bytes) -> None:
        content_type = CONTENT_TYPES.get(image.format, "application/octet-stream")
        await self._in_thread(self._put, image.path, data, _metadata(image), content_type)
        self.index.record(image)
        self._sync_soon()

    async def place(self, source: StoredImage, image: StoredImage) -> None:
        await self._in_thread(self._copy, source.path, image.path)
        self.index.record(image)
        self._sync_soon()

    async def close(self) -> None:
        try:
            if self._syncing is not None:  # let a periodic mirror finish first
                await maybe_deferred_to_future(self._syncing)
            if (segment := self._next_segment()) is not None:
                await self._in_thread(self._put, *segment.upload)
                self._mirrored(segment)
        finally:
            self._pool.stop()
            self.index.close()

    async def _in_thread(self, call: Callable[..., _T], *args: Any) -> _T:
        return await maybe_deferred_to_future(
            deferToThreadPool(_reactor(), self._pool, call, *args)
        )

    # The index's mirror in the bucket. SQLite is read and written on the
    # event loop's thread only; the segment's upload runs in the pool.

    def _sync_soon(self) -> None:
        if self._syncing is not None or time.monotonic() - self._last_sync < self.SYNC_INTERVAL:
            return
        self._last_sync = time.monotonic()
        if (segment := self._next_segment()) is None:
            return
        upload = deferToThreadPool(_reactor(), self._pool, self._put, *segment.upload)
        upload.addCallback(lambda _: self._mirrored(segment))
        upload.addErrback(lambda _: None)  # tried again at the next interval and at close
        upload.addBoth(self._sync_finished)
        if not upload.called:
            self._syncing = upload

    def _sync_finished(self, _: Any) -> None:
        self._syncing = None

    def _sync_now(self) -> None:
        if (segment := self._next_segment()) is not None:
            self._put(*segment.upload)
            self._mirrored(segment)

    def _next_segment(self) -> _Segment | None:
        """The records made since the last segment, as the next segment to upload."""
        last, images = self.index.since(int(self.index.get_state("synced", "0")))
        if not images:
            return None
        lines = "".join(json.dumps(_as_dict(image)) + "\n" for image in images)
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"
        data = gzip.compress(lines.encode(), 6)
        return _Segment(name, last, (f"{SEGMENTS}{name}.jsonl.gz", data, {}, ""))

    def _mirrored(self, segment: _Segment) -> None:
        self._remember_segment(segment.name)
        synced = int(self.index.get_state("synced", "0"))
        self.index.set_state("synced", str(max(synced, segment.last_rowid)))

    def _read_segments(self) -> None:
        """Record what other runs mirrored and this state has not read yet."""
        known = self._known_segments()
        for path, _size, _meta in self._list(SEGMENTS):
            name = path.removeprefix(SEGMENTS).removesuffix(".jsonl.gz")
            if name in known:
                continue
            lines = gzip.decompress(self._get(path)).decode().splitlines()
            self.index.record_all(StoredImage(**json.loads(line)) for line in lines if line)
            self._remember_segment(name)

    def _known_segments(self) -> set[str]:
        return set(json.loads(self.index.get_state("segments", "[]")))

    def _remember_segment(self, name: str) -> None:
        known = self._known_segments() | {name}
        self.index.set_state("segments", json.dumps(sorted(known)))

    def _reconcile(self) -> None:
        """On a new state: forget what is gone, adopt what is stored but unrecorded."""
        listed = {path: (size, meta) for path, size, meta in self._list("") if _is_image(path)}
        recorded = self.index.sizes()
        gone = [path for path, size in recorded.items() if listed.get(path, (-1,))[0] != size]
        self.index.forget(gone)
        adopted = []
        for path, (size, meta) in listed.items():
            if path in recorded:
                continue
            image = _from_metadata(path, size, self._head(path) if meta is None else meta)
            if image is not None:
                adopted.append(image)
        self.index.record_all(adopted)

    # Each service's object calls, made in worker threads.

    def _check(self) -> None:
        raise NotImplementedError

    def _put(self, path: str, data: bytes, metadata: dict[str, str], content_type: str) -> None:
        raise NotImplementedError

    def _copy(self, source: str, path: str) -> None:
        raise NotImplementedError

    def _get(self, path: str) -> bytes:
        raise NotImplementedError

    def _head(self, path: str) -> dict[str, str]:
        raise NotImplementedError

    def _list(self, under: str) -> Iterator[Listed]:
        raise NotImplementedError


class S3Store(BucketStore, S3FilesStore):
    """``s3://bucket/prefix/``, on AWS or any S3-compatible service (``AWS_ENDPOINT_URL``)."""

    def __init__(self, uri: StoreUri) -> None:
        S3FilesStore.__init__(self, uri.identity)
        self.bucket_name = self.bucket
        self.endpoint = self.AWS_ENDPOINT_URL or "aws"
        self._open(uri)

    @classmethod
    def configure(cls, settings: BaseSettings) -> None:
        super().configure(settings)
        for name in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_REGION_NAME",
            "AWS_USE_SSL",
            "AWS_VERIFY",
        ):
            setattr(cls, name, settings[name])
        cls.POLICY = settings["FILES_STORE_S3_ACL"]
        # One pooled connection per upload thread; Scrapy's default is the reactor's pool size.
        cls.AWS_MAX_POOL_CONNECTIONS = max(max_pool_connections(settings), BucketStore.UPLOADS)

    @classmethod
    def endpoint_of(cls, settings: BaseSettings | None) -> str:
        return (settings or {}).get("AWS_ENDPOINT_URL") or "aws"

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.s3_client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code") or exc.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode"
            )
            message = error.get("Message") or ""
            if str(code) in _S3_CODES:
                message = f"{_S3_CODES[str(code)]} ({message or code})"
            raise StoreError(f"{self.uri}: {code} {message}") from None
        except BotoCoreError as exc:  # unreachable endpoint, no credentials...
            raise StoreError(f"{self.uri}: {exc}") from None

    def _check(self) -> None:
        self._call("head_bucket")

    def _put(self, path: str, data: bytes, metadata: dict[str, str], content_type: str) -> None:
        extra = botocore_arguments(self, self.HEADERS)
        if content_type:
            extra["ContentType"] = content_type
        if self.POLICY:
            extra["ACL"] = self.POLICY
        self._call("put_object", Key=self.prefix + path, Body=data, Metadata=metadata, **extra)

    def _copy(self, source: str, path: str) -> None:
        copy_source = {"Bucket": self.bucket, "Key": self.prefix + source}
        extra = {"ACL": self.POLICY} if self.POLICY else {}
        self._call("copy_object", Key=self.prefix + path, CopySource=copy_source, **extra)

    def _get(self, path: str) -> bytes:
        return self._call("get_object", Key=self.prefix + path)["Body"].read()

    def _head(self, path: str) -> dict[str, str]:
        return self._call("head_object", Key=self.prefix + path)["Metadata"]

    def _list(self, under: str) -> Iterator[Listed]:
        token: dict[str, str] = {}
        while True:
            page = self._call("list_objects_v2", Prefix=self.prefix + under, **token)
            for entry in page.get("Contents", []):
                yield entry["Key"].removeprefix(self.prefix), entry["Size"], None
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}


_S3_CODES = {
    "403": "access denied",
    "404": "no such bucket",
    "301": "the bucket is in another region: set AWS_REGION_NAME",
}


class GCSStore(BucketStore, GCSFilesStore):
    """``gs://bucket/prefix/`` (``GCS_PROJECT_ID``; ``STORAGE_EMULATOR_HOST`` for an emulator)."""

    def __init__(self, uri: StoreUri) -> None:
        try:
            GCSFilesStore.__init__(self, uri.identity)
        except Exception as exc:  # no credentials found, bad project...
            raise StoreError(f"{uri.identity}: {_gcs_message(exc)}") from None
        self.bucket_name = self.bucket.name
        self.endpoint = self.endpoint_of(None)
        self._open(uri)

    @classmethod
    def configure(cls, settings: BaseSettings) -> None:
        super().configure(settings)
        cls.GCS_PROJECT_ID = settings["GCS_PROJECT_ID"]
        cls.POLICY = settings["FILES_STORE_GCS_ACL"] or None

    @classmethod
    def endpoint_of(cls, settings: BaseSettings | None) -> str:
        return os.environ.get("STORAGE_EMULATOR_HOST", "gcs")

    def _call(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            raise StoreError(f"{self.uri}: {_gcs_message(exc)}") from None

    def _check(self) -> None:
        self._call(self.bucket.reload)

    def _put(self, path: str, data: bytes, metadata: dict[str, str], content_type: str) -> None:
        blob = self.bucket.blob(self.prefix + path)
        blob.cache_control = self.CACHE_CONTROL
        blob.metadata = metadata
        self._call(
            blob.upload_from_string,
            data,
            content_type=content_type or "application/octet-stream",
            predefined_acl=self.POLICY,
        )

    def _copy(self, source: str, path: str) -> None:
        target = self.bucket.blob(self.prefix + path)
        token = None
        while True:  # a rewrite of a large object may take several calls
            token, _done, _total = self._call(
                target.rewrite, self.bucket.blob(self.prefix + source), token=token
            )
            if token is None:
                return

    def _get(self, path: str) -> bytes:
        return self._call(self.bucket.blob(self.prefix + path).download_as_bytes)

    def _head(self, path: str) -> dict[str, str]:
        blob = self._call(self.bucket.get_blob, self.prefix + path)
        return (blob.metadata or {}) if blob is not None else {}

    def _list(self, under: str) -> Iterator[Listed]:
        blobs = self._call(self.bucket.list_blobs, prefix=self.prefix + under)
        for blob in self._call(list, blobs):
            yield blob.name.removeprefix(self.prefix), blob.size, blob.metadata or {}


def _gcs_message(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    if str(code) in _GCS_CODES:
        return f"{code} {_GCS_CODES[str(code)]}"
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{code} {message}" if code else message.splitlines()[0]


_GCS_CODES = {"403": "access denied", "404": "no such bucket", "401": "credentials refused"}


def _reactor() -> Any:
    # Imported when used: importing it installs a reactor, which is Scrapy's to choose.
    from twisted.internet import reactor

    return reactor


def state_dir(uri: StoreUri, endpoint: str, root: str = "") -> Path:
    """The local state of the store at ``uri`` on ``endpoint``: one folder per store."""
    base = Path(root) if root else _cache_home() / "igimages" / "stores"
    digest = hashlib.sha256(f"{endpoint} {uri.identity}".encode()).hexdigest()[:12]
    return base / f"{uri.scheme}-{uri.bucket}-{digest}"


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def _metadata(image: StoredImage) -> dict[str, str]:
    """What an object carries about its content; a server-side copy keeps it."""
    return {f"{_META_PREFIX}{name}": str(getattr(image, name)) for name in _CONTENT_FIELDS}


def _from_metadata(path: str, size: int, metadata: dict[str, str]) -> StoredImage | None:
    """The index record of the object at ``path``; None for objects not ours."""
    post, _, name = path.rpartition("/")
    position, _, rest = name.partition("_")
    key = rest.rpartition(".")[0]
    content = {name: metadata.get(f"{_META_PREFIX}{name}") for name in _CONTENT_FIELDS}
    if None in content.values() or not position.isdigit() or not key:
        return None
    return StoredImage(
        post=post,
        position=int(position),
        key=key,
        path=path,
        sha256=str(content["sha256"]),
        bytes=size,
        width=int(content["width"] or 0),
        height=int(content["height"] or 0),
        format=str(content["format"]),
    )


def _as_dict(image: StoredImage) -> dict[str, Any]:
    return {name: getattr(image, name) for name in FIELDS}


def _is_image(path: str) -> bool:
    return "/" in path and not path.startswith(f"{INDEX_DIR}/")
