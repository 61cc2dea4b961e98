"""Out-of-fold detectors on the detection sample set: do held-out boxes find the planted
box-label problems, and how fast is a fold epoch?

    .venv/bin/python bench/detection_oof.py [--model retinanet_resnet18_fpn] [--epochs 30]
        [--folds 4] [--batch 4] [--lr 0.01] [--threads 2]

Reads ``sample_data/shapes_det`` (COCO) with the annotation checks' integrity problems left
out (as clean would exclude them), trains one detector per fold from random init on the
others (:func:`datapipe.scoring.detection.detection_out_of_fold`), scores the held-out
predictions with cleanlab.object_detection, and prints: images/s per fold epoch, the share of
images with a planted box-label problem (missing, wrong class, shifted, oversized) among the
worst 15% by label quality, the share of those problems flagged on the right object (a missing
box counts when an overlooked prediction is reported in its image), and the held-out mAP@0.5
of the boxes against the given labels (a check that the detectors learned anything).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datapipe.checks.boxes import BoxCheckSettings, box_issues  # noqa: E402
from datapipe.io import read_image, to_unit_float  # noqa: E402
from datapipe.manifest import sample_id  # noqa: E402
from datapipe.models import build_detector  # noqa: E402
from datapipe.objects import box_iou, read_annotations  # noqa: E402
from datapipe.scoring.detection import Boxes, detection_label_issues, detection_out_of_fold  # noqa: E402
from datapipe.scoring.oof import TrainSettings  # noqa: E402

DATA = ROOT / "sample_data" / "shapes_det"
LABEL_PROBLEMS = ("missing_box", "wrong_class", "shifted_box", "oversized_box")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="retinanet_resnet18_fpn")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ann = read_annotations(DATA)
    present = [e for e in ann.images if not e.problem]
    sizes = {sample_id(e.image): (128, 128) for e in present}
    issues = box_issues(ann.objects, ann.images, sizes, BoxCheckSettings(min_size=128))
    broken = set(issues.loc[issues["severity"] == "error", "object_id"])
    objects = ann.objects[~ann.objects["object_id"].isin(broken) & (ann.objects["problem"] == "")]
    images, targets, names = [], [], []
    for e in present:
        unit = to_unit_float(
            read_image(DATA / e.image), bit_depth=12 if e.image.endswith(".tif") else 8
        )
        images.append(
            ((unit - unit.mean()) / (unit.std() + 1e-6)).transpose(2, 0, 1).astype(np.float32)
        )
        mine = objects[objects["image"] == e.image]
        targets.append(
            Boxes(
                mine[["x0", "y0", "x1", "y1"]].to_numpy(np.float32),
                mine["class_id"].to_numpy(np.int64),
            )
        )
        names.append((e.image, mine["object_id"].tolist()))
    folds = np.arange(len(images)) % args.folds
    settings = TrainSettings.of(
        epochs=args.epochs, batch_size=args.batch, lr=args.lr, amp=False, warmup_epochs=1.0
    )
    start = time.process_time(), time.perf_counter()
    predictions = detection_out_of_fold(
        images,
        targets,
        folds,
        settings=settings,
        make_model=lambda: build_detector(
            args.model, in_channels=1, num_classes=len(ann.classes), min_size=128, max_size=128
        ),
    )
    cpu, wall = time.process_time() - start[0], time.perf_counter() - start[1]
    fold_epochs = args.folds * args.epochs
    trained = len(images) * (args.folds - 1) / args.folds
    print(
        f"{args.model}: {len(images)} images, {args.folds} folds x {args.epochs} epochs in "
        f"{wall:.0f} s wall, {cpu:.0f} CPU-s; {trained * fold_epochs / wall:.1f} training images/s"
    )
    found = detection_label_issues(targets, predictions, num_classes=len(ann.classes))
    planted = pd.read_csv(DATA / "planted.csv", dtype=str, keep_default_na=False)
    planted = planted[planted["problem"].isin(LABEL_PROBLEMS)]
    index = {image: i for i, (image, _) in enumerate(names)}
    quality = found.images["label_quality"].to_numpy()
    worst = set(
        np.argsort(quality, kind="stable")[: max(1, int(np.ceil(0.15 * len(quality))))].tolist()
    )
    hit_image = [index[r.image] in worst for r in planted.itertuples()]
    on_object = []
    for r in planted.itertuples():
        i = index[r.image]
        if r.problem == "missing_box":
            on_object.append(bool((found.missing["image"] == i).any()))
        else:
            k = names[i][1].index(r.object_id) if r.object_id in names[i][1] else -1
            rows = found.boxes[(found.boxes["image"] == i) & (found.boxes["box"] == k)]
            on_object.append(bool(len(rows)) and rows["issue"].iat[0] != "")
    print(
        f"planted box-label problems in the worst 15% of images: {sum(hit_image)}/{len(planted)}; "
        f"flagged on the right object: {sum(on_object)}/{len(planted)}"
    )
    print(
        f"images flagged by cleanlab: {int(found.images['is_label_issue'].sum())}/{len(images)}; "
        f"mAP@0.5 of held-out boxes vs given: {_map50(targets, predictions, len(ann.classes)):.3f}"
    )
    for kind in LABEL_PROBLEMS:
        mine = planted["problem"] == kind
        print(
            f"  {kind}: worst-15% {sum(np.array(hit_image)[mine])}/{int(mine.sum())}, "
            f"on object {sum(np.array(on_object)[mine])}/{int(mine.sum())}"
        )


def _map50(targets: list[Boxes], predictions: list[Boxes], num_classes: int) -> float:
    """Mean over classes of VOC-style AP at IoU 0.5 (all-point interpolation)."""
    aps = []
    for k in range(num_classes):
        scored, total = [], 0
        for t, p in zip(targets, predictions, strict=True):
            gt = t.boxes[t.labels == k]
            total += len(gt)
            mine = np.flatnonzero(p.labels == k)
            mine = mine[np.argsort(-p.scores[mine])] if p.scores is not None else mine
            used = np.zeros(len(gt), bool)
            for j in mine:
                iou = box_iou(p.boxes[j : j + 1], gt)[0] if len(gt) else np.zeros(0)
                best = int(np.argmax(iou)) if len(iou) else -1
                ok = best >= 0 and iou[best] >= 0.5 and not used[best]
                if ok:
                    used[best] = True
                scored.append((float(p.scores[j]) if p.scores is not None else 1.0, ok))
        if total == 0:
            continue
        scored.sort(key=lambda s: -s[0])
        tp = np.cumsum([ok for _, ok in scored])
        precision = tp / np.arange(1, len(scored) + 1) if scored else np.zeros(0)
        recall = tp / total if scored else np.zeros(0)
        ap, prev = 0.0, 0.0
        for r in np.unique(recall):
            ap += (r - prev) * float(precision[recall >= r].max())
            prev = r
        aps.append(ap)
    return float(np.mean(aps)) if aps else float("nan")


if __name__ == "__main__":
    main()
