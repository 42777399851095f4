"""The per-host limit that follows the host's answers (igimages.fetch.adaptive).

The crawl tests run a real crawl against a loopback server that behaves like
a host under load (``tests.imageserver.Load``) and assert on what the server
saw: its own count of requests in flight and of 429s; then on the files, the
stats and the summary. The unit tests drive ``HostLimit`` through a small
event simulation of such hosts, in virtual time, to check its rules exactly.
"""

from __future__ import annotations

import heapq
import logging
import re
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from scrapy.exceptions import NotConfigured
from scrapy.utils.test import get_crawler

from igimages.fetch.adaptive import AdaptiveLimits, HostLimit, pushback_summary
from igimages.fetch.limits import FixedLimits
from tests import images
from tests.conftest import sha256
from tests.imageserver import ImageServer, Load, RequestRecord, Route

EXIT_OK = 0
INF = float("inf")
LIMIT_LINE = re.compile(r"limit 127\.0\.0\.1 (\d+) -> (\d+) \((\w+);")

# --- A host in virtual time -------------------------------------------------------------


Host = Callable[[int, int, float], tuple[float, int]]


def simulate(
    limit: HostLimit, requests: int, answer: Host, pause: float = 0.0
) -> tuple[float, list[tuple[float, int, int]]]:
    """Send ``requests`` through ``limit`` to a host; refused ones again 0.5 s later.

    ``answer(serving, in_flight, now)`` gives a request's latency and status
    from what the host is serving and what is in flight when it arrives. With
    ``pause``, each refusal asks for one (``Retry-After``): nothing goes to the
    host until it is over. Returns the time the last answer came and, per
    answer, (time, status, limit).
    """
    now, sequence, paused_until = 0.0, 0, 0.0
    ready, later, events = list(range(requests)), [], []
    in_flight = serving = 0
    trace: list[tuple[float, int, int]] = []
    while True:
        while later and later[0][0] <= now:
            ready.append(heapq.heappop(later)[1])
        while ready and in_flight < int(limit.limit) and now >= paused_until:
            in_flight += 1
            latency, status = answer(serving, in_flight, now)
            serving += status == 200
            heapq.heappush(events, (now + latency, sequence, ready.pop(), now, in_flight, status))
            sequence += 1
        wake = min(later[0][0] if later else INF, paused_until if paused_until > now else INF)
        if not events or wake < events[0][0]:
            if wake == INF:
                return now, trace
            now = wake
            continue
        now, _, request, sent_at, sent_with, status = heapq.heappop(events)
        in_flight -= 1
        if status == 200:
            serving -= 1
            limit.answered(sent_at, sent_with, now)
        else:
            limit.overloaded(sent_at, sent_with, now)
            if pause:
                paused_until = max(paused_until, now + pause)
                limit.paused(pause, now)
            heapq.heappush(later, (now + max(0.5, pause), request))
        trace.append((now, status, int(limit.limit)))


def healthy(latency: float) -> Host:
    return lambda serving, in_flight, now: (latency, 200)


def refusing_above(k: int, latency: float) -> Host:
    return lambda serving, in_flight, now: (latency, 429 if serving >= k else 200)


def full_link(knee: int, latency: float) -> Host:
    return lambda serving, in_flight, now: (latency * max(1.0, in_flight / knee), 200)


def test_a_healthy_host_doubles_to_its_ceiling_and_stays():
    limit = HostLimit(ceiling=64, limit=4)

    _, trace = simulate(limit, 2000, healthy(0.1))

    reached = next(t for t, _, value in trace if value == 64)
    assert reached <= 0.1 * 6  # 4, 8, 16, 32, 64: a round trip each, and one to spare
    assert max(value for *_, value in trace) == 64
    assert all(value == 64 for t, _, value in trace if t > reached)


def test_new_connections_handshakes_are_not_taken_for_a_queue():
    opened = 0  # connections the client holds: in flight at most, so far

    def handshakes(serving: int, in_flight: int, now: float) -> tuple[float, int]:
        nonlocal opened
        new_connection = in_flight > opened
        opened = max(opened, in_flight)
        return (0.3 if new_connection else 0.1), 200  # TCP and TLS: two round trips more

    limit = HostLimit(ceiling=100, limit=8)

    _, trace = simulate(limit, 3000, handshakes)

    # Half the answers of each doubling round trip came on a new connection.
    assert next(t for t, _, value in trace if value == 100) < 2.0
    assert limit.last_cut == -float("inf")


def test_a_slow_but_steady_host_is_not_taken_for_a_queue():
    limit = HostLimit(ceiling=64, limit=4)

    _, trace = simulate(limit, 2000, healthy(2.0))  # two seconds per answer, always

    assert trace[-1][2] == 64
    assert limit.last_cut == -float("inf")


def test_refusals_cut_once_per_round_trip_and_the_limit_settles_under_k():
    limit = HostLimit(ceiling=100, limit=8)

    _, trace = simulate(limit, 3000, refusing_above(16, 0.1))

    refused = sum(status == 429 for _, status, _ in trace)
    assert refused / 3000 < 0.02
    # After the first cut the limit returns to just under the refused level,
    # and stays there for round trips before it probes above it again.
    settled = [value for t, _, value in trace if t > 3.0]
    assert 14 <= statistics.median(settled) <= 16
    assert max(settled) <= 18


def refusal_episodes(trace: list[tuple[float, int, int]], apart: float) -> list[float]:
    """When each run of refusals began (refusals less than ``apart`` s apart are one)."""
    starts: list[float] = []
    last = -INF
    for t, status, _ in trace:
        if status == 429:
            if t - last > apart:
                starts.append(t)
            last = t
    return starts


def test_a_host_that_asks_for_a_pause_is_probed_less_and_less_often():
    limit = HostLimit(ceiling=100, limit=8)

    # 9,000 requests at 16 in flight and 100 ms: 56 s at the very least.
    end, trace = simulate(limit, 9000, refusing_above(16, 0.1), pause=1.0)

    # Slow start's overshoot, then a probe 16 pauses after it, the next twice
    # as long after that: each refused probe pauses the whole host.
    episodes = refusal_episodes(trace, apart=0.3)
    assert len(episodes) == 3, episodes
    first_gap, second_gap = episodes[1] - episodes[0], episodes[2] - episodes[1]
    assert first_gap >= 16
    assert second_gap >= 1.9 * first_gap  # doubled, less the first burst's spread
    assert end <= 1.1 * 56.25
    settled = [value for t, _, value in trace if t > 3.0]
    assert statistics.median(settled) == 16  # just under the level refused, not 0.85 of it


def test_a_level_learned_one_too_high_is_corrected_once_then_followed_down():
    limit = HostLimit(ceiling=100, limit=40)
    # Slow start's burst: the first refusal back was sent with 18 in flight.
    assert limit.overloaded(sent_at=0.0, in_flight=18, now=0.3)
    limit.paused(1.0, now=0.3)  # Retry-After: the level is learned, the limit just under it
    assert (limit.refused_at, limit.limit) == (18, 17)
    # Refused at 17 (answers were on their way when 18 looked in flight):
    # corrected to just under it, without a cut's 0.85...
    assert limit.overloaded(sent_at=1.5, in_flight=17, now=1.6)
    assert (limit.refused_at, limit.limit) == (17, 16)
    # ...once: refused lower again, the host is falling, and is followed down.
    assert limit.overloaded(sent_at=1.7, in_flight=16, now=1.8)
    assert limit.limit == pytest.approx(16 * 0.85)


def test_a_host_that_does_not_pause_is_probed_as_before():
    limit = HostLimit(ceiling=100, limit=8)

    # Refusals at varying levels (the host's load, not a fixed limit): never priced.
    def load(serving: int, in_flight: int, now: float) -> tuple[float, int]:
        k = 16 + 4 * (int(now) % 3)
        return 0.1, 429 if serving >= k else 200

    _, trace = simulate(limit, 3000, load)

    assert not limit.priced
    assert len(refusal_episodes(trace, apart=0.3)) >= 4  # probed every few round trips


def test_a_priced_limit_still_follows_a_host_whose_limit_rises_then_falls():
    limit = HostLimit(ceiling=100, limit=4)

    def host(serving: int, in_flight: int, now: float) -> tuple[float, int]:
        k = 8 if now < 6 else 24 if now < 20 else 6
        return 0.05, 429 if serving >= k else 200

    _, trace = simulate(limit, 12_000, host, pause=0.2)

    assert max(value for t, _, value in trace if 2 < t < 6) <= 9
    # The rise is found by a probe within a few doublings of its gap...
    risen = [t for t, _, value in trace if 6 < t < 20 and value >= 20]
    assert risen
    assert risen[0] < 16
    # ...and the fall is followed at once, a cut per round trip.
    assert max(value for t, _, value in trace if 21 < t < 24) <= 7
    refused = sum(status == 429 for _, status, _ in trace)
    assert refused / len(trace) < 0.02


def test_a_burst_of_refusals_of_requests_sent_before_the_cut_cuts_once():
    # docs/how-it-works.md's numbers, as literals: a refusal cuts to 0.85 times what was in
    # flight, and the cubic W(n) = W_max + 0.01 (n - K)^3 grows the limit back.
    limit = HostLimit(ceiling=100, limit=40)
    # The 17th request in flight was refused first: 17 x 0.85 = 14.45 is the new limit...
    assert limit.overloaded(sent_at=0.0, in_flight=17, now=0.1)
    for _ in range(30):  # ...the others were sent before that cut: no further cut
        assert not limit.overloaded(sent_at=0.05, in_flight=30, now=0.12)
    assert limit.limit == pytest.approx(14.45)
    assert limit.w_max == 16  # the cubic returns to the last level that was not refused
    assert limit.k == pytest.approx(((16 - 14.45) / 0.01) ** (1 / 3))  # 5.37 round trips
    # A refusal of a request sent after the cut cuts again: 14 x 0.85.
    assert limit.overloaded(sent_at=0.11, in_flight=14, now=0.2)
    assert limit.limit == pytest.approx(11.9)


def test_latency_rising_with_what_is_in_flight_stops_the_limit_near_the_knee():
    limit = HostLimit(ceiling=100, limit=4)

    _, trace = simulate(limit, 4000, full_link(knee=12, latency=0.05))

    settled = [value for t, _, value in trace if t > 4.0]
    assert 12 <= statistics.median(settled) <= 1.5 * 12 + 1  # the knee, plus the tolerance
    assert max(settled) < 2 * 12


def test_the_floor_forgets_an_old_route_after_its_window():
    limit = HostLimit(ceiling=32, limit=32)
    now = 1000.0
    for latency, seconds in ((0.05, 20), (0.2, 70)):  # then a slower route, no queue
        until = now + seconds
        while now < until:
            now += latency / 32  # 32 in flight
            limit.answered(now - latency, 32, now)
    # Cut while 200 ms looked like a queue, then back at the ceiling once the
    # 50 ms floor had aged out of both windows.
    assert limit.last_cut > 1000
    assert limit.limit == 32
    assert limit.floor == pytest.approx(0.2, rel=0.05)


# --- The extension ---------------------------------------------------------------------


def run_hosts(hosts: list[str], round_trips: int) -> AdaptiveLimits:
    """Each host asks for its limit and answers, ``round_trips`` times (the 6th: 429)."""
    settings = {"AUTOTHROTTLE_ENABLED": True, "IGIMAGES_START_CONCURRENCY": 8}
    extension = AdaptiveLimits(get_crawler(settings_dict=settings), FixedLimits(lambda slot: 100))
    for round_trip in range(round_trips):
        for host in hosts:
            in_flight = extension.limit(host)
            # Every answer 100 ms after its request, however long the loop takes on a busy machine.
            sent_at = time.monotonic() - 0.1
            extension.answered(host, sent_at, in_flight, 429 if round_trip == 5 else 200)
    return extension


def test_a_pause_that_leaves_the_limit_where_the_cut_put_it_is_still_logged(caplog):
    # Refused at 6: the cut leaves int(5.1) = 5, and the pause's "just under 6"
    # is 5 too. That the level is now held must still be in the debug log.
    settings = {"AUTOTHROTTLE_ENABLED": True, "AUTOTHROTTLE_DEBUG": True}
    extension = AdaptiveLimits(get_crawler(settings_dict=settings), FixedLimits(lambda slot: 100))
    host = "cdn.example"
    extension.limit(host)
    extension.hosts[host].limit = 6
    extension.answered(host, time.monotonic() - 0.1, 6, 429)
    with caplog.at_level(logging.INFO, logger="igimages.fetch.adaptive"):
        extension.host_paused(host, 1.0)

    assert extension.limit(host) == 5
    assert extension.hosts[host].priced
    assert "limit cdn.example 5 -> 5 (pause;" in caplog.text


def test_ten_thousand_hosts_cost_little_memory_and_cpu():
    hosts = [f"scontent-{n}.cdninstagram.com" for n in range(10_000)]
    started = time.thread_time()  # this thread's alone: test servers may run beside it
    extension = run_hosts(hosts, round_trips=10)
    cpu = time.thread_time() - started
    tracemalloc.start()
    run_hosts(hosts, round_trips=1)  # every host's state, and its stats
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert cpu < 2.5, f"{cpu:.2f} s of CPU for 100,000 answers"  # about 9 µs each here
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB for 10,000 hosts"
    stats = extension.stats.get_stats()
    assert stats["igimages/hosts/scontent-7.cdninstagram.com/answers/429"] == 1
    # Slow start: 8, then one more per answer, until the 429.
    assert stats["igimages/hosts/scontent-7.cdninstagram.com/limit_peak"] == 8 + 5


def test_autothrottle_enabled_false_turns_it_off():
    crawler = get_crawler(settings_dict={"AUTOTHROTTLE_ENABLED": False})
    with pytest.raises(NotConfigured):
        AdaptiveLimits(crawler, FixedLimits(lambda slot: 100))


def test_the_summary_names_the_hosts_that_pushed_back_most_first():
    stats = {
        "igimages/hosts/a.example/limit_final": 14,
        "igimages/hosts/a.example/limit_peak": 32,
        "igimages/hosts/a.example/answers/429": 37,
        "igimages/hosts/a.example/cuts/429": 5,
        "igimages/hosts/b.example/limit_final": 3,
        "igimages/hosts/b.example/limit_peak": 8,
        "igimages/hosts/b.example/answers/503": 90,
        "igimages/hosts/b.example/answers/timeout": 2,
        "igimages/hosts/c.example/limit_final": 100,  # never pushed back
        "igimages/hosts/c.example/limit_peak": 100,
        "igimages/hosts/d.example/cuts/latency": 4,
        "igimages/hosts/d.example/limit_final": 20,
        "igimages/hosts/d.example/limit_peak": 41,
    }

    assert pushback_summary(stats) == [
        "b.example: 503 ×90, timeout ×2, limit settled at 3 (peak 8)",  # noqa: RUF001
        "a.example: 429 ×37, limit settled at 14 (peak 32)",  # noqa: RUF001
        "d.example: latency cuts 4, limit settled at 20 (peak 41)",
    ]
    assert pushback_summary(stats, most=1)[-1] == (
        "and 2 more hosts (igimages/hosts/ in the stats)"
    )


# --- Real crawls against a host under load ---------------------------------------------


def serve_images(
    server: ImageServer, count: int, delay: float, late_first: int = 0, late: float = 0.0
) -> dict[str, bytes]:
    """``count`` distinct JPEGs, each answered after ``delay``, the first ``late_first``
    reaching the server ``late`` seconds after they were sent; by URL."""
    bodies = {}
    for n in range(count):
        body = images.jpeg(seed=n)
        route = Route(body, delay=delay, late=late if n < late_first else 0.0)
        bodies[server.add(f"/i{n}.jpg", route)] = body
    return bodies


def refuse_above(server: ImageServer, k: int, delay: float, retry_after: str | None) -> None:
    """The server answers 429 (after ``delay``) while ``k`` requests are being served."""
    headers = {"Retry-After": retry_after} if retry_after else {}
    refusal = Route(b"slow down\n", 429, "text/plain", headers=headers, delay=delay)
    server.set_load(Load(refuse_above=k, refusal=refusal))


def crawl_refused(crawl, posts: Path, start: int):
    """A crawl of a host that refuses above some level, every change of its limit logged."""
    return crawl(
        posts,
        "CONCURRENT_REQUESTS_PER_DOMAIN=48",
        f"IGIMAGES_START_CONCURRENCY={start}",
        "RETRY_TIMES=5",
        "AUTOTHROTTLE_DEBUG=True",
        timeout=110,
    )


def four_per_post(urls: list[str]) -> dict[str, list[str]]:
    return {f"p{n // 4}": urls[n : n + 4] for n in range(0, len(urls), 4)}


def assert_all_stored(result, bodies: dict[str, bytes]) -> None:
    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    stored = {
        image["url"]: (result.store / image["path"]).read_bytes()
        for post in result.manifest.values()
        for image in post["images"]
    }
    assert {url: sha256(body) for url, body in stored.items()} == {
        url: sha256(body) for url, body in bodies.items()
    }


def second_half(requests: list[RequestRecord]) -> list[int]:
    return [record.in_flight for record in requests[len(requests) // 2 :]]


def host_stats(result) -> dict[str, int]:
    prefix = "hosts/127.0.0.1/"
    return {k.removeprefix(prefix): v for k, v in result.summary.items() if k.startswith(prefix)}


def test_a_healthy_host_is_given_the_per_host_ceiling(server, write_posts, crawl):
    bodies = serve_images(server, 240, delay=0.2)
    posts = write_posts(four_per_post(list(bodies)))

    result = crawl(posts, "CONCURRENT_REQUESTS_PER_DOMAIN=16", "IGIMAGES_START_CONCURRENCY=2")

    assert_all_stored(result, bodies)
    assert server.max_in_flight == 16
    assert host_stats(result) == {"limit_peak": 16, "limit_final": 16}
    assert "pushed back" not in result.stderr


@pytest.mark.parametrize("retry_after", [None, "1"])
def test_a_host_that_refuses_above_k_gets_k_and_few_429s(server, write_posts, crawl, retry_after):
    k = 6
    bodies = serve_images(server, 300, delay=0.05)
    # Refusals come back after the images that overtook them (see the next test).
    refuse_above(server, k, delay=0.06, retry_after=retry_after)
    posts = write_posts(four_per_post(list(bodies)))

    # Started at 8: slow start's one overshoot, from 32 (the default) 26
    # refusals of 300, is not what this is about.
    result = crawl_refused(crawl, posts, start=8)

    assert_all_stored(result, bodies)
    seen = server.requests
    refused = sum(record.status == 429 for record in seen)
    assert refused / len(bodies) < 0.08
    # What the host saw at its busiest, in the second half: when answers come
    # back together, as on a loaded machine, each burst's ramp (1, 2, ... k)
    # pulls the median of what it saw down to half the limit.
    busiest = statistics.quantiles(second_half(seen), n=10)[-1]
    limits = host_stats(result)
    changes = LIMIT_LINE.findall(result.stderr)  # what moved the limit, should this fail
    assert k - 2 <= busiest <= k + 1, (limits, changes)
    assert limits["answers/429"] == refused  # every 429 the server sent was seen
    assert 1 <= limits["cuts/429"] <= refused
    if retry_after:  # each refused probe pauses the host: slow start's, then rarely
        assert limits["cuts/429"] <= 2, limits
        # The pause's level learned, and the limit set just under it, in the log.
        assert [(a, b) for a, b, why in LIMIT_LINE.findall(result.stderr) if why == "pause"]
    assert k - 2 <= limits["limit_final"] <= k + 2
    assert f"127.0.0.1: 429 ×{refused}, limit settled at" in result.stderr  # noqa: RUF001


def test_a_refusal_overtaken_on_its_way_is_judged_at_the_load_it_met(server, write_posts, crawl):
    """Requests let through together reach a host in any order. The first post's
    images, let through first (1 to 4 in flight as each went), arrive last and
    are refused: their level is what they met there, not the 1 to 4 counted as
    they went, or a host that asks for a pause above k would be learned to
    refuse above 1. Refusals come back after the images that overtook them (a
    refusal answered sooner is still read low: docs/how-it-works.md,
    "Refusals"); at equal delays a 429's few bytes can win that race by a
    millisecond, in any burst of the run."""
    k = 6
    bodies = serve_images(server, 120, delay=0.2, late_first=4, late=0.05)
    refuse_above(server, k, delay=0.25, retry_after="1")
    posts = write_posts(four_per_post(list(bodies)))

    result = crawl_refused(crawl, posts, start=12)

    assert_all_stored(result, bodies)
    late = {"/i0.jpg", "/i1.jpg", "/i2.jpg", "/i3.jpg"}
    assert {r.path for r in server.requests[:12] if r.status == 429} & late  # overtaken, refused
    limits = host_stats(result)
    changes = LIMIT_LINE.findall(result.stderr)
    assert k - 2 <= limits["limit_final"] <= k + 2, (limits, changes)
    assert min(int(after) for _, after, _ in changes[1:]) >= k - 2, changes


def test_latency_that_grows_with_what_is_in_flight_stops_the_limit_near_the_knee(
    server, write_posts, crawl
):
    knee = 8
    bodies = serve_images(server, 500, delay=0.05)
    server.set_load(Load(knee=knee))
    posts = write_posts(four_per_post(list(bodies)))

    # Started at the knee: a limit that starts above it takes the queue it
    # finds for the host's floor (docs/how-it-works.md, "How the per-host limit moves").
    # No perceptual hash: on two cores its thread's share of the CPU moves the
    # latencies the crawl reads (settled 11 to 25 with it, 21 every time without).
    result = crawl(
        posts,
        "CONCURRENT_REQUESTS_PER_DOMAIN=64",
        f"IGIMAGES_START_CONCURRENCY={knee}",
        "IGIMAGES_PERCEPTUAL_HASH=",
    )

    assert_all_stored(result, bodies)
    settled = statistics.median(second_half(server.requests))
    # The link kept full, the queue short (the ceiling is 8 times the knee).
    assert 0.75 * knee <= settled <= 3 * knee
    limits = host_stats(result)
    assert limits["cuts/latency"] >= 1
    assert limits["limit_peak"] < 64
    assert limits["limit_final"] <= 3 * knee


def test_an_outage_of_503s_cuts_the_limit_and_it_climbs_back_after(
    server, write_posts, crawl, tmp_path: Path
):
    bodies = serve_images(server, 600, delay=0.05)
    server.set_load(Load(outage=(0.8, 1.5)))
    posts = write_posts(four_per_post(list(bodies)))

    result = crawl(
        posts,
        "CONCURRENT_REQUESTS_PER_DOMAIN=24",
        "RETRY_TIMES=6",
        "IGIMAGES_RETRY_BACKOFF_BASE=0.3",
        "AUTOTHROTTLE_DEBUG=True",
    )

    assert_all_stored(result, bodies)
    seen = server.requests
    first = seen[0].time
    assert any(record.status == 503 for record in seen)
    changes = [(int(a), int(b), why) for a, b, why in LIMIT_LINE.findall(result.stderr)]
    cuts = [index for index, (_, _, why) in enumerate(changes) if why == "503"]
    assert cuts, result.stderr[-2000:]
    assert min(changes[index][1] for index in cuts) <= 3  # fell during the outage
    assert max(after for _, after, _ in changes[cuts[-1] :]) >= 16  # and climbed back
    after_outage = [r.in_flight for r in seen if r.time - first > 2.5 and r.status == 200]
    assert max(after_outage) >= 12  # as the server saw it
    assert host_stats(result)["cuts/503"] >= len(cuts)
