"""Which image URLs may be requested at all, judged one URL at a time.

A posts file is someone else's data. Its URLs must not read local files
(only http and https), nor reach the link-local and cloud metadata addresses
(169.254.0.0/16, fd00:ec2::254): on a cloud machine those hand out the very
credentials a bucket store uses. The address is judged three times: as the
URL writes it (any spelling: ``0xA9FEA9FE``, ``[::ffff:169.254.169.254]``),
again for every redirect (``BlockedAddressMiddleware``), and as the name
resolves (``GuardedResolver``), so a DNS name pointing there is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Self
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest

_BLOCKED_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),  # IPv4 link-local; 169.254.169.254 is metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # EC2's IPv6 metadata address
)
_BLOCKED_NAMES = ("metadata.google.internal", "metadata", "instance-data.ec2.internal")


class BlockedAddress(IgnoreRequest):
    """A request to a link-local or metadata address, refused before it goes out."""


def judge_url(url: str) -> tuple[str, str] | None:
    """Why ``url`` must not be requested, as (reason, detail); None if it may be."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:  # "http://[::1:bad/x.jpg": Invalid IPv6 URL
        return "invalid_url", str(exc)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return "unsupported_scheme", scheme or url[:20]
    if not host:
        return "invalid_url", "no host"
    if blocked_host(host):
        return "blocked_address", host
    return None


def blocked_host(host: str) -> bool:
    """Whether ``host``, a name or an address in any spelling, is one never to request."""
    host = host.strip("[]").rstrip(".").lower()
    if host in _BLOCKED_NAMES:
        return True
    address = _as_address(host)
    return address is not None and blocked_address(address)


def blocked_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _BLOCKED_NETWORKS)


def _as_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        pass
    try:  # what the C library also accepts: 2852039166, 0xA9FEA9FE, 169.254.43518
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


class BlockedAddressMiddleware:
    """Refuse a request (a redirect included) whose URL names a blocked address."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls()

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        verdict = judge_url(request.url)
        if verdict is not None and verdict[0] == "blocked_address":
            raise BlockedAddress(f"{verdict[1]} is a link-local or metadata address")


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, less the addresses no image is fetched from."""

    def __init__(self, resolver: AbstractResolver) -> None:
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: Any = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        allowed = [r for r in results if not blocked_address(ipaddress.ip_address(r["host"]))]
        if not allowed:
            raise OSError(f"{host} resolves only to link-local or metadata addresses")
        return allowed

    async def close(self) -> None:
        await self._resolver.close()
