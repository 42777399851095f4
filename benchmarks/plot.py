"""The per-host limit over a run, drawn from ``run.py``'s limit traces.

One panel per world: the crawl's limit for the host (from its own log), the
requests the server had in flight as each answer left, images per second
(200s per quarter second, right axis) and the 429s, all against seconds since
the crawl started.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt

BUCKET = 0.25  # seconds per throughput bar


def limit_traces(traces: list[dict[str, Any]], path: Path) -> None:
    figure, axes = plt.subplots(len(traces), 1, figsize=(10, 3.4 * len(traces)), squeeze=False)
    for axis, trace in zip(axes[:, 0], traces, strict=True):
        answers, limits = trace["answers"], trace["limits"]
        end = max([t for t, *_ in answers] + [t for t, *_ in limits] + [1.0])
        rate = axis.twinx()
        served = Counter(int(t / BUCKET) for t, status, _ in answers if status == 200)
        rate.bar(
            [BUCKET * (b + 0.5) for b in served],
            [n / BUCKET for n in served.values()],
            width=BUCKET,
            color="tab:green",
            alpha=0.25,
            label="images/s (right)",
        )
        rate.set_ylabel("images per second")
        rate.set_ylim(bottom=0)
        axis.plot(
            [t for t, *_ in answers],
            [n for *_, n in answers],
            color="tab:gray",
            linewidth=0.6,
            label="in flight at the server",
        )
        if limits:
            axis.step(
                [t for t, *_ in limits] + [end],
                [n for _, n, _ in limits] + [limits[-1][1]],
                where="post",
                color="tab:blue",
                linewidth=1.8,
                label="the crawl's limit for the host",
            )
        refused = [t for t, status, _ in answers if status == 429]
        if refused:
            axis.plot(
                refused,
                [0.5] * len(refused),
                "|",
                color="tab:red",
                markersize=10,
                label=f"429 ({len(refused)})",
            )
        axis.set_zorder(rate.get_zorder() + 1)
        axis.patch.set_visible(False)
        axis.set_xlim(0, end)
        axis.set_ylim(bottom=0)
        axis.set_ylabel("requests")
        axis.set_title(f"{trace['title']}: default settings", fontsize=10)
        handles, labels = axis.get_legend_handles_labels()
        more_handles, more_labels = rate.get_legend_handles_labels()
        axis.legend(handles + more_handles, labels + more_labels, loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("seconds since the crawl started")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
