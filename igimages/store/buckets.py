"""Images straight into a bucket: S3 (and S3-compatible services), GCS or Azure Blob Storage.

A bucket store keeps the folder's promises with object storage:

* an object appears whole or not at all (a PUT is atomic), under the same
  layout as on disk, with its sha256, dimensions and format as metadata;
* identical bytes are uploaded once; other places get a server-side copy
  (S3 ``CopyObject``, a GCS rewrite, Azure's Copy Blob), which moves no bytes
  through this machine;
* the index lives in a local state folder (``IGIMAGES_STATE_DIR``) for
  look-ups without a request, and is mirrored into the bucket as gzipped
  segments (``.igimages/index/*.jsonl.gz``): a run elsewhere, or with its
  state deleted, reads the segments, never an image, and on a new state also
  lists the objects to drop what is gone and adopt what a killed run stored
  but did not get to record (from the objects' metadata);
* uploads and copies are awaited on the crawl's event loop, at most
  ``IGIMAGES_STORE_UPLOADS`` at once; a post is done only when its uploads
  are, so a bucket slower than the CDN holds posts in the pipeline and the
  spider waits (backpressure).

The object calls themselves are ``igimages.store.objects``'; each service's
class here says how to reach its bucket from Scrapy's settings.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from scrapy.crawler import Crawler
from scrapy.settings import BaseSettings

from igimages.store import StoreUri
from igimages.store.index import FIELDS, INDEX_DIR, INDEX_NAME, ImageIndex, StoredImage, StoreError
from igimages.store.loophttp import LoopHTTP
from igimages.store.objects import Bucket, GCSBucket, ObstoreBucket, S3Bucket
from igimages.store.sigv4 import SigV4

SEGMENTS = f"{INDEX_DIR}/index/"
PROBE = f"{INDEX_DIR}/writable"
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
_CONTENT_FIELDS = ("sha256", "width", "height", "format")


@dataclass(frozen=True, slots=True)
class _Segment:
    name: str
    last_rowid: int
    key: str
    data: bytes


class BucketStore:
    """Everything but reaching the bucket, which each service's subclass does (``connect``)."""

    #: How the names of an object's metadata begin (``x-amz-meta-igimages-sha256``...).
    metadata_prefix: ClassVar[str] = "igimages-"

    def __init__(self, uri: StoreUri, settings: BaseSettings) -> None:
        self.uri = uri.identity
        self.prefix = uri.prefix
        self.sync_interval = settings.getfloat("IGIMAGES_INDEX_SYNC_INTERVAL")
        self.bucket = self.open_bucket(uri, settings)
        self._uploads = asyncio.Semaphore(max(1, settings.getint("IGIMAGES_STORE_UPLOADS")))
        state = self.state_folder(uri, settings)
        self.index = ImageIndex.open(
            state / INDEX_NAME,
            lambda image: True,
            self.uri,
            rebuilt="from the bucket's mirror of the index and a listing of its objects",
        )
        self._last_sync = time.monotonic()
        self._syncing: asyncio.Future[None] | None = None
        try:
            self._put(PROBE, b"", {}, "text/plain")  # refused writes show now, not mid-crawl
            self._sync_now()  # what a killed run here recorded but did not mirror
            self._read_segments()
            if self.index.get_state("reconciled") != "yes":  # a new state
                self._reconcile()
                self.index.set_state("reconciled", "yes")
            self.index.set_state("synced", str(self.index.last_rowid()))
        except BaseException:
            self.bucket.close()
            self.index.close()
            raise

    @classmethod
    def from_crawler(cls, crawler: Crawler, uri: StoreUri) -> Self:
        return cls(uri, crawler.settings)

    @classmethod
    def open_bucket(cls, uri: StoreUri, settings: BaseSettings) -> Bucket:
        """The bucket of ``uri`` (images, or a feed), or StoreError in one line that names it."""
        try:
            return cls.connect(uri, settings)
        except Exception as exc:  # no credentials found, a setting the client refuses...
            raise StoreError(f"{str(uri).rstrip('/')}: {str(exc).splitlines()[0]}") from None

    @classmethod
    def connect(cls, uri: StoreUri, settings: BaseSettings) -> Bucket:
        """The bucket of ``uri``, reached as ``settings`` say."""
        raise NotImplementedError

    @classmethod
    def endpoint_of(cls, settings: BaseSettings) -> str:
        """The service the bucket is on, which names its local state with it."""
        raise NotImplementedError

    @classmethod
    def state_folder(cls, uri: StoreUri, settings: BaseSettings) -> Path:
        root = settings.get("IGIMAGES_STATE_DIR") or ""
        return state_dir(uri, cls.endpoint_of(settings), root)

    # What the pipeline calls

    def find_unindexed(self, post: str, prefix: str) -> str | None:
        return None  # a new state adopts unrecorded objects when it opens (_reconcile)

    def read(self, path: str) -> bytes:
        return self.bucket.get(self.prefix + path)

    async def save(self, image: StoredImage, data: bytes) -> None:
        content_type = CONTENT_TYPES.get(image.format, "application/octet-stream")
        async with self._uploads:
            metadata = _metadata(image, self.metadata_prefix)
            await self.bucket.put_async(
                self.prefix + image.path, data, metadata, content_type, image.sha256
            )
        self.index.record(image)
        self._sync_soon()

    async def place(self, source: StoredImage, image: StoredImage) -> None:
        async with self._uploads:
            await self.bucket.copy_async(self.prefix + source.path, self.prefix + image.path)
        self.index.record(image)
        self._sync_soon()

    async def close(self) -> None:
        try:
            if self._syncing is not None:  # let a periodic mirror finish first
                await asyncio.wait([self._syncing])
            if (segment := self._next_segment()) is not None:
                await self._mirror(segment)
            await self.bucket.disconnect()
        finally:
            self.bucket.close()
            self.index.close()

    # The index's mirror in the bucket. SQLite is read and written on the
    # event loop's thread only; a segment is uploaded as an image is.

    def _sync_soon(self) -> None:
        if self._syncing is not None or time.monotonic() - self._last_sync < self.sync_interval:
            return
        self._last_sync = time.monotonic()
        if (segment := self._next_segment()) is None:
            return
        self._syncing = asyncio.ensure_future(self._mirror(segment))
        self._syncing.add_done_callback(self._sync_finished)

    def _sync_finished(self, syncing: asyncio.Future[None]) -> None:
        self._syncing = None
        if not syncing.cancelled():
            syncing.exception()  # tried again at the next interval and at close

    async def _mirror(self, segment: _Segment) -> None:
        await self.bucket.put_async(self.prefix + segment.key, segment.data, {}, "")
        self._mirrored(segment)

    def _sync_now(self) -> None:
        if (segment := self._next_segment()) is not None:
            self._put(segment.key, segment.data, {}, "")
            self._mirrored(segment)

    def _next_segment(self) -> _Segment | None:
        """The records made since the last segment, as the next segment to upload."""
        last, images = self.index.since(int(self.index.get_state("synced", "0")))
        if not images:
            return None
        lines = "".join(json.dumps(_as_dict(image)) + "\n" for image in images)
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"
        return _Segment(name, last, f"{SEGMENTS}{name}.jsonl.gz", gzip.compress(lines.encode(), 6))

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
            lines = gzip.decompress(self.read(path)).decode().splitlines()
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
            if meta is None:  # S3 and Azure listings carry no metadata: a HEAD each
                meta = self.bucket.metadata(self.prefix + path)
            if (image := _from_metadata(path, size, meta, self.metadata_prefix)) is not None:
                adopted.append(image)
        self.index.record_all(adopted)

    def _put(self, path: str, data: bytes, metadata: dict[str, str], content_type: str) -> None:
        self.bucket.put(self.prefix + path, data, metadata, content_type)

    def _list(self, under: str) -> Any:
        for key, size, meta in self.bucket.list(self.prefix + under):
            yield key.removeprefix(self.prefix), size, meta


class S3Store(BucketStore):
    """``s3://bucket/prefix/``, on AWS or any S3-compatible service (``AWS_ENDPOINT_URL``).

    Credentials: Scrapy's ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
    ``AWS_SESSION_TOKEN``, else wherever botocore finds them (the environment,
    an AWS profile, a web identity, an instance or container role).
    ``AWS_VERIFY``: False, or the file of the CAs to trust, as botocore's; unset,
    botocore's ``ca_bundle`` (``AWS_CA_BUNDLE``, or a profile's).
    """

    @classmethod
    def connect(cls, uri: StoreUri, settings: BaseSettings) -> Bucket:
        from obstore.auth.boto3 import Boto3CredentialProvider
        from obstore.store import S3Store as Client

        endpoint = _endpoint(settings, "AWS_ENDPOINT_URL")
        session = _aws_session(settings)
        region = (
            settings.get("AWS_REGION_NAME") or session.get_config_variable("region") or "us-east-1"
        )
        config: dict[str, Any] = {"region": region}
        if endpoint:
            config.update(endpoint=endpoint, virtual_hosted_style_request=False)
        trusted = _trusted_by_aws(settings, session)
        headers = {"x-amz-acl": acl} if (acl := settings.get("FILES_STORE_S3_ACL")) else {}
        client = Client(
            uri.bucket,
            config=config,
            client_options=_client_options(endpoint, trusted, headers),
            retry_config=_retries(settings),
            credential_provider=Boto3CredentialProvider(session),
        )
        service = endpoint or f"https://s3.{region}.amazonaws.com"
        http = LoopHTTP(service, _tls(trusted), attempts=_attempts(settings))
        signer = SigV4(session.get_credentials(), region)
        return S3Bucket(client, uri.identity, http, signer, uri.bucket, service, headers)

    @classmethod
    def endpoint_of(cls, settings: BaseSettings) -> str:
        return settings.get("AWS_ENDPOINT_URL") or "aws"


class AzureStore(BucketStore):
    """``az://container/prefix/`` on Azure Blob Storage (``AZURE_STORAGE_*``).

    ``AZURE_STORAGE_ACCOUNT_NAME`` and ``AZURE_STORAGE_ACCOUNT_KEY`` (settings
    or environment), or any credential obstore finds (a SAS, a managed
    identity, the Azure CLI); ``AZURE_STORAGE_ENDPOINT`` for an emulator or a
    private endpoint (``http://host:port/<account>``).
    """

    metadata_prefix = "igimages_"  # Azure's metadata names are C# identifiers: no "-"

    @classmethod
    def connect(cls, uri: StoreUri, settings: BaseSettings) -> Bucket:
        from obstore.store import AzureStore as Client

        endpoint = _endpoint(settings, "AZURE_STORAGE_ENDPOINT")
        config = _given(
            account_name=settings.get("AZURE_STORAGE_ACCOUNT_NAME"),
            account_key=settings.get("AZURE_STORAGE_ACCOUNT_KEY"),
            endpoint=endpoint,
        )
        client = Client(
            uri.bucket,
            config=config,
            client_options=_client_options(endpoint, None, {}),
            retry_config=_retries(settings),
        )
        return ObstoreBucket(client, uri.identity)

    @classmethod
    def endpoint_of(cls, settings: BaseSettings) -> str:
        return settings.get("AZURE_STORAGE_ENDPOINT") or "azure"


class GCSStore(BucketStore):
    """``gs://bucket/prefix/`` (``GCS_PROJECT_ID``; ``STORAGE_EMULATOR_HOST`` for an emulator)."""

    @classmethod
    def connect(cls, uri: StoreUri, settings: BaseSettings) -> Bucket:
        from google.cloud import storage

        bucket = storage.Client(project=settings.get("GCS_PROJECT_ID")).bucket(uri.bucket)
        threads = max(1, settings.getint("IGIMAGES_STORE_UPLOADS"))
        policy = settings.get("FILES_STORE_GCS_ACL") or None
        return GCSBucket(bucket, uri.identity, threads, policy, _tls(_trusted_by_requests()))

    @classmethod
    def endpoint_of(cls, settings: BaseSettings) -> str:
        return os.environ.get("STORAGE_EMULATOR_HOST", "gcs")


def _given(**config: str | None) -> dict[str, Any]:
    return {name: value for name, value in config.items() if value}


def _endpoint(settings: BaseSettings, name: str) -> str:
    """The setting ``name``, an http(s) URL or nothing: the client cannot use anything else."""
    endpoint = settings.get(name) or ""
    parts = urlsplit(endpoint)
    valid = parts.scheme in ("http", "https") and parts.hostname and endpoint.isprintable()
    if endpoint and (not valid or " " in endpoint):
        raise StoreError(f"{name}={endpoint}: not an http(s) URL")
    return endpoint


def _client_options(
    endpoint: str, trusted: str | bool | None, headers: dict[str, str]
) -> dict[str, Any]:
    """HTTP for an ``http://`` endpoint; the certificates ``trusted`` (``_trusted_by_aws``)."""
    options: dict[str, Any] = {"allow_http": endpoint.startswith("http://")}
    if trusted is False:
        options["allow_invalid_certificates"] = True
    elif trusted:
        options["root_certificate"] = trusted
    if headers:
        options["default_headers"] = headers
    return options


def _attempts(settings: BaseSettings) -> int:
    """As botocore counts them: ``AWS_MAX_ATTEMPTS`` tries in all (setting or environment)."""
    return settings.getint("AWS_MAX_ATTEMPTS") or int(os.environ.get("AWS_MAX_ATTEMPTS") or 4)


def _retries(settings: BaseSettings) -> dict[str, Any]:
    return {"max_retries": max(0, _attempts(settings) - 1), "retry_timeout": timedelta(seconds=60)}


def _tls(trusted: str | bool | None) -> ssl.SSLContext | None:
    """A client's TLS: ``trusted`` the PEM text of the CAs, False for any certificate;
    None for the system's CAs, which the client loads if it speaks https (loading
    them costs tens of milliseconds)."""
    if trusted is None:
        return None
    context = ssl.create_default_context(cadata=trusted or None)
    if trusted is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _trusted_by_aws(settings: BaseSettings, session: Any) -> str | bool | None:
    """The certificates S3 may show, as botocore decides: ``AWS_VERIFY`` False (any),
    or the CA file it names, or else its ``ca_bundle`` (``AWS_CA_BUNDLE``, a profile's);
    None: the system's CAs. Read once, for both of the store's clients."""
    verify = settings.get("AWS_VERIFY")
    if str(verify).lower() in ("false", "0"):
        return False
    if isinstance(verify, str) and verify.lower() not in ("", "true", "1"):
        return _ca_text("AWS_VERIFY", verify)
    if verify in (None, "") and (bundle := session.get_config_variable("ca_bundle")):
        return _ca_text("AWS_CA_BUNDLE", bundle)
    return None


def _trusted_by_requests() -> str | None:
    """The CAs google-cloud-storage trusts, as ``requests`` reads them from the
    environment (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``); None: the system's."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if path := os.environ.get(name):
            return _ca_text(name, path)
    return None


def _ca_text(name: str, path: str) -> str:
    try:
        return Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise StoreError(f"{name}={path}: cannot read it ({reason})") from None


def _aws_session(settings: BaseSettings) -> Any:
    """A botocore session holding the credentials to sign with: Scrapy's settings', else
    the first botocore finds (the environment, a profile, a web identity, a role)."""
    import botocore.session

    session = botocore.session.get_session()
    if key := settings.get("AWS_ACCESS_KEY_ID"):
        if not (secret := settings.get("AWS_SECRET_ACCESS_KEY")):
            raise StoreError("AWS_ACCESS_KEY_ID is set, AWS_SECRET_ACCESS_KEY is not")
        session.set_credentials(key, secret, settings.get("AWS_SESSION_TOKEN"))
    if session.get_credentials() is None:
        raise StoreError("no AWS credentials: set AWS_ACCESS_KEY_ID, a profile or a role")
    return session


def state_dir(uri: StoreUri, endpoint: str, root: str = "") -> Path:
    """The local state of the store at ``uri`` on ``endpoint``: one folder per store."""
    base = Path(root) if root else _cache_home() / "igimages" / "stores"
    digest = hashlib.sha256(f"{endpoint} {uri.identity}".encode()).hexdigest()[:12]
    return base / f"{uri.scheme}-{uri.bucket}-{digest}"


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def _metadata(image: StoredImage, prefix: str) -> dict[str, str]:
    """What an object carries about its content; a server-side copy keeps it. The
    perceptual hash is left out when unknown (objects of earlier versions lack it)."""
    metadata = {f"{prefix}{name}": str(getattr(image, name)) for name in _CONTENT_FIELDS}
    if image.phash:
        metadata[f"{prefix}phash"] = image.phash
    return metadata


def _from_metadata(
    path: str, size: int, metadata: dict[str, str], prefix: str
) -> StoredImage | None:
    """The index record of the object at ``path``; None for objects not ours."""
    post, _, name = path.rpartition("/")
    position, _, rest = name.partition("_")
    key = rest.rpartition(".")[0]
    content = {name: metadata.get(f"{prefix}{name}") for name in _CONTENT_FIELDS}
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
        phash=metadata.get(f"{prefix}phash", ""),
    )


def _as_dict(image: StoredImage) -> dict[str, Any]:
    return {name: getattr(image, name) for name in FIELDS}


def _is_image(path: str) -> bool:
    return "/" in path and not path.startswith(f"{INDEX_DIR}/")
