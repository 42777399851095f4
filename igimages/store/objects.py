"""Object calls to one bucket, whatever the service: a put, a server-side copy, a get.

``ObstoreBucket`` makes them with obstore (Rust's ``object_store``): the
HTTP, the signing and the TLS run outside the GIL on obstore's own threads,
and an ``*_async`` call is an awaitable of the running asyncio loop, so an
upload costs the crawl's interpreter little more than the call itself.
``GCSBucket`` makes them with google-cloud-storage in worker threads: GCS
is written through its JSON API, which obstore does not speak (it writes
through the XML one).

Every call raises ``StoreError`` in one line that names the store and never
a credential.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from igimages.store.index import StoreError

_T = TypeVar("_T")

#: One object as a listing gives it: path under the bucket, size, metadata if
#: the listing carries it (GCS does, S3 and Azure do not).
Listed = tuple[str, int, dict[str, str] | None]

#: What a status code means for a bucket, as a user reads it.
STATUS_MEANINGS = {
    "301": "the bucket is in another region: set AWS_REGION_NAME",
    "401": "credentials refused",
    "403": "access denied",
    "404": "no such bucket",
}


class Bucket(Protocol):
    """The object calls a bucket store makes; the keys are whole (prefix included)."""

    uri: str

    def put(self, key: str, data: bytes, metadata: dict[str, str], content_type: str) -> None: ...

    async def put_async(
        self, key: str, data: bytes, metadata: dict[str, str], content_type: str
    ) -> None: ...

    async def copy_async(self, source: str, key: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def metadata(self, key: str) -> dict[str, str]: ...

    def list(self, prefix: str) -> Iterator[Listed]: ...

    def close(self) -> None: ...


class ObstoreBucket:
    """A bucket through an obstore store (``S3Store``, ``AzureStore``...)."""

    def __init__(self, store: Any, uri: str) -> None:
        self.store = store
        self.uri = uri

    def put(self, key: str, data: bytes, metadata: dict[str, str], content_type: str) -> None:
        import obstore

        with self._errors():
            obstore.put(self.store, key, data, attributes=_attributes(metadata, content_type))

    async def put_async(
        self, key: str, data: bytes, metadata: dict[str, str], content_type: str
    ) -> None:
        import obstore

        attributes = _attributes(metadata, content_type)
        with self._errors():
            await obstore.put_async(self.store, key, data, attributes=attributes)

    async def copy_async(self, source: str, key: str) -> None:
        import obstore

        with self._errors():
            await obstore.copy_async(self.store, source, key)

    def get(self, key: str) -> bytes:
        import obstore

        with self._errors():
            return bytes(obstore.get(self.store, key).bytes())

    def metadata(self, key: str) -> dict[str, str]:
        import obstore

        with self._errors():
            attributes = obstore.get(self.store, key, options={"head": True}).attributes
        return {name: str(value) for name, value in attributes.items()}

    def list(self, prefix: str) -> Iterator[Listed]:
        import obstore

        with self._errors():
            for batch in obstore.list(self.store, prefix):
                for entry in batch:
                    yield entry["path"], entry["size"], None

    def close(self) -> None:
        pass

    def _errors(self) -> _OneLine:
        return _OneLine(self.uri, _obstore_message)


class GCSBucket:
    """A GCS bucket through google-cloud-storage; async calls run in ``threads`` threads."""

    def __init__(self, bucket: Any, uri: str, threads: int, policy: str | None) -> None:
        self.bucket = bucket
        self.uri = uri
        self.policy = policy
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="igimages-gcs")

    def put(self, key: str, data: bytes, metadata: dict[str, str], content_type: str) -> None:
        blob = self.bucket.blob(key)
        blob.metadata = metadata
        blob.cache_control = _cache_control(content_type)
        with self._errors():
            blob.upload_from_string(
                data,
                content_type=content_type or "application/octet-stream",
                predefined_acl=self.policy,
            )

    async def put_async(
        self, key: str, data: bytes, metadata: dict[str, str], content_type: str
    ) -> None:
        await self._in_thread(self.put, key, data, metadata, content_type)

    async def copy_async(self, source: str, key: str) -> None:
        await self._in_thread(self._copy, source, key)

    def get(self, key: str) -> bytes:
        with self._errors():
            return self.bucket.blob(key).download_as_bytes()

    def metadata(self, key: str) -> dict[str, str]:
        with self._errors():
            blob = self.bucket.get_blob(key)
        return (blob.metadata or {}) if blob is not None else {}

    def list(self, prefix: str) -> Iterator[Listed]:
        with self._errors():
            blobs = list(self.bucket.list_blobs(prefix=prefix))
        for blob in blobs:
            yield blob.name, blob.size, blob.metadata or {}

    def close(self) -> None:
        self._threads.shutdown(wait=True)

    def _copy(self, source: str, key: str) -> None:
        target = self.bucket.blob(key)
        token = None
        with self._errors():
            while True:  # a rewrite of a large object may take several calls
                token, _done, _total = target.rewrite(self.bucket.blob(source), token=token)
                if token is None:
                    return

    async def _in_thread(self, call: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, call, *args)

    def _errors(self) -> _OneLine:
        return _OneLine(self.uri, _gcs_message)


class _OneLine:
    """Turns any error of a call into ``StoreError("<uri>: <one line>")``."""

    def __init__(self, uri: str, message: Callable[[BaseException], str]) -> None:
        self.uri = uri
        self.message = message

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        if exc is None or isinstance(exc, (StoreError, asyncio.CancelledError, GeneratorExit)):
            return
        # A panic in the client's Rust code reaches Python as a BaseException.
        if isinstance(exc, Exception) or type(exc).__name__ == "PanicException":
            raise StoreError(f"{self.uri}: {self.message(exc)}") from None


def _cache_control(content_type: str) -> str | None:
    """How long a CDN may keep an object: images never change under their name (two
    days, as Scrapy's file stores say); the feeds and the index's segments do."""
    return "max-age=172800" if content_type.startswith("image/") else None


def _attributes(metadata: dict[str, str], content_type: str) -> dict[str, str]:
    attributes = {**metadata, "Content-Type": content_type} if content_type else dict(metadata)
    if cache_control := _cache_control(content_type):
        attributes["Cache-Control"] = cache_control
    return attributes


_STATUS = re.compile(r"status code: (\d{3})[^:]*: ?(?:.*?<Code>([^<]+)</Code>)?", re.DOTALL)
_UNREACHABLE = ("error sending request", "Connection refused", "dns error", "timed out")


def _obstore_message(exc: BaseException) -> str:
    text = str(exc)
    if match := _STATUS.search(text):
        code, detail = match[1], match[2] or ""
        meaning = STATUS_MEANINGS.get(code, detail or "refused")
        return f"{code} {meaning}" + (f" ({detail})" if detail and detail != meaning else "")
    if any(sign in text for sign in _UNREACHABLE):
        return "Could not connect to the endpoint"
    return text.splitlines()[0] if text else type(exc).__name__


def _gcs_message(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if str(code) in STATUS_MEANINGS and str(code) != "301":
        return f"{code} {STATUS_MEANINGS[str(code)]}"
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{code} {message}" if code else message.splitlines()[0]
