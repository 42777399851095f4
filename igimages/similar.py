"""The same picture reposted: a perceptual hash of each image, and groups of near-copies.

Content hashes (sha256) find identical bytes only; a picture resized and
recompressed by every account that reposts it has new bytes each time. Its
perceptual hash hardly changes: ``perceptual_hash`` is the DCT hash (pHash)
of the image's 32x32 grey thumbnail, 64 bits, and two images whose hashes
differ in at most ``THRESHOLD`` bits are near-copies. ``similar_groups`` puts
near-copies together, transitively, without comparing every pair: a hash is
compared only with those equal to it in a band of 16 of its bits (four bands
cover the 64, in eight orders of the bits: 32 tables), which finds every pair
within 3 bits and most within 8, in sorted runs, with numpy.

The hash, the threshold and the tables were chosen on a labelled set of
reposts and look-alikes (``benchmarks/similar.py`` prints the figures).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from io import BytesIO

import numpy as np
from PIL import Image

SIZE = 32  # the grey thumbnail the DCT is taken of
LOW = 8  # its LOW x LOW lowest frequencies make the 64 bits
THRESHOLD = 8  # bits that may differ between near-copies (of 64)
BAND = 16  # bits of a table's key: four bands cover the hash
PERMUTATIONS = 8  # orders of the bits, each cut into four bands: 32 tables
WINDOW = 64  # hashes with the same key that each is compared with, at most


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``D @ x`` is the DCT of the column ``x``."""
    k = np.arange(n)[:, None]
    matrix = np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n)) * np.sqrt(2 / n)
    matrix[0] /= np.sqrt(2)
    return matrix


_HASH = re.compile(r"[0-9a-fA-F]{16}").fullmatch
_DCT = _dct_matrix(SIZE)[:LOW]  # only the low frequencies are kept: 8x32, not 32x32


def perceptual_hash(data: bytes) -> str:
    """The 64-bit DCT hash of the image ``data`` as 16 lowercase hex characters;
    '' if Pillow cannot decode it.

    Each bit says whether one of the 8x8 lowest frequencies of the 32x32 grey
    thumbnail is above their median. A JPEG is decoded at 1/8 scale or less
    (``Image.draft``), which makes it cheap.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data)) as image:
                image.draft("L", (SIZE * 2, SIZE * 2))
                grey = image.convert("L").resize((SIZE, SIZE), Image.Resampling.BOX)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return ""
    pixels = np.asarray(grey, dtype=np.float64)
    low = _DCT @ pixels @ _DCT.T
    return np.packbits(low > np.median(low)).tobytes().hex()


def similar_groups(hashes: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(sha256, phash) pairs (repeats allowed; phash '' = unknown) -> sha256 -> group id.

    Every sha256 given is in the result; an image alone is its own group. A
    group's id is the smallest ``sha256[:16]`` of its members, so it does not
    depend on the order of the pairs. A content given with several hashes
    keeps the first that is known; one whose hash is unknown or is not 16 hex
    characters is alone.
    """
    phash_of: dict[str, str] = {}
    for sha256, phash in hashes:
        if not phash_of.get(sha256):
            phash_of[sha256] = phash if _HASH(phash) else ""
    shas = sorted(phash_of)  # a content's key is its rank: the smallest sha256 is the lowest
    phashes = [phash_of[sha256] for sha256 in shas]
    values = np.array([int(phash or "0", 16) for phash in phashes], dtype=np.uint64)
    known = np.array([bool(phash) for phash in phashes], dtype=bool)
    group = group_keys(np.arange(len(shas), dtype=np.uint64), values, known)
    return {sha256: shas[rank][:16] for sha256, rank in zip(shas, group.tolist(), strict=True)}


def group_keys(keys: np.ndarray, phashes: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The group of each content, as the smallest of its members' ``keys``.

    ``keys`` (distinct, uint64) name the contents, ``phashes`` (uint64) are
    their hashes where ``known`` (bool) says so; a content whose hash is not
    known is alone. Arrays rather than strings: a million contents take tens
    of megabytes, not hundreds.
    """
    groups = keys.copy()
    hashed = np.flatnonzero(known)
    values, which = np.unique(phashes[hashed], return_inverse=True)
    component = _components(values)[which]
    smallest = np.full(len(values), np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(smallest, component, keys[hashed])
    groups[hashed] = smallest[component]
    return groups


def _components(values: np.ndarray) -> np.ndarray:
    """For each hash, the smallest index of the hashes within ``THRESHOLD`` bits of it,
    transitively: the connected components of the near-copy graph."""
    count = len(values)
    label = np.arange(count)
    if count < 2:
        return label
    edges = [_near_pairs(values, positions) for positions in _TABLES]
    first = np.concatenate([pair[0] for pair in edges])
    second = np.concatenate([pair[1] for pair in edges])
    while first.size:  # hook the larger root of each edge to the smaller, then jump
        roots = label[first], label[second]
        np.minimum.at(label, np.maximum(*roots), np.minimum(*roots))
        while not np.array_equal(jumped := label[label], label):
            label = jumped
        joined = label[first] == label[second]
        first, second = first[~joined], second[~joined]
    return label


def _tables() -> list[np.ndarray]:
    """The bit positions of each table's key: four bands of 16 bits that cover the 64,
    in the hash's order and in ``PERMUTATIONS - 1`` fixed shuffles of it."""
    rng = np.random.default_rng(22)
    orders = [np.arange(64), *(rng.permutation(64) for _ in range(PERMUTATIONS - 1))]
    return [order[start : start + BAND] for order in orders for start in range(0, 64, BAND)]


_TABLES = _tables()


def _key(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    key = np.zeros(len(values), dtype=np.uint64)
    for bit, position in enumerate(positions.tolist()):
        key |= ((values >> np.uint64(position)) & np.uint64(1)) << np.uint64(bit)
    return key


def _near_pairs(values: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (as indexes) of hashes with the same key and within ``THRESHOLD`` bits:
    each hash is compared with the next ``WINDOW`` of those with its key."""
    keys = _key(values, positions).astype(np.uint16)
    order = np.argsort(keys, kind="stable")  # a radix sort
    keys, ordered = keys[order], values[order]
    firsts, seconds = [], []
    live = np.arange(len(values))  # where the key run goes on at least ``step`` further
    for step in range(1, WINDOW + 1):
        live = live[live + step < len(values)]
        live = live[keys[live] == keys[live + step]]
        if not live.size:
            break
        near = live[np.bitwise_count(ordered[live] ^ ordered[live + step]) <= THRESHOLD]
        firsts.append(order[near])
        seconds.append(order[near + step])
    if not firsts:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    return np.concatenate(firsts), np.concatenate(seconds)
