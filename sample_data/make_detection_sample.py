"""Regenerate the committed detection sample set byte for byte from a seed.

    python sample_data/make_detection_sample.py [--out sample_data] [--seed 2026]

``shapes_det``: grey scenes of discs, squares and triangles (2-6 objects per image, small
ones included) at 128 x 128, as 8-bit PNG and 16-bit TIFF (12-bit values), with a COCO
``annotations.json``: a box and an instance polygon per object, categories with ids that do
not start at 0. ``planted.csv`` (``image``, ``object_id``, ``problem``, ``detail``) lists
what was planted: box-label problems for the score stage (``missing_box``, ``wrong_class``,
``shifted_box``, ``oversized_box``) and integrity problems for the clean stage
(``duplicate_box``, ``box_outside``, ``degenerate_box``, ``mask_box_mismatch``,
``missing_image``, ``unknown_category``).

Part of issue 14 (detection): the reader and the annotation checks run on it today; the
task's pipeline stages come next.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
from make_sample_data import png_bytes, q8, q12, tiff_bytes, write  # type: ignore[import-not-found]

CLASSES = ((3, "disk"), (5, "square"), (9, "triangle"))  # COCO ids, deliberately not 0..K-1
IMAGES = 40
SIZE = 128
OBJECTS = (2, 6)
RADIUS = (5.0, 18.0)  # px: the small end is below a quarter of the smallest anchor at 128 px


def _polygon(kind: str, cx: float, cy: float, r: float) -> np.ndarray:
    if kind == "disk":
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    if kind == "square":
        return np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
    return np.array([[cx, cy - r], [cx + r, cy + r * 0.8], [cx - r, cy + r * 0.8]])


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    image = 0.25 + 0.1 * rng.random() + rng.normal(0, 0.03, (SIZE, SIZE))
    objects: list[tuple[str, np.ndarray]] = []
    for _ in range(int(rng.integers(OBJECTS[0], OBJECTS[1] + 1))):
        kind = CLASSES[int(rng.integers(len(CLASSES)))][1]
        r = float(rng.uniform(*RADIUS))
        cx, cy = rng.uniform(r + 1, SIZE - r - 1, 2)
        polygon = _polygon(kind, cx, cy, r)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, shift=4)
        image[mask > 0] += float(rng.uniform(0.25, 0.45))
        objects.append((kind, polygon))
    return np.clip(image, 0, 1), objects


def _box(polygon: np.ndarray) -> list[float]:
    x0, y0 = polygon.min(0)
    x1, y1 = polygon.max(0)
    return [
        round(float(x0), 1),
        round(float(y0), 1),
        round(float(x1 - x0), 1),
        round(float(y1 - y0), 1),
    ]


def make_det(out: Path, rng: np.random.Generator) -> None:
    root = out / "shapes_det"
    shutil.rmtree(root, ignore_errors=True)
    ids = dict((name, cid) for cid, name in CLASSES)
    images, annotations, planted = [], [], []
    next_id = 1
    for i in range(IMAGES):
        pixels, objects = _scene(rng)
        name = f"images/img_{i:03d}." + ("png" if i % 2 == 0 else "tif")
        data = png_bytes(q8(pixels)) if i % 2 == 0 else tiff_bytes(q12(pixels), compression="zlib")
        write(root / name, data)
        images.append(
            {"id": i + 1, "file_name": name.removeprefix("images/"), "width": SIZE, "height": SIZE}
        )
        for kind, polygon in objects:
            annotations.append(
                {
                    "id": next_id,
                    "image_id": i + 1,
                    "category_id": ids[kind],
                    "bbox": _box(polygon),
                    "iscrowd": 0,
                    "segmentation": [np.round(polygon, 1).ravel().tolist()],
                }
            )
            next_id += 1
    _plant(annotations, images, planted, rng, ids)
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name} for cid, name in CLASSES],
    }
    (root / "annotations.json").write_text(json.dumps(coco, indent=1) + "\n")
    with (root / "planted.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["image", "object_id", "problem", "detail"], lineterminator="\n")
        w.writeheader()
        w.writerows(sorted(planted, key=lambda r: (r["problem"], r["image"], r["object_id"])))


def _plant(
    annotations: list[dict],
    images: list[dict],
    planted: list[dict[str, str]],
    rng: np.random.Generator,
    ids: dict[str, int],
) -> None:
    """Each problem on its own annotation, chosen without repeats."""
    order = iter(rng.permutation(len(annotations)).tolist())
    file_of = {im["id"]: "images/" + im["file_name"] for im in images}

    def pick(problem: str, detail: str) -> dict:
        ann = annotations[next(order)]
        planted.append(
            {
                "image": file_of[ann["image_id"]],
                "object_id": str(ann["id"]),
                "problem": problem,
                "detail": detail,
            }
        )
        return ann

    for _ in range(3):
        ann = pick("missing_box", "annotation removed; the object is in the image")
        ann["_drop"] = True
    for _ in range(3):
        ann = pick("wrong_class", "")
        true = ann["category_id"]
        ann["category_id"] = next(c for c in ids.values() if c != true)
        planted[-1]["detail"] = f"given {ann['category_id']}, drawn {true}"
    for _ in range(3):
        ann = pick("shifted_box", "box moved by its own width")
        ann["bbox"][0] = round(ann["bbox"][0] + ann["bbox"][2], 1)
    for _ in range(2):
        ann = pick("oversized_box", "box grown 2.5x around its centre")
        x, y, w, h = ann["bbox"]
        ann["bbox"] = [
            round(x - 0.75 * w, 1),
            round(y - 0.75 * h, 1),
            round(2.5 * w, 1),
            round(2.5 * h, 1),
        ]
    ann = pick("duplicate_box", "a second, near-identical box of the same class")
    x, y, w, h = ann["bbox"]
    twin = {**ann, "id": max(a["id"] for a in annotations) + 1, "bbox": [x + 0.2, y + 0.2, w, h]}
    annotations.append(twin)
    planted[-1]["object_id"] = str(twin["id"])
    ann = pick("box_outside", "box moved past the right edge")
    ann["bbox"][0] = SIZE + 10.0
    ann = pick("degenerate_box", "zero width")
    ann["bbox"][2] = 0.0
    ann = pick("mask_box_mismatch", "polygon moved 40 px from its box")
    ann["segmentation"] = [
        [round(v + 40.0 if k % 2 == 0 else v, 1) for k, v in enumerate(ann["segmentation"][0])]
    ]
    ann = pick("unknown_category", "category id 42 is not in categories")
    ann["category_id"] = 42
    images.append(
        {"id": len(images) + 1, "file_name": "img_gone.png", "width": SIZE, "height": SIZE}
    )
    planted.append(
        {
            "image": "images/img_gone.png",
            "object_id": "",
            "problem": "missing_image",
            "detail": "listed in annotations.json, no file",
        }
    )
    annotations[:] = [
        {k: v for k, v in a.items() if k != "_drop"} for a in annotations if not a.get("_drop")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    make_det(args.out, np.random.default_rng([args.seed, 14]))


if __name__ == "__main__":
    main()
