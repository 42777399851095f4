"""The run over time as small SVG line charts, drawn here so the page needs no script.

The data is the summary's ``timeline`` (``igimages.outputs.timeline``): cumulative
counts by status, downloads in flight and the busiest host's limit, at
evenly spaced moments. Rates are differences between neighbouring points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from igimages.items import FAILED, STATUSES

WIDTH, HEIGHT = 560, 170
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 22, 24  # margins for the axes' labels


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    points: list[tuple[float, float | None]]  # (seconds, value); None: a gap
    css: str  # the line's class, which gives its colour


def timeline_series(timeline: Any) -> dict[str, list[Series]] | None:
    """The charts' series from a summary's ``timeline``, or None if it has none to draw."""
    if not isinstance(timeline, dict):
        return None
    columns, points = timeline.get("columns"), timeline.get("points")
    if not isinstance(columns, list) or not isinstance(points, list):
        return None
    rows = [dict(zip(columns, row, strict=False)) for row in points if isinstance(row, list)]
    rows = [row for row in rows if _number(row.get("seconds")) is not None]
    if len(rows) < 2:
        return None
    rows = _merge_short_last(rows)
    done, failed = [], []
    for before, after in itertools.pairwise(rows):
        span = after["seconds"] - before["seconds"]
        if span <= 0:
            continue
        finished = sum(_count(after, s) - _count(before, s) for s in STATUSES)
        done.append((after["seconds"], finished / span))
        failed.append((after["seconds"], (_count(after, FAILED) - _count(before, FAILED)) / span))
    in_flight = [(row["seconds"], _number(row.get("in_flight"))) for row in rows]
    limit = [(row["seconds"], _number(row.get("host_limit"))) for row in rows]
    charts = {
        "Images per second": [Series("images/s", done, "done")],
        "Failures per second": [Series("failures/s", failed, "failed")],
        "Downloads in flight": [Series("in flight", in_flight, "flight")],
    }
    if any(value is not None for _, value in limit):
        charts["Downloads in flight"].append(Series("busiest host's limit", limit, "limit"))
    return charts


def _count(row: dict[str, Any], status: str) -> float:
    return _number(row.get(status)) or 0.0


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _merge_short_last(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the point before the last when the last came much sooner than the others.

    The last point is taken when the crawl ends, whenever that is; a rate over
    a few milliseconds would be noise.
    """
    if len(rows) < 3:
        return rows
    usual = rows[-2]["seconds"] - rows[-3]["seconds"]
    if rows[-1]["seconds"] - rows[-2]["seconds"] < usual / 2:
        return [*rows[:-2], rows[-1]]
    return rows


def line_chart(title: str, series: Sequence[Series]) -> str:
    """One chart as an inline SVG element; every text in it is a number or a fixed label."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points if y is not None]
    if not xs:
        return ""
    x_max = max(xs) or 1.0
    y_max = _nice(max(ys, default=0.0) or 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    right = WIDTH - RIGHT

    def px(x: float) -> float:
        return LEFT + plot_w * x / x_max

    def py(y: float) -> float:
        return TOP + plot_h * (1 - y / y_max)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{title}"><title>{title}</title>',
        f'<text class="chart-title" x="{LEFT}" y="14">{title}</text>',
    ]
    for step in range(5):
        value = y_max * step / 4
        y = py(value)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(value)}</text>"
        )
    for step in range(5):
        value = x_max * step / 4
        x = px(value)
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
            f"{_seconds(value)}</text>"
        )
    legend_x = WIDTH - RIGHT
    for s in reversed(series):
        parts.append(
            f'<text class="legend {s.css}" x="{legend_x}" y="14" text-anchor="end">{s.label}</text>'
        )
        legend_x -= 8 * len(s.label) + 16
    for s in series:
        for run in _runs(s.points):
            coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in run)
            parts.append(f'<polyline class="line {s.css}" points="{coords}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _runs(points: list[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """The points split at gaps, each run a polyline."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, y))
    return [run for run in runs if run]


def _nice(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``value``."""
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.0f}s" if value >= 10 or value == int(value) else f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.0f}m"
    return f"{value / 3600:.1f}h"
