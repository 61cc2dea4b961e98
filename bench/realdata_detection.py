"""Real data through the detection pipeline: `dvc repro` of ingest, clean and score on crops of
real fluorescence nuclei images with their real instance masks, with planted box problems.

    .venv/bin/python bench/realdata_detection.py            # ~6 min on 2 cores
    .venv/bin/python bench/realdata_detection.py --quick    # 64 px crops' worth less: ~3 min
    options: [--crop 128] [--planted 10] [--epochs 25] [--task detection|instance_segmentation]
             [--seed 0] [--keep DIR]

Corpus: the 9 uint16 DAPI images of ``../shared/realdata/nucseg_20x`` (512², five organs;
Mahbod et al. 2021) cut into non-overlapping ``--crop`` squares, kept as uint16 TIFF; each
crop's nuclei come from the real instance-id mask (``label_masks/``): one COCO annotation per
instance with at least 16 px inside the crop (its bbox and its RLE mask), one class
``nucleus``. Planted on a seeded choice of crops with at least 3 nuclei: ``missing`` (one
annotation deleted), ``shifted`` (one box moved by half its width and height). The split is the
pipeline's own, so some plants land in the test split, which scoring does not see; the
figures count the plants in scored images.

Prints: images / objects, clean's object findings, the held-out mAP@0.5 (``oof_map_50``), and
per planted kind how many are among the worst 15% of scored images by ``label_quality`` and
how many are flagged on the right object (``reports/label_issues.csv``: a ``missing`` row whose
suggested box overlaps the deleted one at IoU >= 0.5, or the shifted box's own row).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.realdata_pipeline import repro
from datapipe.objects import box_iou
from tests.dvc_harness import CODE, REPO, copy_repo, set_params

NUCSEG = REPO.parent / "shared" / "realdata" / "nucseg_20x"
WORST = 0.15
MIN_PIXELS = 16


def build(root: Path, *, crop: int, planted: int, seed: int) -> pd.DataFrame:
    """Write ``root/images/*.tif`` and ``root/annotations.json``; returns the planted rows
    (kind, image, box x0 y0 x1 y1 of the deleted or original box, object id)."""
    (root / "images").mkdir(parents=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for path in sorted((NUCSEG / "images_16bit").glob("*.tif")):
        pixels = tifffile.imread(path)
        ids = tifffile.imread(NUCSEG / "label_masks" / path.name)
        for y in range(0, pixels.shape[0] - crop + 1, crop):
            for x in range(0, pixels.shape[1] - crop + 1, crop):
                name = f"{path.stem}_{y:03d}_{x:03d}.tif"
                tifffile.imwrite(root / "images" / name, pixels[y : y + crop, x : x + crop])
                image_id = len(images) + 1
                images.append({"id": image_id, "file_name": name, "width": crop, "height": crop})
                window = ids[y : y + crop, x : x + crop]
                for k in np.unique(window[window > 0]):
                    inside = window == k
                    if inside.sum() < MIN_PIXELS:
                        continue
                    rle = mask_utils.encode(np.asfortranarray(inside.astype(np.uint8)))
                    rle["counts"] = rle["counts"].decode()
                    x0, y0, w, h = (float(v) for v in mask_utils.toBbox(rle))
                    annotations.append({
                        "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                        "bbox": [x0, y0, w, h], "area": float(inside.sum()), "iscrowd": 0,
                        "segmentation": rle,
                    })  # fmt: skip
    rng = np.random.default_rng(seed)
    per_image = pd.Series([a["image_id"] for a in annotations]).value_counts()
    busy = np.sort(per_image[per_image >= 3].index.to_numpy())
    chosen = rng.choice(busy, size=min(2 * planted, len(busy)), replace=False)
    rows, drop = [], set()
    for n, image_id in enumerate(chosen):
        anns = [a for a in annotations if a["image_id"] == image_id]
        a = anns[int(rng.integers(len(anns)))]
        x0, y0, w, h = a["bbox"]
        kind = "missing" if n % 2 == 0 else "shifted"
        rows.append({"kind": kind, "image": f"images/{images[image_id - 1]['file_name']}",
                     "object_id": str(a["id"]), "box": [x0, y0, x0 + w, y0 + h]})  # fmt: skip
        if kind == "missing":
            drop.add(a["id"])
        else:  # half a box right and down, clipped to the crop
            nx, ny = min(x0 + w / 2, crop - w), min(y0 + h / 2, crop - h)
            a["bbox"] = [nx, ny, w, h]
            a.pop("segmentation")  # a box-only annotation: its mask no longer matches
    annotations = [a for a in annotations if a["id"] not in drop]
    categories = [{"id": 1, "name": "nucleus"}]
    (root / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return pd.DataFrame(rows)


def measure(runs: Path, planted: pd.DataFrame) -> dict[str, Any]:
    scores = pd.read_parquet(runs / "scores.parquet")
    scored = scores[scores["scored"].fillna(False).astype(bool)]
    cut = max(1, int(np.ceil(WORST * len(scored))))
    worst = set(scored.sort_values("label_quality", kind="stable")["image"].head(cut))
    issues = pd.read_csv(runs / "reports" / "label_issues.csv", dtype={"object_id": str})
    seen = planted[planted["image"].isin(set(scored["image"]))]
    out: dict[str, Any] = {"scored": len(scored), "worst_cut": cut}
    for kind, group in seen.groupby("kind"):
        on_object = 0
        for r in group.itertuples():
            mine = issues[issues["image"] == r.image]
            if kind == "shifted":
                on_object += int((mine["object_id"] == r.object_id).any())
                continue
            suggested = [json.loads(b) for b in mine.loc[mine["issue"] == "missing",
                                                         "suggested_box"]]  # fmt: skip
            if suggested:
                overlap = box_iou(np.array([r.box], np.float32), np.array(suggested, np.float32))
                on_object += int(overlap.max() >= 0.5)
        out[str(kind)] = (int(group["image"].isin(worst).sum()), on_object, len(group))
    metrics = json.loads((runs / "metrics" / "score.json").read_text())
    out["oof_map_50"] = metrics.get("oof_map_50")
    data_issues = pd.read_csv(runs / "reports" / "data_issues.csv", dtype={"object_id": str})
    boxes = data_issues[data_issues["object_id"].fillna("") != ""]
    out["clean"] = boxes["check"].value_counts().to_dict()
    out["flagged_images"] = int(scored["is_label_issue"].astype(bool).sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 epochs")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--planted", type=int, default=10, help="per kind")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--task", default="detection",
                        choices=["detection", "instance_segmentation"])  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.epochs = 10
    if not NUCSEG.is_dir():
        raise SystemExit(f"real image data not found at {NUCSEG}")
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        planted = build(base / "data" / "nuclei", crop=args.crop, planted=args.planted,
                        seed=args.seed)  # fmt: skip
        coco = json.loads((base / "data" / "nuclei" / "annotations.json").read_text())
        work = copy_repo(base / "repo", names=CODE)
        recipe = {"epochs": args.epochs, "image_size": args.crop}
        dataset = {"root": str(base / "data" / "nuclei"), "task": args.task, "folds": 3,
                   "score": recipe, "train": {"image_size": args.crop}}  # fmt: skip
        set_params(work, {"datasets": {"nuclei": dataset},
                          "score": {"device": "cpu", "loader_workers": 0}},
                   replace=("datasets",))  # fmt: skip
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        repro(work, "score@nuclei", seconds)
        result = measure(work / "runs" / "nuclei", planted)
    print(f"\nreal nuclei through `dvc repro` ({args.task}, {len(coco['images'])} crops of "
          f"{args.crop}², {len(coco['annotations'])} objects, {args.epochs} epochs x 3 folds, "
          f"{time.perf_counter() - start:.0f} s; seed {args.seed})\n")  # fmt: skip
    print(f"held-out mAP@0.5: {result['oof_map_50']}; scored images {result['scored']}, "
          f"label issues flagged on {result['flagged_images']}; clean's object findings: "
          f"{result['clean'] or 'none'}\n")  # fmt: skip
    print(f"| planted | in scored images | in the worst {WORST:.0%} ({result['worst_cut']}) | "
          "flagged on the object |")  # fmt: skip
    print("|---|---|---|---|")
    for kind in ("missing", "shifted"):
        if kind in result:
            worst, on, n = result[kind]
            print(f"| {kind} | {n} | {worst}/{n} | {on}/{n} |")


if __name__ == "__main__":
    main()
