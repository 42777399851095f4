"""How many downloads each host may have in flight: a chain of limits, built once.

The gate (``igimages.fetch.gate``) asks one ``HostLimits`` for each host's
limit and tells it of every answer and failure. That one is composed when
the gate is built: each host's ceiling (``FixedLimits``), then each class of
``IGIMAGES_HOST_LIMITS`` (with ``_BASE``) in order, built around the one before it, e.g. the
adaptive limit (``igimages.fetch.adaptive``) within the ceiling, and a
job's share of the host (``igimages.job.limits``) within that. A class that
raises ``NotConfigured`` (``AUTOTHROTTLE_ENABLED=False``) is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.conf import build_component_list
from scrapy.utils.misc import build_from_crawler, load_object


class HostLimits(Protocol):
    """How many downloads a host may have in flight, told what it answers."""

    def limit(self, slot: str) -> float: ...

    def answered(self, slot: str, sent_at: float, in_flight: int, status: int) -> None: ...

    def failed(self, slot: str, sent_at: float, in_flight: int, exception: Exception) -> None: ...

    def refused_elsewhere(self, slot: str, in_flight: int) -> None:
        """Another client of the same crawl (a job's worker) was refused by this host."""


class GateView(Protocol):
    """What the gate shows of itself to its limits and to extensions."""

    @property
    def in_flight(self) -> int:
        """Downloads let through and not yet answered, over all hosts."""

    def in_flight_to(self, slot: str) -> int: ...

    def waiting_slots(self) -> set[str]:
        """The hosts that requests are waiting for."""

    def ceiling(self, slot: str) -> float:
        """The most a host may ever have in flight."""

    def limit(self, slot: str) -> float:
        """The host's limit now."""

    def busiest(self) -> tuple[str, int, float] | None:
        """The host with most in flight: its slot, that number, its limit."""

    def admit(self) -> None:
        """Let waiting requests go if the limits now allow it (a limit rose)."""

    def pause(self, slot: str, seconds: float) -> None:
        """Let no request to ``slot`` go for ``seconds``."""


class FixedLimits:
    """Each host's ceiling, whatever it answers: the chain's first link."""

    def __init__(self, ceiling: Callable[[str], float]) -> None:
        self.limit = ceiling

    def answered(self, slot: str, sent_at: float, in_flight: int, status: int) -> None:
        pass

    def failed(self, slot: str, sent_at: float, in_flight: int, exception: Exception) -> None:
        pass

    def refused_elsewhere(self, slot: str, in_flight: int) -> None:
        pass


def compose_host_limits(crawler: Crawler, gate: GateView) -> HostLimits:
    """The ceiling, wrapped by each class of ``IGIMAGES_HOST_LIMITS`` in turn."""
    limits: HostLimits = FixedLimits(gate.ceiling)
    for path in build_component_list(crawler.settings.getwithbase("IGIMAGES_HOST_LIMITS")):
        try:
            limits = build_from_crawler(load_object(path), crawler, limits, gate)
        except NotConfigured:
            continue
    return limits
