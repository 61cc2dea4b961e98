"""Memory of held-out detection predictions at scale, and the cost of judging them.

    .venv/bin/python bench/detection_memory.py [--images 10000] [--boxes 100] [--size 128]
                                               [--mask-images 200] [--seed 0]

The score stage keeps every held-out prediction (``datapipe.scoring.detection.Boxes``: boxes,
labels, scores and, for instance segmentation, one ``(H, W)`` bool mask per box) until the
label issues are computed. This prints, under ``tracemalloc`` (NumPy reports its buffers to
it):

* boxes only, ``--images`` x ``--boxes`` predictions: bytes held, against the obvious
  alternative of one preallocated ``(N, boxes, 6)`` float32 array (the ratio is the overhead of
  per-image objects);
* instance masks at ``--size``: dense bool masks per box against the same masks as COCO RLE
  (pycocotools' ``mask.encode``), measured on ``--mask-images`` images and scaled to
  ``--images`` (RLE of blob-like masks grows with the perimeter, dense with the area);
* the wall time of ``cleanlab.object_detection`` label quality + our per-box sub-scores
  (``detection_label_issues``) on ``--mask-images`` images, per image.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datapipe.scoring.detection import Boxes, detection_label_issues


def _predictions(n: int, boxes: int, size: int, rng: np.random.Generator) -> list[Boxes]:
    out = []
    for _ in range(n):
        xy = rng.uniform(0, size * 0.8, (boxes, 2)).astype(np.float32)
        wh = rng.uniform(4, size * 0.2, (boxes, 2)).astype(np.float32)
        out.append(Boxes(np.hstack([xy, xy + wh]), rng.integers(0, 3, boxes),
                         rng.uniform(0, 1, boxes).astype(np.float32)))  # fmt: skip
    return out


def _held(make: object) -> tuple[object, int]:
    tracemalloc.start()
    value = make()  # type: ignore[operator]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return value, peak


def _masks(found: Boxes, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((len(found.labels), size, size), bool)
    for k, (x0, y0, x1, y1) in enumerate(found.boxes):
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        out[k] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--boxes", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--mask-images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    found, ours = _held(lambda: _predictions(args.images, args.boxes, args.size, rng))
    _, dense = _held(lambda: np.ones((args.images, args.boxes, 6), np.float32))
    print(f"boxes only, {args.images:,} images x {args.boxes} predictions: "
          f"{ours / 2**20:.1f} MiB held as Boxes, {dense / 2**20:.1f} MiB as one array "
          f"(ratio {ours / dense:.2f})")  # fmt: skip

    from pycocotools import mask as coco_mask

    sample = found[: args.mask_images]
    stacks, dense_bytes = _held(lambda: [_masks(f, args.size) for f in sample])

    def encode() -> list[object]:
        return [coco_mask.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))
                for m in stacks]  # fmt: skip

    _, rle_bytes = _held(encode)
    scale = args.images / len(sample)
    print(f"instance masks at {args.size}^2, scaled to {args.images:,} images: dense bool "
          f"{dense_bytes * scale / 2**30:.2f} GiB, COCO RLE {rle_bytes * scale / 2**30:.3f} GiB "
          f"(ratio {rle_bytes / dense_bytes:.3f})")  # fmt: skip

    targets = [Boxes(f.boxes[:5], f.labels[:5]) for f in sample]
    start = time.perf_counter()
    detection_label_issues(targets, sample, 3)
    took = time.perf_counter() - start
    print(f"label issues (cleanlab.object_detection + sub-scores), {len(sample)} images with "
          f"{args.boxes} predictions: {took / len(sample) * 1000:.1f} ms per image")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
