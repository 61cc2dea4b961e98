"""Regenerate the committed detection sample sets byte for byte from a seed.

    python sample_data/make_detection_sample.py [--out sample_data] [--seed 2026]

``shapes_det``: 200 grey 128 x 128 scenes of bright discs, dark squares and bright triangles
(3-6 objects per image, apart from each other, a third of them small: 9-14 px boxes), as 8-bit
PNG (even images) and 16-bit TIFF holding 12-bit values (odd), with a COCO
``annotations.json``: a box and an instance polygon per object, categories with ids that do
not start at 0. ``planted.csv`` (``image``, ``object_id``, ``problem``, ``detail``) lists what
was planted, each problem on an image of its own: box-label problems for the score stage
(``LABEL_PROBLEMS``: ``missing_box``, ``wrong_class``, ``shifted_box``, ``oversized_box``) and
one of each integrity problem for the clean stage (``duplicate_box``, ``box_outside``,
``degenerate_box``, ``mask_box_mismatch``, ``unknown_category``, ``missing_image``).

``shapes_det_voc``: 60 of the same images as Pascal VOC (``Annotations/*.xml``, whole-pixel
1-based inclusive corners; images in ``JPEGImages/``): every image with a box-label plant, its
plant carried over (a removed box has no object id there), then the first others; with
integrity problems of its own (a duplicate, a box outside the image, a degenerate box, a class
name not in the dataset's classes, an XML naming a missing image) in its own ``planted.csv``.
VOC has no instance masks.

Part of issue 14 (detection). Tuned with the detection score recipe (``fasterrcnn_small``, 3
folds x 25 epochs; ``bench/detection_oof.py``): out of fold on one CPU core in about two
minutes, the box-label problems are the worst-scored images by cleanlab's label quality.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from make_sample_data import png_bytes, q8, q12, tiff_bytes, write  # type: ignore[import-not-found]

CLASSES = ((3, "disk"), (5, "square"), (9, "triangle"))  # COCO ids, deliberately not 0..K-1
#: contrast against the background per class: the square is dark, the others bright
CONTRAST = {"disk": (0.3, 0.45), "square": (-0.3, -0.2), "triangle": (0.3, 0.45)}
IMAGES = 200
SIZE = 128
OBJECTS = (3, 6)
RADIUS = (8.0, 16.0)  # px, half the box side
SMALL_RADIUS = (4.5, 7.0)  # a third of the objects: 9-14 px boxes, above box_tiny at 128 px
GAP = 4.0  # px between any two boxes
#: box-label problems, each on an image of its own
LABEL_PROBLEMS = {"missing_box": 6, "wrong_class": 6, "shifted_box": 5, "oversized_box": 3}
SHIFT = 0.75  # shifted boxes move by this share of their width and height (still overlapping)
GROW = 2.5  # oversized boxes grow by this factor around their centre
VOC_IMAGES = 60

UNKNOWN_ID = 42  # the unknown_category plant's category id

Box = list[float]  # COCO x, y, w, h
Corners = list[int]  # VOC xmin, ymin, xmax, ymax: whole pixels, 1-based, inclusive
Planted = list[dict[str, str]]  # planted.csv rows


@dataclass
class Obj:
    kind: str
    polygon: np.ndarray  # (P, 2) x, y

    @property
    def box(self) -> Box:
        x0, y0 = self.polygon.min(0)
        x1, y1 = self.polygon.max(0)
        return [round(float(v), 1) for v in (x0, y0, x1 - x0, y1 - y0)]


@dataclass
class Ann:
    id: int
    image: int  # 0-based image index
    kind: str  # the class given
    box: Box
    polygon: list[float]
    dropped: bool = False


@dataclass
class Scene:
    name: str  # images/img_000.png
    pixels: np.ndarray
    anns: list[Ann] = field(default_factory=list)


def _polygon(kind: str, cx: float, cy: float, r: float) -> np.ndarray:
    if kind == "disk":
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    if kind == "square":
        return np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
    return np.array([[cx, cy - r], [cx + r, cy + r * 0.8], [cx - r, cy + r * 0.8]])


def _apart(box: Box, others: list[Box], gap: float) -> bool:
    x, y, w, h = box
    return all(
        x + w + gap <= a or a + c + gap <= x or y + h + gap <= b or b + d + gap <= y
        for a, b, c, d in others
    )


def _inside(box: Box) -> bool:
    x, y, w, h = box
    return x >= 0.5 and y >= 0.5 and x + w <= SIZE - 0.5 and y + h <= SIZE - 0.5


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, list[Obj]]:
    image = 0.3 + 0.1 * rng.random() + rng.normal(0, 0.03, (SIZE, SIZE))
    objects: list[Obj] = []
    for _ in range(int(rng.integers(OBJECTS[0], OBJECTS[1] + 1))):
        kind = CLASSES[int(rng.integers(len(CLASSES)))][1]
        r = float(rng.uniform(*(SMALL_RADIUS if rng.random() < 1 / 3 else RADIUS)))
        for _try in range(50):  # rejection sampling: keep objects apart
            cx, cy = rng.uniform(r + 1, SIZE - r - 1, 2)
            obj = Obj(kind, _polygon(kind, cx, cy, r))
            if _apart(obj.box, [o.box for o in objects], GAP):
                break
        else:
            continue
        mask = np.zeros((SIZE, SIZE), np.uint8)
        cv2.fillPoly(mask, [np.round(obj.polygon * 16).astype(np.int32)], 1, shift=4)
        image[mask > 0] += float(rng.uniform(*CONTRAST[kind]))
        objects.append(obj)
    return np.clip(image, 0, 1), objects


def make_det(out: Path, rng: np.random.Generator) -> None:
    scenes: list[Scene] = []
    next_id = 1
    for i in range(IMAGES):
        pixels, objects = _scene(rng)
        scene = Scene(f"images/img_{i:03d}." + ("png" if i % 2 == 0 else "tif"), pixels)
        for obj in objects:
            polygon = np.round(obj.polygon, 1).ravel().tolist()
            scene.anns.append(Ann(next_id, i, obj.kind, obj.box, polygon))
            next_id += 1
        scenes.append(scene)
    planted, used = _plant_labels(scenes, rng)
    # the VOC copy: every image with a box-label plant, then the first others, in order
    others = [i for i in range(IMAGES) if i not in used]
    chosen = sorted([*used, *others[: VOC_IMAGES - len(used)]])
    voc = [_copy(scenes[i]) for i in chosen]
    voc_used = {k for k, i in enumerate(chosen) if i in used}
    planted += _plant_integrity(scenes, used | set(chosen), rng, next_id)
    _write_coco(out / "shapes_det", scenes, planted)
    _write_voc(out / "shapes_det_voc", voc, planted, voc_used, rng)


def _copy(scene: Scene) -> Scene:
    anns = [Ann(**{**vars(a), "box": list(a.box), "polygon": list(a.polygon)}) for a in scene.anns]
    return Scene(scene.name, scene.pixels, anns)


# --- planting -----------------------------------------------------------------------------------
# Each plant is a small function of the annotation it changes; it returns the planted.csv
# detail, or None when this object cannot take it (a moved box would leave the image or land
# on another object), and the next object of the image is tried.


def _drop(ann: Ann, scene: Scene, rng: np.random.Generator) -> str | None:
    ann.dropped = True
    return "annotation removed; the object is in the image"


def _swap(ann: Ann, scene: Scene, rng: np.random.Generator) -> str | None:
    kinds = [name for _, name in CLASSES]
    true = ann.kind
    ann.kind = kinds[(kinds.index(true) + 1 + int(rng.integers(len(kinds) - 1))) % len(kinds)]
    return f"given {ann.kind}, drawn {true}"


def _shift(ann: Ann, scene: Scene, rng: np.random.Generator) -> str | None:
    """Diagonally, so the box still overlaps its object (by a quarter of its width and height):
    a box moved off its object altogether is a spurious box plus a missing one, not a shifted
    one."""
    x, y, w, h = ann.box
    signs = [(sx, sy) for sx in (-1, 1) for sy in (-1, 1)]
    for k in rng.permutation(len(signs)).tolist():
        sx, sy = signs[k]
        if _moves(ann, scene, [round(x + sx * SHIFT * w, 1), round(y + sy * SHIFT * h, 1), w, h]):
            return f"box moved by {SHIFT:g} of its width and height"
    return None


def _grow(ann: Ann, scene: Scene, rng: np.random.Generator) -> str | None:
    x, y, w, h = ann.box
    grown = [x - (GROW - 1) / 2 * w, y - (GROW - 1) / 2 * h, GROW * w, GROW * h]
    if _moves(ann, scene, [round(v, 1) for v in grown]):
        return f"box grown {GROW:g}x around its centre"
    return None


def _moves(ann: Ann, scene: Scene, box: Box) -> bool:
    """Give ``ann`` ``box`` when it is inside the image and clear of the image's other boxes."""
    others = [a.box for a in scene.anns if a is not ann and not a.dropped]
    if _inside(box) and _apart(box, others, 1.0):
        ann.box = box
        return True
    return False


LABEL_PLANTS = {"missing_box": _drop, "wrong_class": _swap, "shifted_box": _shift,
                "oversized_box": _grow}  # fmt: skip


def _row(scene: Scene, object_id: str, problem: str, detail: str) -> dict[str, str]:
    return {"image": scene.name, "object_id": object_id, "problem": problem, "detail": detail}


def _free_images(scenes: list[Scene], used: set[int], rng: np.random.Generator) -> list[int]:
    return [int(i) for i in rng.permutation(len(scenes)) if int(i) not in used]


def _plant_labels(scenes: list[Scene], rng: np.random.Generator) -> tuple[Planted, set[int]]:
    """``LABEL_PROBLEMS``, each on an image of its own; returns the rows and those images."""
    planted: Planted = []
    used: set[int] = set()
    for problem, count in LABEL_PROBLEMS.items():
        for i in _free_images(scenes, used, rng):
            if count == 0:
                break
            scene = scenes[i]
            for k in rng.permutation(len(scene.anns)).tolist():
                detail = LABEL_PLANTS[problem](scene.anns[k], scene, rng)
                if detail is not None:
                    planted.append(_row(scene, str(scene.anns[k].id), problem, detail))
                    used.add(i)
                    count -= 1
                    break
    return planted, used


def _duplicate(scene: Scene, ann: Ann, next_id: int) -> tuple[int, str]:
    x, y, w, h = ann.box
    box = [round(x + 0.2, 1), round(y + 0.2, 1), w, h]
    scene.anns.append(Ann(next_id, ann.image, ann.kind, box, ann.polygon))
    return next_id, "a second, near-identical box of the same class"


def _outside(scene: Scene, ann: Ann, next_id: int) -> tuple[int, str]:
    ann.box[0] = SIZE + 10.0
    return ann.id, "box moved past the right edge"


def _degenerate(scene: Scene, ann: Ann, next_id: int) -> tuple[int, str]:
    ann.box[2] = 0.0
    return ann.id, "zero width"


def _mask_off(scene: Scene, ann: Ann, next_id: int) -> tuple[int, str]:
    shift = 40.0 if ann.box[0] < SIZE / 2 else -40.0
    ann.polygon = [round(v + shift if k % 2 == 0 else v, 1) for k, v in enumerate(ann.polygon)]
    return ann.id, "polygon moved 40 px from its box"


def _unknown(scene: Scene, ann: Ann, next_id: int) -> tuple[int, str]:
    ann.kind = "unknown"
    return ann.id, f"category id {UNKNOWN_ID} is not in categories"


INTEGRITY_PLANTS = {"duplicate_box": _duplicate, "box_outside": _outside,
                    "degenerate_box": _degenerate, "mask_box_mismatch": _mask_off,
                    "unknown_category": _unknown}  # fmt: skip


def _plant_integrity(
    scenes: list[Scene], taken: set[int], rng: np.random.Generator, next_id: int
) -> Planted:
    """Integrity problems for the annotation checks, each on an image with no other plant
    (and not in the VOC copy), plus an annotation entry for an image that is not there."""
    planted: Planted = []
    free = _free_images(scenes, taken, rng)
    for i, (problem, plant) in zip(free, INTEGRITY_PLANTS.items(), strict=False):
        scene = scenes[i]
        object_id, detail = plant(scene, scene.anns[int(rng.integers(len(scene.anns)))], next_id)
        planted.append(_row(scene, str(object_id), problem, detail))
    planted.append({"image": "images/img_gone.png", "object_id": "", "problem": "missing_image",
                    "detail": "listed in annotations.json, no file"})  # fmt: skip
    return planted


# --- writing ------------------------------------------------------------------------------------


def _write_planted(path: Path, planted: Planted) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["image", "object_id", "problem", "detail"], lineterminator="\n")
        w.writeheader()
        w.writerows(sorted(planted, key=lambda r: (r["problem"], r["image"], r["object_id"])))


def _image_bytes(scene: Scene) -> bytes:
    if scene.name.endswith(".png"):
        return png_bytes(q8(scene.pixels))
    return tiff_bytes(q12(scene.pixels), compression="zlib")


def _write_coco(root: Path, scenes: list[Scene], planted: Planted) -> None:
    shutil.rmtree(root, ignore_errors=True)
    ids = {name: cid for cid, name in CLASSES} | {"unknown": UNKNOWN_ID}
    images, annotations = [], []
    for i, scene in enumerate(scenes):
        write(root / scene.name, _image_bytes(scene))
        images.append({"id": i + 1, "file_name": scene.name.removeprefix("images/"),
                       "width": SIZE, "height": SIZE})  # fmt: skip
        annotations += [
            {"id": a.id, "image_id": i + 1, "category_id": ids[a.kind], "bbox": a.box,
             "iscrowd": 0, "segmentation": [a.polygon]}
            for a in scene.anns if not a.dropped
        ]  # fmt: skip
    images.append({"id": len(images) + 1, "file_name": "img_gone.png", "width": SIZE,
                   "height": SIZE})  # fmt: skip
    coco = {
        "images": images,
        "annotations": sorted(annotations, key=lambda a: a["id"]),
        "categories": [{"id": cid, "name": name} for cid, name in CLASSES],
    }
    (root / "annotations.json").write_text(json.dumps(coco, indent=1) + "\n")
    _write_planted(root / "planted.csv", planted)


def _voc_xml(filename: str, objects: list[tuple[str, Corners]]) -> str:
    """One VOC annotation: ``objects`` are (name, [xmin, ymin, xmax, ymax]) 1-based inclusive."""
    parts = [
        "<annotation>",
        "  <folder>JPEGImages</folder>",
        f"  <filename>{filename}</filename>",
        f"  <size><width>{SIZE}</width><height>{SIZE}</height><depth>1</depth></size>",
    ]
    for name, (x0, y0, x1, y1) in objects:
        parts += [
            "  <object>",
            f"    <name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>",
            "    <difficult>0</difficult>",
            f"    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
            "</bndbox>",
            "  </object>",
        ]
    return "\n".join([*parts, "</annotation>", ""])


def _voc_corners(box: Box) -> Corners:
    """COCO x, y, w, h (0-based, exclusive) -> VOC's whole-pixel 1-based inclusive corners."""
    x, y, w, h = box
    x0, y0 = int(np.floor(x)) + 1, int(np.floor(y)) + 1
    return [x0, y0, max(int(np.ceil(x + w)), x0 - 1), max(int(np.ceil(y + h)), y0 - 1)]


def _voc_duplicate(objects: list[tuple[str, Corners]], k: int) -> tuple[int, str]:
    name, (x0, y0, x1, y1) = objects[k]
    objects.append((name, [x0, y0, x1, y1 + 1]))
    return len(objects) - 1, "a second, near-identical box of the same class"


def _voc_outside(objects: list[tuple[str, Corners]], k: int) -> tuple[int, str]:
    name, (x0, y0, x1, y1) = objects[k]
    objects[k] = (name, [SIZE + 10, y0, SIZE + 10 + x1 - x0, y1])
    return k, "box moved past the right edge"


def _voc_degenerate(objects: list[tuple[str, Corners]], k: int) -> tuple[int, str]:
    name, (x0, y0, _, y1) = objects[k]
    objects[k] = (name, [x0, y0, x0 - 1, y1])
    return k, "zero width (xmax = xmin - 1)"


def _voc_unknown(objects: list[tuple[str, Corners]], k: int) -> tuple[int, str]:
    objects[k] = ("hexagon", objects[k][1])
    return k, "class hexagon is not in the dataset's classes"


VOC_PLANTS = {"duplicate_box": _voc_duplicate, "box_outside": _voc_outside,
              "degenerate_box": _voc_degenerate, "unknown_category": _voc_unknown}  # fmt: skip


def _write_voc(
    root: Path, scenes: list[Scene], planted: Planted, used: set[int], rng: np.random.Generator
) -> None:
    """The VOC copy of ``scenes``: their box-label plants carried over (a removed box has no
    object id here), and integrity plants of its own on images without one."""
    shutil.rmtree(root, ignore_errors=True)
    problems = dict(zip(_free_images(scenes, used, rng), VOC_PLANTS, strict=False))
    rows: Planted = []
    for i, scene in enumerate(scenes):
        image, xml = (
            f"JPEGImages/{Path(scene.name).name}",
            f"Annotations/{Path(scene.name).stem}.xml",
        )
        write(root / image, _image_bytes(scene))
        kept = [a for a in scene.anns if not a.dropped]
        objects = [(a.kind, _voc_corners(a.box)) for a in kept]
        ids = {str(a.id): f"{xml}#{k}" for k, a in enumerate(kept)}
        rows += [{**r, "image": image, "object_id": ids.get(r["object_id"], "")}
                 for r in planted if r["image"] == scene.name]  # fmt: skip
        if i in problems:
            k, detail = VOC_PLANTS[problems[i]](objects, int(rng.integers(len(objects))))
            rows.append({"image": image, "object_id": f"{xml}#{k}", "problem": problems[i],
                         "detail": detail})  # fmt: skip
        write(root / xml, _voc_xml(Path(scene.name).name, objects).encode())
    write(
        root / "Annotations/img_gone.xml",
        _voc_xml("img_gone.png", [("disk", [20, 20, 40, 40])]).encode(),
    )
    gone = "Annotations/img_gone.xml names an image that is not there"
    rows.append({"image": "JPEGImages/img_gone.png", "object_id": "", "problem": "missing_image",
                 "detail": gone})  # fmt: skip
    _write_planted(root / "planted.csv", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    make_det(args.out, np.random.default_rng([args.seed, 14]))


if __name__ == "__main__":
    main()
