"""Durations and sizes as the progress line, the summary, the plan and the report show them."""

from __future__ import annotations

import math


def duration(seconds: float, *, estimate: bool = False) -> str:
    """``42.0s``, ``3m07s``, ``2h05m``, ``3.5 days``; an ``estimate`` claims no more
    than it knows: ``43s``, ``3m``, then the same."""
    if seconds < 60:
        return f"{math.ceil(seconds)}s" if estimate else f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m" if estimate else f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours / 24:.1f} days"


def size(count: float) -> str:
    """``512 B``, ``31.7 KB``, ``230.2 MB``, ``1.2 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"
