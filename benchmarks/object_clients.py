"""Client CPU per PUT and per server-side copy, for each object-store client.

Each client puts the same objects (``--size`` bytes, ``--objects`` of them,
``--in-flight`` at once) into a bucket on a loopback server, then copies each
one server-side, in this one process: the CPU measured is the client's alone
(user + system, all its threads), the server's is another process's. Rounds
interleave the clients, so a drift of the machine's speed hits them alike.

    .venv/bin/python benchmarks/object_clients.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bucket import AZURITE_ACCOUNT, AZURITE_KEY, BUCKET, SERVICES, Service

Batch = Callable[[list[str], bytes], None]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def threaded(put: Callable[[str, bytes], None], copy: Callable[[str, str], None], threads: int):
    def puts(keys: list[str], data: bytes) -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda key: put(key, data), keys))

    def copies(keys: list[str], _data: bytes) -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda key: copy(key, f"{key}.copy"), keys))

    return puts, copies


def botocore_s3(service: Service, threads: int) -> tuple[Batch, Batch]:
    import botocore.config
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=service.endpoint, aws_access_key_id="bench",
        aws_secret_access_key="bench", region_name="us-east-1",
        config=botocore.config.Config(max_pool_connections=threads),
    )  # fmt: skip
    meta = {"igimages_sha256": "0" * 64}
    return threaded(
        lambda key, data: client.put_object(
            Bucket=BUCKET, Key=key, Body=data, Metadata=meta, ContentType="image/jpeg"
        ),
        lambda key, to: client.copy_object(
            Bucket=BUCKET, Key=to, CopySource={"Bucket": BUCKET, "Key": key}
        ),
        threads,
    )


def gcs_python(service: Service, threads: int) -> tuple[Batch, Batch]:
    bucket = service.client().bucket(BUCKET)

    def put(key: str, data: bytes) -> None:
        blob = bucket.blob(key)
        blob.metadata = {"igimages_sha256": "0" * 64}
        blob.upload_from_string(data, content_type="image/jpeg")

    def copy(key: str, to: str) -> None:
        bucket.blob(to).rewrite(bucket.blob(key))

    return threaded(put, copy, threads)


async def bounded(calls: Iterable[Callable[[], Awaitable[object]]], in_flight: int) -> None:
    """Await every call, ``in_flight`` at once."""
    limit = asyncio.Semaphore(in_flight)

    async def one(call: Callable[[], Awaitable[object]]) -> None:
        async with limit:
            await call()

    await asyncio.gather(*(one(call) for call in calls))


def obstore_batches(store, in_flight: int) -> tuple[Batch, Batch]:
    import obstore

    attributes = {"Content-Type": "image/jpeg", "igimages_sha256": "0" * 64}

    def puts(keys: list[str], data: bytes) -> None:
        calls = (
            lambda key=key: obstore.put_async(store, key, data, attributes=attributes)
            for key in keys
        )
        asyncio.run(bounded(calls, in_flight))

    def copies(keys: list[str], _data: bytes) -> None:
        calls = (lambda key=key: obstore.copy_async(store, key, f"{key}.copy") for key in keys)
        asyncio.run(bounded(calls, in_flight))

    return puts, copies


def obstore_s3(service: Service, in_flight: int, unsigned: bool = False) -> tuple[Batch, Batch]:
    from obstore.store import S3Store

    store = S3Store(
        BUCKET, endpoint=service.endpoint, access_key_id="bench", secret_access_key="bench",
        region="us-east-1", virtual_hosted_style_request=False, unsigned_payload=unsigned,
        client_options={"allow_http": True},
    )  # fmt: skip
    return obstore_batches(store, in_flight)


def aiohttp_sigv4_s3(service: Service, in_flight: int) -> tuple[Batch, Batch]:
    """S3 requests sent on the loop by aiohttp, as the GCS store sends its own, signed by
    botocore's SigV4 signer with the body's sha256 given (the crawl knows it already)."""
    import hashlib

    import aiohttp
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signer = S3SigV4Auth(Credentials("bench", "bench"), "s3", "us-east-1")
    base = f"{service.endpoint}/{BUCKET}"

    async def send(requests: list[tuple[str, bytes, dict[str, str]]]) -> None:
        async with aiohttp.ClientSession() as session:

            async def one(key: str, body: bytes, headers: dict[str, str]) -> None:
                request = AWSRequest("PUT", f"{base}/{key}", data=body, headers=headers)
                signer.add_auth(request)
                async with session.put(
                    request.url, data=body, headers=dict(request.headers.items())
                ) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{key}: {response.status}")

            await bounded((lambda args=args: one(*args) for args in requests), in_flight)

    def puts(keys: list[str], data: bytes) -> None:
        headers = {
            "Content-Type": "image/jpeg", "x-amz-meta-igimages-sha256": "0" * 64,
            "X-Amz-Content-SHA256": hashlib.sha256(data).hexdigest(),
        }  # fmt: skip
        asyncio.run(send([(key, data, headers) for key in keys]))

    def copies(keys: list[str], _data: bytes) -> None:
        empty = {"X-Amz-Content-SHA256": hashlib.sha256(b"").hexdigest()}
        requests = [
            (f"{key}.copy", b"", {**empty, "x-amz-copy-source": f"/{BUCKET}/{key}"}) for key in keys
        ]
        asyncio.run(send(requests))

    return puts, copies


def obstore_azure(service: Service, in_flight: int) -> tuple[Batch, Batch]:
    from obstore.store import AzureStore

    store = AzureStore(
        BUCKET, endpoint=f"{service.endpoint}/{AZURITE_ACCOUNT}", account_name=AZURITE_ACCOUNT,
        account_key=AZURITE_KEY, client_options={"allow_http": True},
    )  # fmt: skip
    return obstore_batches(store, in_flight)


def store_client(scheme: str, settings: dict[str, object]):
    """A store's own uploads and copies (``put_async``, ``copy_async``), as a crawl makes them."""

    def batches(service: Service, in_flight: int) -> tuple[Batch, Batch]:
        import hashlib

        from scrapy.settings import Settings
        from scrapy.utils.misc import load_object

        from igimages.settings import IGIMAGES_STORES
        from igimages.store import StoreUri

        given = {**settings, "IGIMAGES_STORE_UPLOADS": in_flight}
        given.update(line.split("=", 1) for line in service.crawl_settings()[0])
        service.client()  # a GCS emulator's address reaches google-cloud-storage
        store = load_object(IGIMAGES_STORES[scheme])
        bucket = store.connect(StoreUri.parse(f"{scheme}://{BUCKET}/"), Settings(given))
        metadata = {"igimages-sha256": "0" * 64}

        async def batch(calls: Iterable[Callable[[], Awaitable[object]]]) -> None:
            try:
                await bounded(calls, in_flight)
            finally:
                await bucket.disconnect()  # its connections belong to this batch's loop

        def puts(keys: list[str], data: bytes) -> None:
            digest = hashlib.sha256(data).hexdigest()  # the crawl holds it already
            put = bucket.put_async
            calls = (lambda key=key: put(key, data, metadata, "image/jpeg", digest) for key in keys)
            asyncio.run(batch(calls))

        def copies(keys: list[str], _data: bytes) -> None:
            copy = bucket.copy_async
            asyncio.run(batch(lambda key=key: copy(key, f"{key}.copy") for key in keys))

        return puts, copies

    return batches


CLIENTS = {
    "botocore s3": ("s3", botocore_s3),
    "obstore s3": ("s3", obstore_s3),
    "obstore s3 unsigned": ("s3", lambda service, n: obstore_s3(service, n, unsigned=True)),
    "aiohttp+sigv4 s3": ("s3", aiohttp_sigv4_s3),
    "google-cloud-storage gs": ("gs", gcs_python),
    "store s3": ("s3", store_client("s3", {})),
    "store gs": ("gs", store_client("gs", {})),
    "obstore az": ("az", obstore_azure),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--objects", type=int, default=600)
    parser.add_argument("--size", type=int, default=140_000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument(
        "--s3", default="sw", choices=("s3", "s3k", "sw", "sws"), help="the S3 server (bucket.py's)"
    )
    args = parser.parse_args()
    names = args.clients.split(",")
    needed = {CLIENTS[name][0] for name in names}
    services = {scheme: SERVICES[args.s3 if scheme == "s3" else scheme]() for scheme in needed}
    logs = Path(tempfile.mkdtemp(prefix="igimages-clients-"))
    data = os.urandom(args.size)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    try:
        for scheme in needed:
            services[scheme].start(logs / f"{scheme}.log")
        clients = {
            name: CLIENTS[name][1](services[CLIENTS[name][0]], args.in_flight) for name in names
        }
        for round_ in range(1, args.rounds + 1):
            for name, (puts, copies) in clients.items():
                keys = [f"{uuid.uuid4().hex}/{i}.jpg" for i in range(args.objects)]
                began = cpu()
                puts(keys, data)
                put_cpu = 1000 * (cpu() - began) / len(keys)
                began = cpu()
                copies(keys, data)
                copy_cpu = 1000 * (cpu() - began) / len(keys)
                results[name].append((put_cpu, copy_cpu))
                print(f"round {round_} {name:24} CPU ms: PUT {put_cpu:.3f} copy {copy_cpu:.3f}")
    finally:
        for scheme in needed:
            services[scheme].stop()
        shutil.rmtree(logs, ignore_errors=True)
    print(f"\nmedians, client CPU ms ({args.objects} x {args.size} B, {args.in_flight} in flight):")
    for name in names:
        put_cpu = statistics.median(r[0] for r in results[name])
        copy_cpu = statistics.median(r[1] for r in results[name])
        print(f"  {name:24} PUT {put_cpu:.3f}  copy {copy_cpu:.3f}")


if __name__ == "__main__":
    sys.exit(main())
