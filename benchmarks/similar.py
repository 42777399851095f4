"""Near-copy detection, measured: which hash, which threshold, at what cost.

    .venv/bin/python benchmarks/similar.py [--families 8] [--bases 4] [--groups 100000]

1. Hashes every image of the labelled set (``similar_set.py``: pictures,
   their reposts, look-alikes of the same template) with each candidate hash
   and prints, for thresholds of Hamming distance, the precision and recall
   of near-copy pairs (a pair is found when the distance is at most the
   threshold); then the same for the groups of ``igimages.similar``.
2. The CPU time of ``perceptual_hash`` per image, on a 1080x1350 JPEG and WebP.
3. The time of ``similar_groups`` for ``--groups`` hashes (and a million with
   ``--groups 1000000``): random hashes, a tenth of them with near-copies.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from similar_set import labelled_set, pairs

from igimages import similar


def _grey(data: bytes, size: tuple[int, int], draft: bool = True) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        if draft:
            image.draft("L", (size[0] * 2, size[1] * 2))
        return np.asarray(image.convert("L").resize(size, Image.Resampling.BOX), dtype=float)


def _bits(bits: np.ndarray) -> int:
    return int("".join("1" if bit else "0" for bit in bits.ravel()), 2)


def dhash(data: bytes) -> int:
    """Difference hash: is each pixel of a 9x8 grey thumbnail brighter than its right one."""
    pixels = _grey(data, (9, 8))
    return _bits(pixels[:, 1:] > pixels[:, :-1])


def ahash(data: bytes) -> int:
    """Average hash: is each pixel of an 8x8 grey thumbnail above the mean."""
    pixels = _grey(data, (8, 8))
    return _bits(pixels > pixels.mean())


def phash(data: bytes) -> int:
    """igimages.similar.perceptual_hash (DCT, 64 bits), with draft decoding."""
    return int(similar.perceptual_hash(data), 16)


def phash_full(data: bytes) -> int:
    """The same DCT hash without draft decoding (the whole image decoded)."""
    low = similar._DCT @ _grey(data, (32, 32), draft=False) @ similar._DCT.T
    return _bits(low > np.median(low))


HASHES: dict[str, Callable[[bytes], int]] = {
    "phash": phash,
    "phash-nodraft": phash_full,
    "dhash": dhash,
    "ahash": ahash,
}


def precision_recall(found: list[bool], truth: list[bool]) -> tuple[float, float]:
    hits = sum(f and t for f, t in zip(found, truth, strict=True))
    return hits / max(1, sum(found)), hits / max(1, sum(truth))


def evaluate(families: int, bases: int) -> None:
    started = time.perf_counter()
    images = labelled_set(families, bases)
    every = list(pairs(images))
    truth = [same for _, _, same in every]
    print(
        f"labelled set: {len(images)} images ({families} templates x {bases} pictures, "
        f"each with {len(images) // (families * bases) - 1} near-copies), "
        f"{sum(truth)} near-copy pairs of {len(every)}; "
        f"made in {time.perf_counter() - started:.1f} s"
    )
    for name, function in HASHES.items():
        values = [function(image.data) for image in images]
        distance = [(values[a] ^ values[b]).bit_count() for a, b, _ in every]
        same_family = [
            d
            for (a, b, same), d in zip(every, distance, strict=True)
            if not same and images[a].family == images[b].family
        ]
        copies = [d for d, same in zip(distance, truth, strict=True) if same]
        print(
            f"\n{name}: near-copies at distance max {max(copies)}, "
            f"mean {np.mean(copies):.1f}; look-alikes min {min(same_family)}, "
            f"mean {np.mean(same_family):.1f}"
        )
        for threshold in (4, 6, 8, 10, 12, 14, 16):
            p, r = precision_recall([d <= threshold for d in distance], truth)
            print(f"  threshold {threshold:2d}: precision {p:.3f} recall {r:.3f}")
    hashes = [(_sha256(index), similar.perceptual_hash(im.data)) for index, im in enumerate(images)]
    groups = similar.similar_groups(hashes)
    found = [groups[hashes[a][0]] == groups[hashes[b][0]] for a, b, _ in every]
    p, r = precision_recall(found, truth)
    print(
        f"\nsimilar_groups (phash, threshold {similar.THRESHOLD}, transitive): "
        f"precision {p:.3f} recall {r:.3f}"
    )
    missed = Counter(
        " and ".join(sorted((_kind(images[a].variant), _kind(images[b].variant))))
        for (a, b, same), f in zip(every, found, strict=True)
        if same and not f
    )
    print("  missed pairs: " + (", ".join(f"{n} {kinds}" for kinds, n in missed.most_common())))


def _kind(variant: str) -> str:
    """ "jpeg-q55-62%" -> "jpeg": the kind of copy, without its figures."""
    return variant.rstrip("0123456789%+-").split("-q")[0].rstrip("0123456789%+-")


def chance_pairs() -> None:
    """How many pairs of unrelated images fall within each threshold by chance.

    A DCT hash has 32 bits set (those above the median), so two hashes differ
    in an even number of bits; for hashes drawn at random among those, the
    chance that two are within ``2j`` bits is sum(C(32, i)^2, i <= j) / C(64, 32).
    Real pictures' hashes are less spread out, so this is a floor.
    """
    for threshold in (6, 8, 10, 12):
        chance = sum(math.comb(32, i) ** 2 for i in range(threshold // 2 + 1)) / math.comb(64, 32)
        counts = ", ".join(
            f"{math.comb(n, 2) * chance:,.1f} among {n:,}" for n in (100_000, 1_000_000)
        )
        print(f"threshold {threshold:2d}: pairs of unrelated images within it by chance: {counts}")


def hash_cost() -> None:
    picture = labelled_set(1, 1)[0].data
    image = Image.open(io.BytesIO(picture))
    for format, quality in (("JPEG", 75), ("JPEG", 85), ("WEBP", 80)):
        out = io.BytesIO()
        image.save(out, format, quality=quality)
        data = out.getvalue()
        rounds = 60
        started = time.process_time()
        for _ in range(rounds):
            similar.perceptual_hash(data)
        per = (time.process_time() - started) / rounds
        print(
            f"perceptual_hash of a {image.width}x{image.height} {format} at quality {quality} "
            f"({len(data) // 1000} KB): {per * 1000:.2f} ms CPU"
        )


def grouping_time(count: int) -> None:
    rng = np.random.default_rng(7)
    originals = rng.integers(0, 2**64, size=count * 9 // 10, dtype=np.uint64)
    copies = originals[: count - len(originals)].copy()
    for _ in range(4):  # flip up to four random bits of each copy
        copies ^= np.uint64(1) << rng.integers(0, 64, size=len(copies), dtype=np.uint64)
    values = np.concatenate([originals, copies])
    pairs_in = [(_sha256(index), f"{int(value):016x}") for index, value in enumerate(values)]
    started = time.perf_counter()
    groups = similar.similar_groups(pairs_in)
    seconds = time.perf_counter() - started
    joined = sum(
        groups[pairs_in[i][0]] == groups[pairs_in[len(originals) + i][0]]
        for i in range(len(copies))
    )
    print(
        f"similar_groups of {count:,} hashes: {seconds:.2f} s; "
        f"{joined:,} of {len(copies):,} planted near-copies grouped with their original, "
        f"{len(set(groups.values())):,} groups"
    )


def _sha256(number: int) -> str:
    """A stand-in content hash: group ids are made of their first 16 characters."""
    return hashlib.sha256(str(number).encode()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", type=int, default=8)
    parser.add_argument("--bases", type=int, default=4)
    parser.add_argument("--groups", type=int, nargs="*", default=[100_000])
    args = parser.parse_args()
    evaluate(args.families, args.bases)
    print()
    chance_pairs()
    print()
    hash_cost()
    for count in args.groups:
        grouping_time(count)


if __name__ == "__main__":
    main()
