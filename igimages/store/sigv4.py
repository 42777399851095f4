"""AWS Signature Version 4 for S3 requests whose body's sha256 is already known.

The crawl hashes every image anyway, so its uploads are signed with that hash
over HTTP and HTTPS alike, at no cost: botocore's signer would spend a quarter
of a millisecond per request preparing the same strings. Credentials are
botocore's (``Credentials``; a role's are refreshed by botocore, in a thread).
The algorithm: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4.html
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class SigV4:
    """Signs requests to one region's S3 with a set of botocore credentials."""

    def __init__(self, credentials: Any, region: str, service: str = "s3") -> None:
        self.credentials = credentials
        self.region = region
        self.service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    async def refresh(self) -> None:
        """Refreshes expiring credentials (a role's, fetched over HTTP) in a thread,
        so that the loop does not wait on botocore's request for them."""
        needed = getattr(self.credentials, "refresh_needed", None)
        if needed is not None and needed():
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.credentials.get_frozen_credentials)

    def sign(
        self, method: str, host: str, path: str, headers: dict[str, str], payload_sha256: str
    ) -> dict[str, str]:
        """``headers`` (lower-case names) with the date, the payload's hash, the token
        and the authorization added; ``path`` as sent, already percent-encoded."""
        frozen = self.credentials.get_frozen_credentials()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        signed = {**headers, "host": host, "x-amz-content-sha256": payload_sha256}
        signed["x-amz-date"] = stamp
        if frozen.token:
            signed["x-amz-security-token"] = frozen.token
        names = sorted(signed)
        canonical = "\n".join([
            method, path, "", *(f"{name}:{' '.join(signed[name].split())}" for name in names),
            "", ";".join(names), payload_sha256,
        ])  # fmt: skip
        scope = f"{stamp[:8]}/{self.region}/{self.service}/aws4_request"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        text = f"{ALGORITHM}\n{stamp}\n{scope}\n{digest}"
        key = self._signing_key(frozen.secret_key, stamp[:8])
        signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        signed["authorization"] = (
            f"{ALGORITHM} Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return signed

    def _signing_key(self, secret: str, day: str) -> bytes:
        """The day's key, derived once a day (and again when the secret changes)."""
        if (key := self._keys.get((secret, day))) is None:
            key = _hmac(f"AWS4{secret}".encode(), day)
            for part in (self.region, self.service, "aws4_request"):
                key = _hmac(key, part)
            self._keys = {(secret, day): key}
        return key


def object_path(bucket: str, key: str) -> str:
    """The path-style path of an object, percent-encoded as S3 signs it (``/`` kept)."""
    return f"/{quote(bucket, safe='')}/{quote(key, safe='/~')}"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()
