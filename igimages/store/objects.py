"""Object calls to one bucket, whatever the service: a put, a server-side copy, a get.

The crawl's own calls, an upload or a server-side copy per image, are the
``*_async`` ones: requests on the crawl's loop (``igimages.store.loophttp``),
the cheapest way measured here to send them. The rest (a probe, a feed,
reads, listings) are few and go through each service's client library.

``ObstoreBucket`` makes them all with obstore (Rust's ``object_store``): the
HTTP, the signing and the TLS run on obstore's own threads. ``S3Bucket`` is
one whose uploads and copies go on the loop, signed with the sha256 the
crawl already holds. ``GCSBucket`` speaks GCS's JSON API on the loop, and
google-cloud-storage for the rest: obstore writes through the XML API, which
no GCS server that runs here accepts.

Every call raises ``StoreError`` in one line that names the store and never
a credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import ssl
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from igimages.store.index import StoreError
from igimages.store.loophttp import Answer, LoopHTTP
from igimages.store.sigv4 import EMPTY_SHA256, SigV4, object_path

GCS_ATTEMPTS = 4  # tries of an upload or a copy, as google-cloud-storage's retries

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
        self, key: str, data: bytes, metadata: dict[str, str], content_type: str, sha256: str = ""
    ) -> None:
        """Upload ``data``, whose hex sha256 is ``sha256`` when the caller knows it."""

    async def copy_async(self, source: str, key: str) -> None: ...

    async def disconnect(self) -> None:
        """Close, on their loop, the connections the async calls opened."""

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
        self, key: str, data: bytes, metadata: dict[str, str], content_type: str, sha256: str = ""
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

    async def disconnect(self) -> None:
        pass  # obstore's connections are its own

    def close(self) -> None:
        pass

    def _errors(self) -> _OneLine:
        return _OneLine(self.uri, _obstore_message)


class S3Bucket(ObstoreBucket):
    """An S3 bucket through obstore, whose uploads and copies go on the loop.

    ``endpoint`` is the service's URL, objects path-style under it (as obstore
    reaches them); ``headers`` go with every upload and copy (``x-amz-acl``).
    """

    def __init__(
        self, store: Any, uri: str, http: LoopHTTP, signer: SigV4, bucket: str,
        endpoint: str, headers: dict[str, str],
    ) -> None:  # fmt: skip
        super().__init__(store, uri)
        self.http = http
        self.signer = signer
        self.bucket = bucket
        self.base_path = urlsplit(endpoint).path.rstrip("/")
        self.headers = headers

    async def put_async(
        self, key: str, data: bytes, metadata: dict[str, str], content_type: str, sha256: str = ""
    ) -> None:
        headers = {**self.headers, **{f"x-amz-meta-{n.lower()}": v for n, v in metadata.items()}}
        if content_type:
            headers["content-type"] = content_type
        if cache_control := _cache_control(content_type):
            headers["cache-control"] = cache_control
        await self._send(key, data, headers, sha256 or hashlib.sha256(data).hexdigest())

    async def copy_async(self, source: str, key: str) -> None:
        headers = {**self.headers, "x-amz-copy-source": object_path(self.bucket, source)}
        answer = await self._send(key, b"", headers, EMPTY_SHA256)
        if b"<Error>" in answer.body:  # a copy may fail after its 200 has begun
            raise StoreError(f"{self.uri}: {_s3_refusal(500, answer.body)}")

    async def disconnect(self) -> None:
        await self.http.close()

    async def _send(self, key: str, body: bytes, headers: dict[str, str], sha256: str) -> Answer:
        path = self.base_path + object_path(self.bucket, key)

        async def signed() -> dict[str, str]:
            await self.signer.refresh()
            return self.signer.sign("PUT", self.http.authority, path, headers, sha256)

        with self._errors():
            answer = await self.http.send("PUT", path, body, signed)
        if answer.status >= 300:
            raise StoreError(f"{self.uri}: {_s3_refusal(answer.status, answer.body)}")
        return answer


class GCSBucket:
    """A GCS bucket through google-cloud-storage, whose uploads and copies go on the loop.

    The crawl's uploads and server-side copies are requests of GCS's JSON API
    (the one google-cloud-storage speaks) sent on the running loop: the
    client's own calls, in threads, cost the crawl three times a folder's CPU
    per image. The rest (a feed, a probe, reads, listings) goes through
    google-cloud-storage.
    """

    def __init__(
        self, bucket: Any, uri: str, threads: int, policy: str | None, tls: ssl.SSLContext | None
    ) -> None:
        self.bucket = bucket
        self.uri = uri
        self.policy = policy
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="igimages-gcs")
        base_url = bucket.client._connection.API_BASE_URL
        self.http = LoopHTTP(base_url, tls, attempts=GCS_ATTEMPTS)
        base_path = urlsplit(base_url).path.rstrip("/")
        self._api = f"{base_path}/storage/v1/b/{quote(bucket.name, safe='')}/o"
        self._upload = f"{base_path}/upload/storage/v1/b/{quote(bucket.name, safe='')}/o"
        self._credentials = bucket.client._credentials

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
        self, key: str, data: bytes, metadata: dict[str, str], content_type: str, sha256: str = ""
    ) -> None:
        resource = {"name": key, "metadata": metadata}
        resource["contentType"] = content_type or "application/octet-stream"
        if cache_control := _cache_control(content_type):
            resource["cacheControl"] = cache_control
        boundary = f"igimages-{uuid.uuid4().hex}".encode()
        body = b"".join([
            b"--", boundary, b"\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n",
            json.dumps(resource).encode(), b"\r\n--", boundary,
            b"\r\nContent-Type: ", resource["contentType"].encode(), b"\r\n\r\n",
            data, b"\r\n--", boundary, b"--\r\n",
        ])  # fmt: skip
        params = {"uploadType": "multipart", **self._acl()}
        content = f"multipart/related; boundary={boundary.decode()}"
        await self._request(self._upload, params, body, content)

    async def copy_async(self, source: str, key: str) -> None:
        url = f"{self._api}/{quote(source, safe='')}/rewriteTo"
        url += f"/b/{quote(self.bucket.name, safe='')}/o/{quote(key, safe='')}"
        params = self._acl("destinationPredefinedAcl")
        while True:  # a rewrite of a large object may take several calls
            answer = await self._request(url, params, b"", "application/json")
            if answer.get("done", True):
                return
            params = {**params, "rewriteToken": answer["rewriteToken"]}

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

    async def disconnect(self) -> None:
        await self.http.close()

    def close(self) -> None:
        self._threads.shutdown(wait=True)

    def _acl(self, name: str = "predefinedAcl") -> dict[str, str]:
        return {name: self.policy} if self.policy else {}

    async def _request(self, path: str, params: dict[str, str], body: bytes, content: str) -> Any:
        """POST, on the loop; a refusal that may pass (429, 5xx, no answer) is tried again."""
        from google.api_core.exceptions import from_http_status

        async def headers() -> dict[str, str]:
            return {"content-type": content, **await self._authorization()}

        with self._errors():
            answer = await self.http.send("POST", f"{path}?{urlencode(params)}", body, headers)
            if answer.status >= 300:
                raise from_http_status(answer.status, _gcs_reason(answer.body))
            return json.loads(answer.body or b"{}")

    async def _authorization(self) -> dict[str, str]:
        """The credentials' header, refreshed in a thread when the token has expired."""
        if not self._credentials.valid:
            from google.auth.transport.requests import Request

            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._threads, self._credentials.refresh, Request())
        headers: dict[str, str] = {}
        self._credentials.apply(headers)
        return headers

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
        return _refused(match[1], match[2] or "")
    if any(sign in text for sign in _UNREACHABLE):
        return "Could not connect to the endpoint"
    return text.splitlines()[0] if text else type(exc).__name__


def _s3_refusal(status: int, body: bytes) -> str:
    """A refused S3 request in one line: its status and the error's ``<Code>``."""
    detail = match[1] if (match := re.search(rb"<Code>([^<]+)</Code>", body)) else b""
    return _refused(str(status), detail.decode("utf-8", "replace"))


def _refused(code: str, detail: str) -> str:
    meaning = STATUS_MEANINGS.get(code, detail or "refused")
    return f"{code} {meaning}" + (f" ({detail})" if detail and detail != meaning else "")


def _gcs_reason(answer: bytes) -> str:
    """The message of a JSON API error's body, or its first line."""
    try:
        return str(json.loads(answer)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return answer.decode("utf-8", "replace").strip().splitlines()[0] if answer.strip() else ""


def _gcs_message(exc: BaseException) -> str:
    if (cause := getattr(exc, "cause", None)) is not None:  # retried in vain: the last try's
        return _gcs_message(cause)
    code = getattr(exc, "code", None)
    if str(code) in STATUS_MEANINGS and str(code) != "301":
        return f"{code} {STATUS_MEANINGS[str(code)]}"
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{code} {message}" if code else message.splitlines()[0]
