"""Real data through the object pipeline: `dvc repro` of ingest, clean, score (and curate, train,
evaluate) with ``task: detection`` and ``task: instance_segmentation`` in a temporary copy of the
repository, on crops of real fluorescence nuclei with their real instance masks and planted
box-label problems.

    .venv/bin/python bench/realdata_detection.py           # ~15 min on 2 busy cores: detection
                                                           # to evaluate (6.8 min), instance seg
                                                           # to score (7.7 min)
    .venv/bin/python bench/realdata_detection.py --quick   # detection to score, 10 epochs
                                                           # (not timed; ~2 min expected)
    options: [--ref HEAD (copy the code of a commit, not the working tree)] [--keep DIR]
             [--crop 128] [--epochs 25] [--inst-epochs 25] [--seed 0]
             [--tasks detection,instance_segmentation] [--no-train] [--inst-train]
             [--bit-depth percentile] [--single-class (one category 'nucleus')]
             [--image-size N (the detectors' input side; default --crop)] [--detector JSON]

Corpus (:func:`build_nuclei`): the 9 uint16 DAPI images of ``../shared/realdata/nucseg_20x``
(512², five organs; Mahbod et al. 2021, Apache-2.0) cut into non-overlapping ``--crop`` squares
(128: 144 crops), written as uint16 TIFF. Each crop's nuclei come from the real instance-id mask
(``label_masks/``, ids with gaps): one COCO annotation per instance (box in pixels from its mask
pixels, compressed-RLE mask through pycocotools) that keeps at least ``MIN_AREA`` = 10 px and at
least ``MIN_VISIBLE`` = 25% of the whole nucleus inside the crop (smaller slivers cut by the crop
border stay unannotated; their count is printed). Two categories, ``small`` and ``large``
nucleus, split at the median visible area, so that wrong-class plants are possible
(``--single-class``: one ``nucleus`` category, no wrong-class plants).

Planted (seeded, each on an image of its own with >= 3 nuclei, never in the test split: the
pipeline's split is a hash of the sample id, :func:`datapipe.manifest.split_by_hash`, checked
against the manifest afterwards): ``missing_box`` (annotation deleted), ``wrong_class`` (small
<-> large, only nuclei at most 0.6x or at least 1.6x the median area), ``shifted_box`` (box and
mask moved by half the box's width and height), ``oversized_box`` (box grown 2x about its centre,
mask kept: clean's ``mask_box_mismatch`` is a fair find), ``dilated_mask`` (mask dilated by 4 px,
box refit to it). Written to ``<work>/planted/nuclei_planted.csv`` (image, object_id, kind,
detail).

Measured from each run's outputs: held-out ``oof_map_50`` (``metrics/score.json``; instance
segmentation also ``oof_mask_map_50``), per planted kind how many images are among the worst 15%
of scored images by ``label_quality`` (``scores.parquet``) and how many are flagged on the right
object in ``reports/label_issues.csv`` (a ``missing`` row whose suggested box has IoU >= 0.5 with
the deleted box; otherwise a row on the planted object id), label-issue rows on unplanted
objects, clean's object findings (``reports/data_issues.csv``, planted objects apart), and the
test split's COCO mAP when train and evaluate ran (``reports/eval_metrics.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import tifffile
from pycocotools import mask as coco_mask

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.realdata_pipeline import _DONE
from datapipe.manifest import sample_id, split_by_hash
from datapipe.objects import box_iou
from tests.dvc_harness import CODE, ONE_THREAD, REPO, copy_repo, set_params
from tests.realdata_corpora import Corpus, flags_by_check, write_planted

NUCSEG = REPO.parent / "shared" / "realdata" / "nucseg_20x"
WORST = 0.15
MIN_AREA = 10  # px of a nucleus inside the crop
MIN_VISIBLE = 0.25  # share of the whole nucleus inside the crop
#: planted box-label problems per kind (each on an image of its own)
PLANTS = {"missing_box": 4, "wrong_class": 4, "shifted_box": 4, "oversized_box": 3,
          "dilated_mask": 3}  # fmt: skip
SHIFT = 0.5  # share of the box's width / height a shifted box moves
GROW = 2.0  # oversized boxes: this factor about the centre
DILATE = 4  # px, dilated masks
CLEAR = (0.6, 1.6)  # wrong_class plants only on nuclei this far from the median area
FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}  # DatasetParams' default splits
TASKS = ("detection", "instance_segmentation")
NAMES = {"detection": "nuclei_det", "instance_segmentation": "nuclei_inst"}  # params datasets


def build_nuclei(
    root: Path,
    nucseg: Path = NUCSEG,
    *,
    crop: int = 128,
    seed: int = 0,
    plants: Mapping[str, int] = PLANTS,
    single_class: bool = False,
    split_seed: int = 0,
) -> Corpus:
    """Write ``root/images/*.tif`` (uint16 crops) and ``root/annotations.json`` (COCO); the
    corpus' ``planted`` lists the plants, its ``dataset`` the params.yaml entry (``task`` to
    be set), ``dataset["_meta"]`` counts (objects, skipped slivers, threshold)."""
    (root / "images").mkdir(parents=True)
    images, objects, skipped = _crops(root, nucseg, crop)
    areas = np.array([o["area"] for o in objects], np.float64)
    median = float(np.median(areas))
    for o in objects:
        o["category_id"] = 1 if single_class or o["area"] < median else 2
    rng = np.random.default_rng(seed)
    planted = _plant(objects, images, plants, rng, median=median, crop=crop, seed=split_seed)
    if single_class:
        planted = planted[planted["kind"] != "wrong_class"].reset_index(drop=True)
    categories = ([{"id": 1, "name": "nucleus"}] if single_class
                  else [{"id": 1, "name": "small"}, {"id": 2, "name": "large"}])  # fmt: skip
    annotations = [_coco(o) for o in objects if not o.get("deleted")]
    (root / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    meta = {"images": len(images), "objects": len(annotations), "skipped_slivers": skipped,
            "median_area": median}  # fmt: skip
    return Corpus("nuclei", root, planted, {"root": str(root), "_meta": meta})


def _crops(root: Path, nucseg: Path, crop: int) -> tuple[list[dict], list[dict], int]:
    images: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    skipped = 0
    for path in sorted((nucseg / "images_16bit").glob("*.tif")):
        pixels = tifffile.imread(path)
        ids = tifffile.imread(nucseg / "label_masks" / path.name)
        if pixels.dtype != np.uint16 or ids.shape != pixels.shape:
            raise ValueError(f"{path.name}: expected uint16 {ids.shape}; got {pixels.dtype}")
        whole = np.bincount(ids.ravel())
        for y in range(0, pixels.shape[0] - crop + 1, crop):
            for x in range(0, pixels.shape[1] - crop + 1, crop):
                name = f"images/{path.stem}_{y:03d}_{x:03d}.tif"
                tifffile.imwrite(root / name, pixels[y : y + crop, x : x + crop])
                images.append({"id": len(images) + 1, "file_name": name, "width": crop,
                               "height": crop})  # fmt: skip
                window = ids[y : y + crop, x : x + crop]
                for k in np.unique(window[window > 0]):
                    inside = window == k
                    area = int(inside.sum())
                    if area < MIN_AREA or area < MIN_VISIBLE * whole[k]:
                        skipped += 1
                        continue
                    objects.append({"id": len(objects) + 1, "image_id": images[-1]["id"],
                                    "mask": inside, "area": area})  # fmt: skip
    return images, objects, skipped


def _box(mask: np.ndarray) -> list[float]:
    """COCO ``[x, y, w, h]`` covering the mask's pixels (pixel edges)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1),
            float(rows[-1] - rows[0] + 1)]  # fmt: skip


def _coco(o: Mapping[str, Any]) -> dict[str, Any]:
    rle = coco_mask.encode(np.asfortranarray(o["mask"].astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"id": o["id"], "image_id": o["image_id"], "category_id": o["category_id"],
            "bbox": o.get("bbox") or _box(o["mask"]), "area": float(o["mask"].sum()),
            "iscrowd": 0, "segmentation": rle}  # fmt: skip


def _plant(
    objects: list[dict[str, Any]],
    images: list[dict[str, Any]],
    plants: Mapping[str, int],
    rng: np.random.Generator,
    *,
    median: float,
    crop: int,
    seed: int,
) -> pd.DataFrame:
    names = [e["file_name"] for e in images]
    which, _, split_names, _ = split_by_hash(
        [sample_id(n) for n in names], fractions=FRACTIONS, seed=seed
    )
    per_image: dict[int, list[dict[str, Any]]] = {}
    for o in objects:
        per_image.setdefault(o["image_id"], []).append(o)
    eligible = [i for i, e in enumerate(images) if split_names[which[i]] != "test"
                and len(per_image.get(e["id"], [])) >= 3]  # fmt: skip
    order = list(rng.permutation(eligible))
    rows = []
    for kind, n in plants.items():
        done = 0
        while done < n and order:
            i = int(order.pop())
            target = _pick(kind, per_image[images[i]["id"]], rng, median=median, crop=crop)
            if target is None:
                continue
            detail = _apply(kind, target, rng, crop=crop)
            rows.append({"image": names[i], "object_id": str(target["id"]), "kind": kind,
                         "detail": detail})  # fmt: skip
            done += 1
        if done < n:
            raise ValueError(f"only {done} of {n} {kind} plants found an image")
    return pd.DataFrame(rows, columns=["image", "object_id", "kind", "detail"])


def _pick(
    kind: str, mine: list[dict[str, Any]], rng: np.random.Generator, *, median: float, crop: int
) -> dict[str, Any] | None:
    """An object of the image fit for ``kind``: away from the crop border (so a moved box
    stays whole) and, for a class swap, clearly small or clearly large."""

    def inner(o: dict[str, Any]) -> bool:
        x, y, w, h = _box(o["mask"])
        return x >= 2 and y >= 2 and x + w <= crop - 2 and y + h <= crop - 2

    fit = [o for o in mine if inner(o)]
    if kind == "wrong_class":
        fit = [o for o in fit if not CLEAR[0] * median < o["area"] < CLEAR[1] * median]
    return fit[int(rng.integers(len(fit)))] if fit else None


def _apply(kind: str, o: dict[str, Any], rng: np.random.Generator, *, crop: int) -> str:
    """Change the object in place; returns the planted.csv detail."""
    x, y, w, h = _box(o["mask"])
    if kind == "missing_box":
        o["deleted"] = True
        return f"deleted box [{x:.0f}, {y:.0f}, {x + w:.0f}, {y + h:.0f}]"
    if kind == "wrong_class":
        o["category_id"] = 3 - o["category_id"]
        return f"area {o['area']} px given as {'small' if o['category_id'] == 1 else 'large'}"
    if kind == "shifted_box":
        offset = []
        for start, size in ((x, w), (y, h)):
            step = max(1, round(SHIFT * size)) * int(rng.choice([-1, 1]))
            if not 0 <= start + step <= crop - size:
                step = -step
            offset.append(int(np.clip(step, -start, crop - size - start)))
        o["mask"] = np.roll(o["mask"], (offset[1], offset[0]), axis=(0, 1))
        return f"box and mask moved by ({offset[0]}, {offset[1]}) px, box {w:.0f}x{h:.0f}"
    if kind == "oversized_box":
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = max(0.0, cx - GROW * w / 2), max(0.0, cy - GROW * h / 2)
        x1, y1 = min(float(crop), cx + GROW * w / 2), min(float(crop), cy + GROW * h / 2)
        o["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        return f"box {w:.0f}x{h:.0f} grown to {x1 - x0:.0f}x{y1 - y0:.0f}, mask kept"
    if kind == "dilated_mask":
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * DILATE + 1, 2 * DILATE + 1))
        o["mask"] = cv2.dilate(o["mask"].astype(np.uint8), disk).astype(bool)
        return f"mask dilated {DILATE} px ({o['area']} -> {int(o['mask'].sum())} px), box refit"
    raise ValueError(f"unknown plant kind {kind!r}")


# --- measuring ---------------------------------------------------------------------------------


def measure(runs: Path, planted: pd.DataFrame, *, evaluated: bool) -> dict[str, Any]:
    """The figures of one dataset's run (see the module docstring)."""
    manifest = pd.read_parquet(runs / "manifest.parquet")
    split = dict(zip(manifest["image"], manifest["split"], strict=True))
    out: dict[str, Any] = {"plants_in_test": int((planted["image"].map(split) == "test").sum())}
    data_issues = pd.read_csv(runs / "reports" / "data_issues.csv", dtype={"object_id": str})
    on_objects = data_issues["object_id"].fillna("") != ""
    planted_ids = set(planted["object_id"])
    real = data_issues[on_objects & ~data_issues["object_id"].isin(planted_ids)]
    out["clean_real"] = real["check"].value_counts().to_dict()
    mine = data_issues[on_objects & data_issues["object_id"].isin(planted_ids)]
    out["clean_planted"] = mine["check"].value_counts().to_dict()
    out["clean_images"] = flags_by_check(data_issues[~on_objects])
    score = runs / "metrics" / "score.json"
    if not score.is_file():
        return out
    metrics = json.loads(score.read_text())  # headline numbers; all of them in reports/
    metrics |= json.loads((runs / "reports" / "score_metrics.json").read_text())
    out |= {k: metrics.get(k) for k in ("oof_map_50", "oof_mask_map_50", "label_issues")}
    scores = pd.read_parquet(runs / "scores.parquet")
    scored = scores[scores["scored"].fillna(False).astype(bool)]
    cut = max(1, int(np.ceil(WORST * len(scored))))
    worst = set(scored.sort_values("label_quality", kind="stable")["image"].head(cut))
    issues = pd.read_csv(runs / "reports" / "label_issues.csv", dtype={"object_id": str},
                         keep_default_na=False)  # fmt: skip
    out |= {"scored": len(scored), "worst_cut": cut, "kinds": {}}
    for kind, group in planted.groupby("kind", sort=False):
        hits = [_on_object(issues[issues["image"] == r.image], r) for r in group.itertuples()]
        out["kinds"][kind] = {
            "n": len(group),
            "worst": int(group["image"].isin(worst).sum()),
            "on_object": sum(bool(h) for h in hits),
            "issues": ",".join(sorted({h for h in hits if h})),
        }
    touched = set(planted["image"])
    unplanted = issues[~issues["image"].isin(touched)]
    out["unplanted_rows"] = unplanted["issue"].value_counts().to_dict()
    out["unplanted_images"] = int(unplanted["image"].nunique())
    if evaluated and (runs / "reports" / "eval_metrics.json").is_file():
        ev = json.loads((runs / "reports" / "eval_metrics.json").read_text())
        out["test"] = {k: ev.get(k) for k in ("map_50", "map", "mask_map_50", "mask_map",
                                              "mar_max", "test_objects")}  # fmt: skip
    return out


def _on_object(rows: pd.DataFrame, plant: Any) -> str:
    """The issue that names the planted object ('' when none does)."""
    if plant.kind == "missing_box":
        deleted = json.loads(plant.detail.removeprefix("deleted box "))
        for r in rows[rows["issue"] == "missing"].itertuples():
            suggested = np.array([json.loads(str(r.suggested_box))], np.float32)
            if box_iou(np.array([deleted], np.float32), suggested)[0, 0] >= 0.5:
                return "missing"
        return ""
    on = rows[rows["object_id"] == plant.object_id]
    return str(on["issue"].iat[0]) if len(on) else ""


# --- the run -----------------------------------------------------------------------------------


def repro_live(work: Path, target: str, seconds: dict[str, float]) -> None:
    """`dvc repro target` as bench/realdata_pipeline.py's ``repro`` (one torch thread, each
    stage's own seconds into ``seconds``, SystemExit on failure), but with the stages' progress
    lines passed to stderr while it runs: a detector's scoring takes minutes."""
    env = {**os.environ, **ONE_THREAD, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    start, lines = time.perf_counter(), []
    command = [sys.executable, "-m", "dvc", "repro", target]
    with subprocess.Popen(
        command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if ": " in line and not line.startswith((">", "Running", "Updating")):
                print(f"  {line.rstrip()}", file=sys.stderr, flush=True)
    text = "".join(lines)
    if proc.returncode != 0:
        raise SystemExit(f"dvc repro {target} failed:\n{text[-4000:]}")
    for stage, dataset, s in _DONE.findall(text):
        seconds[f"{stage}@{dataset}"] = float(s)
    seconds[f"repro {target}"] = time.perf_counter() - start
    print(f"  dvc repro {target}: {seconds[f'repro {target}']:.0f} s", file=sys.stderr, flush=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _counts(d: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def print_tables(results: dict[str, dict[str, Any]], planted: pd.DataFrame) -> None:
    tasks = list(results)
    print("| planted (not in test) | n | " + " | ".join(
        f"{t}: worst {WORST:.0%} | {t}: flagged on object" for t in tasks) + " |")  # fmt: skip
    print("|---|---|" + "---|---|" * len(tasks))
    for kind, n in planted["kind"].value_counts(sort=False).items():
        cells = []
        for t in tasks:
            k = results[t].get("kinds", {}).get(kind)
            cells += (["-", "-"] if k is None else
                      [f"{k['worst']}/{n}", f"{k['on_object']}/{n}"
                       + (f" ({k['issues']})" if k["issues"] else "")])  # fmt: skip
        print(f"| {kind} | {n} | " + " | ".join(cells) + " |")
    print()
    print("| figure | " + " | ".join(tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    lines = {
        "held-out mAP@0.5 (oof_map_50)": lambda r: _fmt(r.get("oof_map_50")),
        "held-out mask mAP@0.5": lambda r: _fmt(r.get("oof_mask_map_50")),
        "planted in worst 15% (all kinds)": lambda r: _total(r, "worst"),
        "planted flagged on the object": lambda r: _total(r, "on_object"),
        "images flagged (label_issues)": lambda r: _fmt(r.get("label_issues")),
        "label-issue rows on unplanted images": lambda r: (
            f"{_counts(r['unplanted_rows'])} ({r['unplanted_images']} images)"
            if "unplanted_rows" in r else "-"),
        "clean: real objects": lambda r: _counts(r["clean_real"]),
        "clean: planted objects": lambda r: _counts(r["clean_planted"]),
        "clean: images": lambda r: _counts(r["clean_images"]),
        "test mAP@0.5 / mAP": lambda r: (f"{_fmt(r['test']['map_50'])} / {_fmt(r['test']['map'])}"
                                         if "test" in r else "-"),
        "test mask mAP@0.5": lambda r: _fmt(r["test"].get("mask_map_50")) if "test" in r else "-",
        "stage s": lambda r: r.get("seconds", "-"),
        "failure": lambda r: r.get("failure", "-"),
    }  # fmt: skip
    for name, cell in lines.items():
        print(f"| {name} | " + " | ".join(cell(results[t]) for t in tasks) + " |")


def _total(r: Mapping[str, Any], key: str) -> str:
    kinds = r.get("kinds")
    if not kinds:
        return "-"
    n = sum(k["n"] for k in kinds.values())
    return f"{sum(k[key] for k in kinds.values())}/{n}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="detection only, 10 epochs, up to score")  # fmt: skip
    parser.add_argument("--ref", help="copy the code of this commit instead of the working tree")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=25, help="detection scoring / training")
    parser.add_argument("--inst-epochs", type=int, default=25, help="instance seg scoring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--no-train", action="store_true", help="stop detection at score")
    parser.add_argument("--inst-train", action="store_true", help="instance seg to evaluate too")
    parser.add_argument("--bit-depth", default="percentile", help="datasets.*.bit_depth")
    parser.add_argument("--single-class", action="store_true", help="one category 'nucleus'")
    parser.add_argument("--image-size", type=int, help="detector input side (default: --crop)")
    parser.add_argument("--detector", type=json.loads, default={},
                        help="JSON of detector knobs")  # fmt: skip
    args = parser.parse_args()
    tasks = [t for t in args.tasks.split(",") if t]
    if args.quick:
        tasks, args.epochs, args.no_train = ["detection"], 10, True
    if not NUCSEG.is_dir():
        raise SystemExit(f"real image data not found at {NUCSEG}")
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        corpus = build_nuclei(base / "data" / "nuclei", crop=args.crop, seed=args.seed,
                              single_class=args.single_class)  # fmt: skip
        write_planted(corpus, base / "planted")
        meta = corpus.dataset["_meta"]
        print(f"corpus: {meta['images']} crops, {meta['objects']} objects "
              f"({meta['skipped_slivers']} border slivers / specks left out), median area "
              f"{meta['median_area']:.0f} px, {len(corpus.planted)} plants",
              file=sys.stderr)  # fmt: skip
        work = copy_repo(base / "repo", names=CODE, ref=args.ref)
        entry = {"folds": 3, "bit_depth": args.bit_depth}
        side = args.image_size or args.crop
        knobs = {"detector": args.detector} if args.detector else {}
        recipes = {"detection": {"epochs": args.epochs, "image_size": side, **knobs},
                   "instance_segmentation": {"epochs": args.inst_epochs,
                                             "image_size": side, **knobs}}  # fmt: skip
        entry["root"] = corpus.dataset["root"]
        datasets = {NAMES[t]: {**entry, "task": t, "score": recipes[t], "train": recipes[t]}
                    for t in tasks}  # fmt: skip
        set_params(work, {"datasets": datasets, "score": {"device": "cpu", "loader_workers": 0},
                          "train": {"device": "cpu", "loader_workers": 0}},
                   replace=("datasets",))  # fmt: skip
        results: dict[str, dict[str, Any]] = {}
        start = time.perf_counter()
        for task, name in zip(tasks, datasets, strict=True):
            full = (task == "detection" and not args.no_train) or (
                task != "detection" and args.inst_train
            )
            seconds: dict[str, float] = {}
            failure = None
            try:
                repro_live(work, f"{'evaluate' if full else 'score'}@{name}", seconds)
            except SystemExit as exc:  # a failed stage: measure what is there, say why
                failure = str(exc).strip().splitlines()
                print(str(exc)[-3000:], file=sys.stderr)
            runs = work / "runs" / name
            result = measure(runs, corpus.planted, evaluated=full) if (
                runs / "reports" / "data_issues.csv").is_file() else {}  # fmt: skip
            stages = {k.split("@")[0]: v for k, v in seconds.items() if not k.startswith("repro")}
            result["seconds"] = " + ".join(f"{s} {v:.0f}" for s, v in stages.items()) or "-"
            if failure:
                errors = [line for line in failure if line.startswith("error")]
                result["failure"] = (errors or failure)[-1][:200]
            results[task] = result
        total = time.perf_counter() - start
    code = f"commit {args.ref}" if args.ref else "working tree"
    classes = "1 class" if args.single_class else "small / large"
    print(f"\nreal nuclei through `dvc repro` ({code}): {meta['images']} crops of {args.crop}² "
          f"uint16 at {side} px, {meta['objects']} objects ({classes}), "
          f"{len(corpus.planted)} plants; "
          f"detection {args.epochs} epochs, instance seg "
          f"{args.inst_epochs} epochs, 3 folds, bit_depth {args.bit_depth}, seed {args.seed}; "
          f"total {total:.0f} s\n")  # fmt: skip
    print_tables(results, corpus.planted)
    for task, r in results.items():
        print(f"\n{task}: {r}", file=sys.stderr)


if __name__ == "__main__":
    main()
