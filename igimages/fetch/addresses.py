"""Which URLs may be requested, and which addresses they may reach: one policy.

A posts file is someone else's data. Its URLs must not read local files
(only http and https), nor reach the link-local and cloud metadata addresses:
on a cloud machine those hand out the very credentials a bucket store uses.
``AddressPolicy`` says which addresses are refused; the pipeline and the plan
judge each URL with it before it goes out (an address in any spelling:
``0xA9FEA9FE``, ``[::ffff:169.254.169.254]``, ``[64:ff9b::a9fe:a9fe]``), and
the download handler (``igimages.fetch.handler``) judges every request again where
the connection is made, redirects included: the address a URL names, what a
name resolves to (``GuardedResolver``), and a name about to go to a proxy.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from scrapy.exceptions import IgnoreRequest
from scrapy.settings import BaseSettings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = "a link-local or cloud metadata address"
PRIVATE = "a loopback, private or shared address, refused by IGIMAGES_REFUSE_PRIVATE_ADDRESSES"

#: Always refused: link-local, and the metadata and platform services of clouds.
_METADATA_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "169.254.0.0/16",  # link-local: 169.254.169.254 (AWS, GCP, Azure, OCI...), ECS, EKS
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS instance metadata, IPv6
        "fd00:ec2::23/128",  # AWS EKS Pod Identity (credentials), IPv6
        "fd20:ce::254/128",  # Google Cloud metadata, IPv6-only VMs
        "fd00:c1::a9fe:a9fe/128",  # Oracle Cloud instance metadata, IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "168.63.129.16/32",  # Azure WireServer (extensions' settings)
        "192.0.0.192/32",  # Oracle Cloud Classic and Cloud@Customer metadata
    )
)
_METADATA_NAMES = frozenset(
    (
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    )
)
#: Refused with IGIMAGES_REFUSE_PRIVATE_ADDRESSES: this machine and its networks.
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",  # "this network": 0.0.0.0 reaches this machine
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, shared address space
        "::/128",
        "::1/128",
        "fc00::/7",  # unique local
        "64:ff9b:1::/48",  # NAT64's local-use prefix (RFC 8215): a network's own
    )
)
#: IPv6 networks whose addresses carry an IPv4 one in their last 32 bits.
_IPV4_IN_LAST_32_BITS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "::/96",  # IPv4-compatible, deprecated
        "64:ff9b::/96",  # NAT64's well-known prefix
    )
)
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class BlockedAddress(IgnoreRequest):
    """A request to an address the policy refuses: never sent, never retried."""


class AddressRefused(OSError):
    """What ``GuardedResolver`` raises: a name resolves to a refused address.

    An ``OSError``, so that aiohttp fails the connection with it; the handler
    reports it as ``BlockedAddress``.
    """


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses no image is fetched from.

    Link-local and cloud metadata addresses always; with ``refuse_private``
    also loopback, private (RFC 1918, fc00::/7) and shared (100.64.0.0/10)
    ones. An IPv6 address that carries an IPv4 one is judged as both.
    """

    refuse_private: bool = False

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> Self:
        return cls(refuse_private=settings.getbool("IGIMAGES_REFUSE_PRIVATE_ADDRESSES"))

    def judge_url(self, url: str) -> tuple[str, str] | None:
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
        if why := self.judge_host(host):
            return "blocked_address", why
        return None

    def judge_host(self, host: str) -> str | None:
        """Why ``host``, as a URL writes it, is refused; None if it is not (yet).

        A name is refused here only if it is a metadata service's own; what it
        resolves to is judged when it is resolved.
        """
        host = host.strip("[]").rstrip(".").lower()
        if host in _METADATA_NAMES:
            return f"{host} is a cloud metadata host name"
        address = parse_address(host)
        if address is not None and (why := self.judge_address(address)):
            return f"{host} is {why}"
        return None

    def judge_address(self, address: Address) -> str | None:
        """What refused kind of address ``address`` is, or None if it may be reached."""
        carried = tuple(_carried_ipv4(address))
        for kind, networks in self._refused():
            if _within(address, networks):
                return kind
            for ipv4 in carried:
                if _within(ipv4, networks):
                    return f"an IPv6 form of {ipv4}, {kind}"
        return None

    def _refused(self) -> Iterator[tuple[str, tuple[Network, ...]]]:
        yield METADATA, _METADATA_NETWORKS
        if self.refuse_private:
            yield PRIVATE, _PRIVATE_NETWORKS


def parse_address(host: str) -> Address | None:
    """``host`` as an IP address, in any spelling the C library accepts; else None."""
    try:
        return ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        pass
    try:  # 2852039166, 0xA9FEA9FE, 169.254.43518: socket.inet_aton reads them all
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _within(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def _carried_ipv4(address: Address) -> Iterator[ipaddress.IPv4Address]:
    """Each IPv4 address an IPv6 one may lead to: what a packet to it reaches."""
    if not isinstance(address, ipaddress.IPv6Address):
        return
    packed = address.packed
    if _within(address, _IPV4_IN_LAST_32_BITS):
        yield ipaddress.IPv4Address(packed[12:])
    elif address in _NAT64_LOCAL:
        # RFC 6052 lets the network choose its prefix length (48, 56, 64 or
        # 96 here), and the IPv4 address sits after it, skipping octet 8: each
        # place it may be is judged.
        for prefix_octets in (6, 7, 8, 12):
            octets = [i for i in range(prefix_octets, 16) if i != 8][:4]
            yield ipaddress.IPv4Address(bytes(packed[i] for i in octets))
    elif address.sixtofour is not None:
        yield address.sixtofour
    elif address.teredo is not None:
        yield from address.teredo  # its server and, de-obfuscated, its client


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a name any of whose addresses the policy refuses.

    All of them, not only the one connected to: a name that answers with a
    metadata address among others is not one to trust.
    """

    def __init__(self, resolver: AbstractResolver, policy: AddressPolicy) -> None:
        self._resolver = resolver
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: Any = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            address = ipaddress.ip_address(result["host"].partition("%")[0])
            if why := self._policy.judge_address(address):
                raise AddressRefused(f"{host} resolves to {address}, {why}")
        return results

    async def close(self) -> None:
        await self._resolver.close()
