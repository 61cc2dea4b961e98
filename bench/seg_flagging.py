"""Segmentation label-issue flagging: the fixed issue-share threshold against the data-calibrated
rule, on planted mask corruptions.

    .venv/bin/python bench/seg_flagging.py [--sets nuclei shapes] [--crop 128] [--size N]
                                           [--epochs N] [--seed 0] [--save DIR] [--rules]
    .venv/bin/python bench/seg_flagging.py --rescore DIR [DIR ...] [--rules]

Two corpora, each run through the pipeline's own ingest, clean and score code
(``datapipe.ingest.ingest``, ``datapipe.clean.clean``, ``datapipe.score.score``) with the
sample segmentation recipe of ``params.yaml`` (U-Net, ``score.segmentation``, folds 3):

* ``nuclei``: the 9 real 512² uint16 DAPI images of ``../shared/realdata/nucseg_20x`` tiled
  into ``--crop``² crops (144 at 128²), binary masks as {0, 1}. About 20% of the crops that hold
  at least 3 nuclei get one planted corruption, balanced over four types: ``dilate`` and
  ``erode`` by 2-3 px (elliptic kernel), ``shift`` by 3-4 px in a random direction, and
  ``relabel`` (half of the nuclei, by instance id, relabelled background). Scored at the
  crop's size unless ``--size``.
* ``shapes``: ``sample_data/shapes_seg`` as committed; truth is its ``planted.csv`` masks
  (``mask_eroded``, ``mask_shifted``, ``mask_wrong_class``, and the conflicting duplicate whose
  classes are cycled, ``class_cycled``). Scored at ``params.yaml``'s 48 px.

Flags are scored against the planted set: precision / recall / F1 per corruption type (a type's
precision is not defined on its own; the overall row carries it) for the old fixed rule
(``issue_fraction >= 0.05``) and the new default (``score.seg_issue_fraction: auto``,
``datapipe.scoring.segmentation.issue_threshold``), plus the AUROC of ``label_quality`` and how
many planted masks rank in the worst 10%. ``--rules`` adds a grid of candidate rules (k and
floor of the robust outlier rule, fixed thresholds) over the same scores. One torch thread (a
shared 2-core machine). ``--save DIR`` keeps each set's per-image scores (``<set>.csv``);
``--rescore`` prints the tables from saved scores without training.

The figures in ``datapipe.scoring.segmentation.issue_threshold`` and the README came from
``--sets nuclei --size 64 --epochs 20 --rules`` with ``--seed 0`` and ``--seed 1`` (5-8 min
each on one core) and ``--sets shapes --rules`` (3 min).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tifffile
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datapipe.clean import clean
from datapipe.config import DatasetParams, Params, load_params
from datapipe.ingest import ingest
from datapipe.score import score
from datapipe.scoring.segmentation import AUTO_FLOOR, AUTO_K, issue_threshold

ROOT = Path(__file__).resolve().parents[1]
NUCSEG = ROOT.parent / "shared" / "realdata" / "nucseg_20x"
SHAPES = ROOT / "sample_data" / "shapes_seg"
TYPES = ("dilate", "erode", "shift", "relabel")
SHAPES_TYPES = {
    "mask_eroded": "erode",
    "mask_shifted": "shift",
    "mask_wrong_class": "relabel",
    "conflicting_label_duplicate": "class_cycled",
}
OLD_FRACTION = 0.05

Rule = Callable[[np.ndarray], np.ndarray]


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def corrupt(
    mask: np.ndarray, instances: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """One planted corruption of a {0, 1} ``mask`` ``(H, W)`` uint8 and what was drawn."""
    if kind in ("dilate", "erode"):
        r = int(rng.integers(2, 4))
        op = cv2.dilate if kind == "dilate" else cv2.erode
        return op(mask, _disk(r)), f"{kind} {r} px"
    if kind == "shift":
        d = int(rng.integers(3, 5))
        angle = rng.uniform(0, 2 * np.pi)
        dx, dy = round(d * np.cos(angle)), round(d * np.sin(angle))
        moved = cv2.warpAffine(
            mask, np.float32([[1, 0, dx], [0, 1, dy]]), mask.shape[::-1], flags=cv2.INTER_NEAREST
        )
        return moved, f"shift ({dx}, {dy}) px"
    ids = np.unique(instances[instances > 0])
    drop = rng.choice(ids, size=(len(ids) + 1) // 2, replace=False)
    out = mask.copy()
    out[np.isin(instances, drop)] = 0
    return out, f"relabel {len(drop)} of {len(ids)} nuclei as background"


def nuclei_root(dest: Path, *, crop: int, seed: int) -> pd.DataFrame:
    """Write the tiled nuclei set under ``dest`` (images/, masks/); the planted crops' table."""
    rng = np.random.default_rng(seed)
    (dest / "images").mkdir(parents=True)
    (dest / "masks").mkdir()
    crops = []
    for path in sorted((NUCSEG / "images_16bit").glob("*.tif")):
        image = tifffile.imread(path)
        mask = (cv2.imread(str(NUCSEG / "mask_binary" / f"{path.stem}.png"), 0) > 0).astype(
            np.uint8
        )
        instances = tifffile.imread(NUCSEG / "label_masks" / path.name)
        for y in range(0, image.shape[0] - crop + 1, crop):
            for x in range(0, image.shape[1] - crop + 1, crop):
                window = np.s_[y : y + crop, x : x + crop]
                crops.append((f"{path.stem}_{y:03d}_{x:03d}", image[window], mask[window],
                              instances[window]))  # fmt: skip
    eligible = [i for i, c in enumerate(crops) if len(np.unique(c[3][c[3] > 0])) >= 3]
    per_type = round(0.2 * len(crops) / len(TYPES))
    chosen = rng.choice(eligible, size=per_type * len(TYPES), replace=False)
    kinds = dict(zip(chosen.tolist(), np.repeat(TYPES, per_type), strict=True))
    planted = []
    for i, (name, image, mask, instances) in enumerate(crops):
        if i in kinds:
            new, detail = corrupt(mask, instances, kinds[i], rng)
            changed = int((new != mask).sum())
            planted.append({
                "image": f"images/{name}.tif", "type": kinds[i], "detail": detail,
                "changed_pixels": changed, "changed_share": changed / mask.size,
            })  # fmt: skip
            mask = new
        tifffile.imwrite(dest / "images" / f"{name}.tif", image)
        if not cv2.imwrite(str(dest / "masks" / f"{name}.png"), mask):
            raise OSError(f"could not write {dest / 'masks' / name}.png")
    return pd.DataFrame(planted)


def shapes_truth() -> pd.DataFrame:
    planted = pd.read_csv(SHAPES / "planted.csv")
    planted = planted[planted["problem"].isin(SHAPES_TYPES)]
    return pd.DataFrame(
        {"image": planted["image"], "type": planted["problem"].map(SHAPES_TYPES),
         "detail": planted["detail"]}
    )  # fmt: skip


def run_set(root: Path, params: Params, *, size: int, epochs: int, name: str) -> pd.DataFrame:
    """ingest -> clean -> score on ``root``; the scored rows (image, issue_fraction, ...)."""
    dataset = DatasetParams(root=root, task="segmentation", folds=3)
    ingested = ingest(dataset, name=name, workers=0)
    cleaned = clean(ingested.manifest, ingested.stats, dataset, params.clean, workers=0, name=name)
    fit = params.score.segmentation.model_copy(update={"image_size": size, "epochs": epochs})
    score_params = params.score.model_copy(update={"segmentation": fit, "device": "cpu"})
    result = score(
        cleaned.manifest, ingested.stats, cleaned.issues, dataset, score_params,
        workers=0, device=torch.device("cpu"), name=name,
    )  # fmt: skip
    if result is None:
        raise RuntimeError("score returned nothing on a single process")
    scores = result.scores[result.scores["scored"].astype(bool)]
    log = logging.getLogger("datapipe")
    log.info("%s: OOF mIoU %.3f", name, result.metrics["oof_miou"])
    return scores[["image", "issue_fraction", "label_quality", "is_label_issue"]].assign(
        oof_miou=result.metrics["oof_miou"]
    )


def with_truth(scores: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    types = truth.set_index("image")["type"]
    return scores.assign(type=scores["image"].map(types).fillna("clean"))


def prf(flags: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    hit = float((flags & truth).sum())
    precision = hit / flags.sum() if flags.any() else float("nan")
    recall = hit / truth.sum() if truth.any() else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if hit else 0.0
    return precision, recall, f1


def rules(grid: bool) -> dict[str, Rule]:
    chosen: dict[str, Rule] = {
        f"old: >= {OLD_FRACTION}": lambda f: f >= OLD_FRACTION,
        f"new: auto (median + {AUTO_K:g} MAD, floor {AUTO_FLOOR:g})": lambda f: (
            f >= issue_threshold(f)
        ),
    }
    if not grid:
        return chosen
    for k in (2.0, 3.0, 4.0, 5.0, 6.0, 8.0):
        for floor in (0.005, 0.01, 0.02):
            chosen[f"median + {k:g} MAD, floor {floor:g}"] = lambda f, k=k, floor=floor: (
                f >= issue_threshold(f, k=k, floor=floor)
            )
    for t in (0.01, 0.02, 0.03):
        chosen[f">= {t}"] = lambda f, t=t: f >= t
    return chosen


def table(name: str, scored: pd.DataFrame, candidates: dict[str, Rule]) -> None:
    f = scored["issue_fraction"].to_numpy(np.float64)
    planted = (scored["type"] != "clean").to_numpy()
    types = [t for t in (*TYPES, "class_cycled") if (scored["type"] == t).any()]
    worst = np.argsort(f, kind="stable")[::-1][: max(1, int(np.ceil(0.1 * len(f))))]
    in_worst = int(planted[worst].sum())
    auroc = roc_auc_score(planted, -scored["label_quality"].to_numpy())
    counts = ", ".join(f"{t} {int((scored['type'] == t).sum())}" for t in types)
    print(
        f"\n{name}: {len(f)} scored, {int(planted.sum())} planted "
        f"({counts}), "
        f"OOF mIoU {scored['oof_miou'].iloc[0]:.3f}, label_quality AUROC {auroc:.3f}, "
        f"{in_worst} planted in the worst 10% ({len(worst)}); "
        f"clean issue share median {np.median(f[~planted]):.4f}, "
        f"auto threshold {issue_threshold(f):.4f}\n"
    )
    print(f"| rule | flagged | P / R / F1 | {' | '.join(f'R {t}' for t in types)} |")
    print(f"|---|---|---|{'---|' * len(types)}")
    for label, rule in candidates.items():
        flags = rule(f)
        p, r, f1 = prf(flags, planted)
        per_type = [f"{flags[(scored['type'] == t).to_numpy()].mean():.2f}" for t in types]
        print(f"| {label} | {int(flags.sum())} | {p:.2f} / {r:.2f} / {f1:.2f} | "
              f"{' | '.join(per_type)} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--sets", nargs="*", choices=["nuclei", "shapes"], default=["nuclei", "shapes"]
    )
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--size", type=int, help="nuclei scoring size (default: the crop's)")
    parser.add_argument("--epochs", type=int, help="default: params.yaml's")
    parser.add_argument("--seed", type=int, default=0, help="which crops get which corruption")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--save", type=Path, help="keep the per-image scores here")
    parser.add_argument("--rules", action="store_true", help="also a grid of candidate rules")
    parser.add_argument("--rescore", type=Path, nargs="+", help="tables from --save folders")
    args = parser.parse_args()
    candidates = rules(args.rules)
    if args.rescore:
        for folder in args.rescore:
            for path in sorted(folder.glob("*.csv")):
                table(f"{folder}/{path.stem}", pd.read_csv(path), candidates)
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    params = load_params(ROOT / "params.yaml")
    epochs = args.epochs or params.score.segmentation.epochs
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    for which in args.sets:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            if which == "nuclei":
                root = Path(tmp) / "nuclei"
                truth = nuclei_root(root, crop=args.crop, seed=args.seed)
                size = args.size or args.crop
                print(truth.groupby("type")["changed_share"].describe()[["min", "50%", "max"]])
            else:
                root, truth, size = SHAPES, shapes_truth(), params.score.segmentation.image_size
            scores = with_truth(run_set(root, params, size=size, epochs=epochs, name=which), truth)
        if args.save:
            scores.to_csv(args.save / f"{which}.csv", index=False)
        title = f"{which} ({size} px, {epochs} epochs, {time.perf_counter() - start:.0f} s)"
        table(title, scores, candidates)


if __name__ == "__main__":
    main()
