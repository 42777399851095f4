"""Near-duplicate groups of images (placeholder: each image its own group).

The real module, with the perceptual hash, replaces this one; callers rely
only on ``similar_groups``' interface.
"""

from __future__ import annotations

from collections.abc import Iterable


def similar_groups(hashes: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(sha256, phash) pairs (repeats allowed; phash '' = unknown) -> sha256 -> group id."""
    return {sha256: sha256[:16] for sha256, _ in hashes}
