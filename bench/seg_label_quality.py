"""Segmentation label quality: our one-pass shard scorer against cleanlab's softmin scorer.

    .venv/bin/python bench/seg_label_quality.py [--images 2000] [--size 256] [--classes 5]
                                                [--batch 16] [--repeats 3] [--seed 0] [--quick]

Synthetic out-of-fold predictions, written with the pipeline's own ``ShardWriter`` (float16
``.npz`` shards of ``--batch`` images, the held-out batch of ``score.segmentation.batch_size``
8) in a temp dir: masks of smooth random blobs, probabilities a softmax of
``4 * onehot(true) + smooth noise + pixel noise`` (about 87% pixel accuracy), 5% of the masks
with a blob relabelled (planted issues) and a quarter with an 8-px ``ignore_index`` border.

* ours: ``datapipe.scoring.segmentation.score_segmentation`` on the shard folder (issue
  fraction ``auto``), everything it reports: thresholds, confusion, per-image issue share,
  softmin, hard positives / negatives, issue maps of the flagged images;
* cleanlab: ``cleanlab.segmentation.rank.get_label_quality_scores(method="softmin")`` on the
  same probabilities held in memory as float32 ``(N, K, H, W)`` (loaded from the shards before
  its clock starts; cleanlab knows no ``ignore_index``, so ignored pixels are given class 0).

Timed interleaved in one process (ours, cleanlab, ours, ...), CPU seconds of the process
(``time.process_time``; the machine is shared, so the ratio is the figure) and wall seconds;
medians of ``--repeats``. Memory in an untimed run of each under ``tracemalloc`` (NumPy reports
its buffers to it): the peak of what the call allocates, beside what it needs in memory
beforehand (cleanlab: its float32 probabilities and labels; ours: nothing, the shards are on
disk).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datapipe.scoring.segmentation import ShardWriter, read_shards, score_segmentation

IGNORE = 255
MB = 1e6


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], size: int, cell: int) -> np.ndarray:
    """``shape + (size, size)`` float32 noise, smooth over about ``cell`` pixels."""
    small = rng.standard_normal((*shape, size // cell + 1, size // cell + 1)).astype(np.float32)
    flat = small.reshape(-1, *small.shape[-2:])
    out = [cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in flat]
    return np.stack(out).reshape(*shape, size, size)


def write_shards(
    directory: Path, *, images: int, size: int, classes: int, batch: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    writer = ShardWriter(directory)
    for start in range(0, images, batch):
        b = min(batch, images - start)
        truth = _smooth(rng, (b, classes), size, 32).argmax(1)
        onehot = np.eye(classes, dtype=np.float32)[truth].transpose(0, 3, 1, 2)
        logits = 4 * onehot + 1.5 * _smooth(rng, (b, classes), size, 8)
        logits += rng.standard_normal(logits.shape, dtype=np.float32)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        given = truth.copy()
        for i in range(b):
            if rng.random() < 0.05:  # relabel the blob under a random pixel
                r, c = rng.integers(0, size, 2)
                blob = truth[i] == truth[i, r, c]
                given[i][blob] = (truth[i, r, c] + 1) % classes
            if rng.random() < 0.25:
                given[i, :8], given[i, -8:], given[i, :, :8], given[i, :, -8:] = (IGNORE,) * 4
        writer.add(np.arange(start, start + b), probs, given)


def load_for_cleanlab(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    labels, probs = [], []
    for _, p, y in read_shards(directory):
        probs.append(p.astype(np.float32))
        labels.append(np.where(y == IGNORE, 0, y).astype(np.int64))
    return np.concatenate(labels), np.concatenate(probs)


def _clock(fn: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def _peak(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="200 images of 128², 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.images, args.size, args.repeats = 200, 128, 2
    from cleanlab.segmentation.rank import get_label_quality_scores

    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp)
        t0 = time.perf_counter()
        write_shards(
            shards, images=args.images, size=args.size, classes=args.classes,
            batch=args.batch, seed=args.seed,
        )  # fmt: skip
        disk = sum(p.stat().st_size for p in shards.iterdir()) / MB
        print(f"wrote {args.images} x {args.size}² x {args.classes} classes in shards of "
              f"{args.batch} ({disk:.0f} MB) in {time.perf_counter() - t0:.0f} s")  # fmt: skip

        def ours() -> object:
            return score_segmentation(
                shards, num_classes=args.classes, ignore_index=IGNORE,
                issue_fraction="auto", hard_pixel_fraction=0.2,
            )  # fmt: skip

        result = ours()  # warm: page cache, lookup tables
        ours_peak = _peak(ours)
        t0 = time.process_time()
        labels, probs = load_for_cleanlab(shards)
        load_cpu = time.process_time() - t0

        def theirs() -> object:
            return get_label_quality_scores(labels, probs, method="softmin", verbose=False)

        theirs_peak = _peak(theirs)
        times: dict[str, list[tuple[float, float]]] = {"ours": [], "cleanlab": []}
        for _ in range(args.repeats):
            times["ours"].append(_clock(ours))
            times["cleanlab"].append(_clock(theirs))
        held = (labels.nbytes + probs.nbytes) / MB

    cpu = {k: statistics.median(c for c, _ in v) for k, v in times.items()}
    wall = {k: statistics.median(w for _, w in v) for k, v in times.items()}
    pixels = args.images * args.size**2
    print(f"\n{args.images} images x {args.size}² x {args.classes} classes, medians of "
          f"{args.repeats}, interleaved\n")  # fmt: skip
    print("| scorer | CPU s | wall s | ns/pixel (CPU) | peak during call | held beforehand |")
    print("|---|---|---|---|---|---|")
    print(
        f"| ours, one pass over the shards | {cpu['ours']:.2f} | {wall['ours']:.2f} | "
        f"{cpu['ours'] / pixels * 1e9:.1f} | {ours_peak:.0f} MB | 0 (shards on disk) |"
    )
    print(
        f"| cleanlab softmin, in memory | {cpu['cleanlab']:.2f} | {wall['cleanlab']:.2f} | "
        f"{cpu['cleanlab'] / pixels * 1e9:.1f} | {theirs_peak:.0f} MB | {held:.0f} MB |"
    )
    runs = zip(times["ours"], times["cleanlab"], strict=True)
    print(
        f"\nCPU ratio ours / cleanlab: {cpu['ours'] / cpu['cleanlab']:.2f} "
        f"(each run: {', '.join(f'{a[0] / b[0]:.2f}' for a, b in runs)}); "
        f"loading the shards into cleanlab's arrays took another {load_cpu:.2f} CPU s"
    )
    scores = result.per_image  # type: ignore[attr-defined]
    print(
        f"ours flagged {int(scores['is_label_issue'].sum())} of {len(scores)} images "
        f"(threshold {result.issue_threshold:.3f}), "  # type: ignore[attr-defined]
        f"pixel accuracy {scores['pixel_accuracy'].mean():.3f}"
    )


if __name__ == "__main__":
    main()
