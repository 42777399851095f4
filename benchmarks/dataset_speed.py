"""How long the data set's feeds take at the end of a large run, and what memory they hold.

    .venv/bin/python benchmarks/dataset_speed.py [--images 1000000] [--similar FILE]

Posts of four images (CDN-like URLs of about 200 characters, 5% failed, 5%
duplicates, each with a perceptual hash) are given to the two exporters of
``IGIMAGES_DATASET`` as a crawl gives them, then each writes its feed into a
temporary folder. Printed: the time to take the posts, each exporter's time
at the end (``similar_groups`` included), the sizes written, and the peak RSS
of the process above what it held before the first post (pyarrow loaded). ``--similar FILE``
runs with that file as ``igimages.similar`` (the real grouping, not the
placeholder). No network; nothing is left behind.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def post(number: int, rng: random.Random) -> object:
    from igimages.items import Post

    images = []
    for position in range(1, 5):
        url = (
            f"https://scontent-fra5-1.cdninstagram.com/v/t51.2885-15/{number}_{position}_n.jpg?"
            + ("stp=dst-jpg_e35&_nc_ht=scontent&oh=00_" + f"{rng.getrandbits(128):032x}" * 4)
        )
        roll = rng.random()
        if roll < 0.05:
            images.append(
                {"url": url, "position": position, "status": "failed", "reason": "http_404",
                 "http_status": 404, "attempts": 1, "detail": ""}
            )  # fmt: skip
            continue
        key = f"{rng.getrandbits(64):016x}"
        image = {
            "url": url, "position": position, "status": "downloaded", "key": key,
            "path": f"{number}/{position}_{key}.jpg", "sha256": f"{rng.getrandbits(256):064x}",
            "bytes": rng.randint(20_000, 400_000), "width": 1080, "height": 1350,
            "format": "JPEG", "phash": f"{rng.getrandbits(64):016x}", "attempts": 1,
        }  # fmt: skip
        if roll < 0.10:
            image.update(status="duplicate", duplicate_of=f"{number - 1}/1_{key}.jpg")
        images.append(image)
    return Post(str(number), f"https://www.instagram.com/p/{number}/", [], images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--similar", type=Path, help="a file to use as igimages.similar")
    options = parser.parse_args()
    if options.similar:
        spec = importlib.util.spec_from_file_location("igimages.similar", options.similar)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["igimages.similar"] = module
        spec.loader.exec_module(module)
    import pyarrow.parquet  # noqa: F401  (its libraries, ~140 MB of RSS, before the baseline)

    from igimages.outputs.dataset import ImageFolderExporter, ParquetExporter
    from igimages.similar import similar_groups

    similar_groups([])  # its imports (numpy) too
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        files = {name: Path(folder, name) for name in ("table", "metadata")}
        with files["table"].open("wb") as table, files["metadata"].open("wb") as metadata:
            exporters = {
                "table": ParquetExporter(table, spool_folder=folder),
                "metadata": ImageFolderExporter(metadata, spool_folder=folder),
            }
            baseline = peak_rss_mb()
            began = time.perf_counter()
            for number in range(options.images // 4):
                item = post(number, rng)
                for exporter in exporters.values():
                    exporter.export_item(item)
            print(f"{options.images:,} images given to both exporters: "
                  f"{time.perf_counter() - began:.1f} s (making the posts included)")  # fmt: skip
            for name, exporter in exporters.items():
                began = time.perf_counter()
                exporter.finish_exporting()
                took = time.perf_counter() - began
                print(f"{name}: written in {took:.1f} s, peak RSS above the baseline so far: "
                      f"{peak_rss_mb() - baseline:.0f} MB")  # fmt: skip
        for name, path in files.items():
            print(f"{name}: {path.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
