"""Clean-stage throughput against pure decoding, and near-duplicate search at scale.

    .venv/bin/python bench/clean_throughput.py [--images 400] [--size 512] [--workers 2]
                                               [--hashes 100000 1000000] [--formats uncompressed]

(``--hashes`` with no value skips part 2; ``--formats`` keeps the formats whose name holds one
of the words.)

1. For each format, a two-class folder dataset of synthetic images: the whole clean stage as
   ``dvc repro`` runs it (``datapipe.clean.clean`` finishing the features from ingest's pixel
   table, then perceptual-hash candidates verified on the thumbnails, exact hashes of verified
   twins, every check, duplicate groups, leakage) against decoding the same files with
   ``read_image`` over the same number of worker processes (each sends back only the shape).
   Beside it: clean decoding every image again (no pixel table, the path before issue 16) over
   decoding, and ingest + clean in seconds with the table (one decode of each image) and
   without (two). Wall clock; ratios are the medians of the per-round ratios of ``--rounds``
   interleaved rounds. Goal: clean >= 0.8x decode.
2. Near-duplicate search (multi-index hashing) over N random 64-bit hashes with 1% planted
   near twins (1..8 bits flipped), each N in a fresh process: seconds, peak RSS, recall of the
   planted pairs. Goal: 1M hashes in under 2 minutes and 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._synth import scene
from datapipe.checks.near_duplicates import near_duplicate_pairs
from datapipe.clean import clean
from datapipe.config import CleanParams, DatasetParams
from datapipe.ingest import ingest
from datapipe.io import read_image
from datapipe.parallel import parallel_map

Writer = Callable[[Path, np.ndarray], None]


def _png(dtype: type) -> Writer:
    def write(path: Path, x: np.ndarray) -> None:
        arr = np.round(x * np.iinfo(dtype).max).astype(dtype)
        cv2.imwrite(str(path), arr[..., ::-1] if arr.shape[2] == 3 else arr[..., 0])

    return write


def _jpeg(path: Path, x: np.ndarray) -> None:
    cv2.imwrite(str(path), np.round(x * 255).astype(np.uint8)[..., ::-1])


def _tiff(**kwargs: object) -> Writer:
    def write(path: Path, x: np.ndarray) -> None:
        tifffile.imwrite(path, np.round(x[..., 0] * 4095).astype(np.uint16), **kwargs)  # type: ignore[arg-type]

    return write


CASES: dict[str, tuple[str, int, Writer]] = {
    "PNG 16-bit 1-ch": (".png", 1, _png(np.uint16)),
    "PNG 8-bit RGB": (".png", 3, _png(np.uint8)),
    "JPEG RGB": (".jpg", 3, _jpeg),
    "TIFF uint16 Deflate": (".tif", 1, _tiff(compression="zlib")),
    "TIFF uint16 uncompressed": (".tif", 1, _tiff()),
}


def _decode_only(path: Path) -> tuple[int, ...]:
    """Decode in the worker and send back only the shape, as the clean stage sends features."""
    return read_image(path).shape


def _decode_all(paths: list[Path], workers: int) -> None:
    for _ in parallel_map(_decode_only, paths, workers=workers, desc="decode"):
        pass


def bench_clean(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    print(
        f"\n{args.images} images of {args.size}², {args.workers} workers, wall clock, "
        f"median of {args.rounds} rounds; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores\n"
    )
    print("| format | clean img/s | decode img/s | clean / decode (min–max) | clean decoding "
          "again / decode | ingest + clean s: one decode / two |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, (suffix, channels, write) in CASES.items():
        if args.formats and not any(f.lower() in name.lower() for f in args.formats):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "data"
            paths = []
            for i in range(args.images):
                path = root / f"class{i % 2}" / f"{i:05d}{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                write(path, scene(rng, args.size, channels))
                paths.append(path)
            dataset = DatasetParams(root=root, task="classification")
            table = Path(tmp) / "pixel_features.parquet"
            ingested = ingest(dataset, name="bench", workers=args.workers, pixels=table)
            times: dict[str, list[float]] = {k: [] for k in ("clean", "decode", "again",
                                                            "ingest", "ingest_plain")}  # fmt: skip
            for r in range(args.rounds):
                for key in list(times)[:: 1 if r % 2 == 0 else -1]:
                    start = time.perf_counter()
                    if key in ("ingest", "ingest_plain"):  # the same table, written again
                        ingest(dataset, name="bench", workers=args.workers,
                               pixels=table if key == "ingest" else None)  # fmt: skip
                    elif key == "decode":
                        _decode_all(paths, args.workers)
                    else:
                        clean(ingested.manifest, ingested.stats, dataset, CleanParams(),
                              workers=args.workers, name="bench",
                              pixels=table if key == "clean" else None)  # fmt: skip
                    times[key].append(time.perf_counter() - start)
            med = {k: statistics.median(v) for k, v in times.items()}
            ratios = [dt / ct for ct, dt in zip(times["clean"], times["decode"], strict=True)]
            again = statistics.median(
                [dt / ct for ct, dt in zip(times["again"], times["decode"], strict=True)]
            )
            print(
                f"| {name} | {args.images / med['clean']:.0f} | {args.images / med['decode']:.0f}"
                f" | {statistics.median(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f}) "
                f"| {again:.2f}x | {med['ingest'] + med['clean']:.2f} / "
                f"{med['ingest_plain'] + med['again']:.2f} |",
                flush=True,
            )


def search_once(n: int, max_distance: int) -> dict[str, float]:
    """One near-duplicate search over ``n`` hashes (run in a fresh process)."""
    rng = np.random.default_rng(n)
    base = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n).astype(
        np.uint64
    )
    k = n // 100
    flips = np.zeros(k, np.uint64)
    for i in range(k):
        for b in rng.choice(64, int(rng.integers(1, max_distance + 1)), replace=False):
            flips[i] |= np.uint64(1) << np.uint64(int(b))
    hashes = np.concatenate([base, base[:k] ^ flips])
    unique, inverse = np.unique(hashes, return_inverse=True)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    pairs = near_duplicate_pairs(unique, max_distance=max_distance)
    seconds = time.perf_counter() - start
    found = {(int(a), int(b)) for a, b in pairs[:, :2]}
    planted = [tuple(sorted((int(inverse[i]), int(inverse[n + i])))) for i in range(k)]
    recall = sum(p in found for p in planted) / k
    return {
        "n": len(hashes),
        "seconds": seconds,
        "pairs": len(pairs),
        "recall": recall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": rss_before / 1024,
    }


def bench_search(args: argparse.Namespace) -> None:
    print(f"\nnear-duplicate search, max distance {args.max_distance} bits of 64\n")
    print("| hashes | seconds | peak RSS MB (process) | pairs found | recall of planted |")
    print("|---|---|---|---|---|")
    for n in args.hashes:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--search-once",
                str(n),
                "--max-distance",
                str(args.max_distance),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {r['n']:,} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['pairs']:,} | "
            f"{r['recall']:.3f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--formats",
        nargs="*",
        default=[],
        help="only the formats whose name holds one of these, e.g. uncompressed",
    )
    parser.add_argument("--hashes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--max-distance", type=int, default=CleanParams().near_duplicate_bits)
    parser.add_argument("--search-once", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--skip-clean", action="store_true")
    args = parser.parse_args()
    if args.search_once:
        print(json.dumps(search_once(args.search_once, args.max_distance)))
        return
    if not args.skip_clean:
        bench_clean(args)
    bench_search(args)


if __name__ == "__main__":
    main()
