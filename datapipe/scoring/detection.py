"""Out-of-fold object detectors and the label issues of boxes (issue 14's scoring core).

Per fold, a torchvision detector (:func:`datapipe.models.build_detector`) trains on the
other folds with the shared loop (:func:`datapipe.loop.fit`, the detector computing its own
losses: :class:`datapipe.loop.ModelLoss`) and predicts the held-out images. The held-out
predictions go through ``cleanlab.object_detection``: an image's label quality and issue
flag, and per given box the *badly located* and *swapped* (wrong class) sub-scores; per
confident prediction without a given box, the *overlooked* (missing box) score. An image's
``label_quality`` pools those sub-scores so that crowded images are not ranked worse for their
count alone (:func:`count_fair_quality`); cleanlab's own pooling (a softmin over the boxes)
lowers with every box an image holds. cleanlab
ignores a prediction that touches any given box, so in crowded images (touching nuclei, cells)
a deleted box is never overlooked: a confident prediction whose box lies mostly outside every
given box (:data:`MISSING_COVER`) is a missing box too, unless it is already the suggestion
for a flagged box. Each flagged
box gets a suggestion where the model is confident: the best-overlapping prediction's box
(mislocated) or class (wrong class).

Classes are 0-based here; the R-CNNs' background class 0 is added and removed at the model's
boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from datapipe.distributed import Dist
from datapipe.errors import DatapipeError
from datapipe.loop import Hooks, ListBatch, ModelLoss, Optimisation, RunSettings, Trainer, fit
from datapipe.objects import box_intersection, box_iou
from datapipe.progress import progress
from datapipe.scoring.masks import RleMasks
from datapipe.scoring.oof import TrainSettings

if TYPE_CHECKING:
    from datapipe.scoring.held_out import HeldOutStore

log = logging.getLogger("datapipe")
#: a sub-score below this flags the box (cleanlab's ``issues_from_scores`` default)
ISSUE_THRESHOLD = 0.1
#: a prediction this confident with no given box covering this share of it is a missing box
#: (cleanlab's overlooked score asks for no overlap at all); the confidence is cleanlab's
#: ``HIGH_PROBABILITY_THRESHOLD``
MISSING_COVER = 0.5
MISSING_SCORE = 0.95
#: a prediction this confident may suggest a box or class
SUGGEST_SCORE = 0.5


@dataclass(frozen=True)
class Boxes:
    """One image's boxes: ``boxes (N, 4)`` x0 y0 x1 y1 pixels, ``labels (N,)`` 0-based classes,
    for predictions ``scores (N,)``, and for instance segmentation ``masks (N, H, W)`` bool
    (predictions hold them as :class:`RleMasks`, ~30x smaller)."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None
    masks: np.ndarray | RleMasks | None = None

    @classmethod
    def empty(cls, mask_shape: tuple[int, int] | None = None) -> Boxes:
        """No boxes; with ``mask_shape`` ``(H, W)`` an empty ``(0, H, W)`` mask stack, which
        Mask R-CNN needs on an image without objects."""
        masks = None if mask_shape is None else np.zeros((0, *mask_shape), bool)
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32),
                   masks)  # fmt: skip

    def dense_masks(self) -> np.ndarray | None:
        """The masks as an ``(N, H, W)`` bool array (decoding RLEs), or None."""
        return self.masks.dense() if isinstance(self.masks, RleMasks) else self.masks

    def confidences(self) -> np.ndarray:
        """``(N,)`` scores; 1.0 each for given boxes, which have none."""
        return self.scores if self.scores is not None else np.ones(len(self.labels), np.float32)


def detection_out_of_fold(
    images: Sequence[np.ndarray],
    targets: Sequence[Boxes],
    folds: np.ndarray,
    *,
    make_model: Callable[[], nn.Module],
    settings: TrainSettings,
    on_fold: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    desc: str = "score",
    store: HeldOutStore | None = None,
    dist: Dist | None = None,
) -> list[Boxes]:
    """Held-out predictions for every image (``images[i]`` ``(C, H, W)`` float32, normalised).

    ``on_fold(fold, train, held)`` sees each fold's row positions (tests check they are
    disjoint). With ``store``, each fold's predictions go to disk when the fold ends and are
    read back once all folds are done, and a fold whose file matches is not trained again
    (a killed run resumes); without it they stay in memory. Under torchrun (``dist``) the
    folds are dealt to the ranks (fold ``k`` to rank ``k % world``, each on its own device; no
    gradient traffic) and every rank gets every prediction back.
    """
    dist = dist or Dist()
    run = RunSettings(torch.device(settings.device), settings.amp, 0, Dist())
    predictions: list[Boxes] = [Boxes.empty() for _ in images]
    mine = np.unique(folds)[dist.rank :: dist.world]
    ticks = iter(progress(range(len(mine) * settings.epochs), total=len(mine) * settings.epochs,
                          desc=desc, unit="fold-epoch"))  # fmt: skip
    for fold in mine:
        train, held = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        if on_fold is not None:
            on_fold(int(fold), train, held)
        saved = store.load(int(fold)) if store is not None else None
        if saved is not None and sorted(saved) == held.tolist():
            log.info("detection fold %d: resumed from its saved predictions", fold)
            for _ in range(settings.epochs):
                _tick(ticks)
            continue
        found = _fold_predictions(images, targets, train, held, make_model, settings,
                                  run=run, fold=int(fold), tick=lambda: _tick(ticks))  # fmt: skip
        if store is not None:
            store.save(int(fold), held, found)
        else:
            for i, one in zip(held, found, strict=True):
                predictions[i] = one
        log.info("detection fold %d: trained on %d, predicted %d", fold, len(train), len(held))
        del found
    for _ in ticks:  # the closing progress line
        pass
    return _collect(predictions, folds, mine, store, dist)


def _collect(
    predictions: list[Boxes],
    folds: np.ndarray,
    mine: np.ndarray,
    store: HeldOutStore | None,
    dist: Dist,
) -> list[Boxes]:
    """Every fold's held-out predictions in ``predictions``: from the other ranks (in memory)
    or from the store's fold files."""
    if dist.active and store is None:
        held = np.flatnonzero(np.isin(folds, mine)).tolist()
        dist.gather_into(predictions, held, [predictions[i] for i in held])
    dist.barrier()  # every rank's fold files are written
    if store is None:
        return predictions
    for k in np.unique(folds).tolist():
        back = store.load(k)
        if back is None:
            raise DatapipeError(f"{store.path(k)}: written by this run, now unreadable")
        for position, one in back.items():
            predictions[position] = one
    return predictions


def _fold_predictions(
    images: Sequence[np.ndarray],
    targets: Sequence[Boxes],
    train: np.ndarray,
    held: np.ndarray,
    make_model: Callable[[], nn.Module],
    settings: TrainSettings,
    *,
    run: RunSettings,
    fold: int,
    tick: Callable[[], None],
) -> list[Boxes]:
    """A model built, then trained on the ``train`` rows, seeded by the fold alone (a resumed
    run retrains a fold exactly), predicting the ``held`` rows."""
    torch.manual_seed(settings.seed * 1000 + fold)
    model = make_model()
    offset = _background_offset(model)
    batches = _batches(images, targets, train, settings, seed=fold, offset=offset)
    steps = -(-len(train) // settings.batch_size)
    trainer = Trainer.build(
        model, Optimisation.of(settings.recipe), ModelLoss(),
        steps=[steps] * settings.epochs, run=run,
    )  # fmt: skip
    fit(
        trainer,
        batches,
        run=run,
        seed=settings.seed * 1000 + fold,
        hooks=Hooks(on_epoch=lambda _epoch, _row: tick()),
        lr_key=f"{settings.key}.lr",
    )
    return _predict(trainer.final, images, held, run, offset)


def _tick(ticks: Iterator[int]) -> None:
    next(ticks, None)


def _batches(
    images: Sequence[np.ndarray],
    targets: Sequence[Boxes],
    train: np.ndarray,
    settings: TrainSettings,
    *,
    seed: int,
    offset: int,
) -> Callable[[int], Iterator[ListBatch]]:
    """One epoch's shuffled batches of ``train``, a function of ``(seed, fold, epoch)``; with
    the recipe's ``flip``, each image (with its boxes and masks) flipped left-right and
    upside-down with probability 0.5 each."""

    def epoch_batches(epoch: int) -> Iterator[ListBatch]:
        rng = np.random.default_rng([settings.seed, seed, epoch])
        picked = rng.permutation(train)
        flips = rng.random((len(picked), 2)) < 0.5
        if not settings.recipe.flip:
            flips[:] = False
        for start in range(0, len(picked), settings.batch_size):
            rows = slice(start, start + settings.batch_size)
            yield _batch(images, targets, picked[rows], offset, flips[rows])

    return epoch_batches


def _background_offset(model: nn.Module) -> int:
    """1 for the R-CNNs (class 0 is background), 0 for RetinaNet / FCOS."""
    return 1 if hasattr(model, "roi_heads") else 0


def flip_objects(
    image: np.ndarray, t: Boxes, horizontal: bool, vertical: bool
) -> tuple[np.ndarray, Boxes]:
    """``(image, boxes)`` of a ``(C, H, W)`` image flipped left-right and / or upside-down, its
    boxes (x0 y0 x1 y1, exclusive ends) and masks with it."""
    h, w = image.shape[-2:]
    boxes, masks = t.boxes.reshape(-1, 4).copy(), t.dense_masks()
    if horizontal:
        image, boxes[:, [0, 2]] = image[..., ::-1], w - boxes[:, [2, 0]]
        masks = None if masks is None else masks[..., ::-1]
    if vertical:
        image, boxes[:, [1, 3]] = image[..., ::-1, :], h - boxes[:, [3, 1]]
        masks = None if masks is None else masks[..., ::-1, :]
    return image, Boxes(boxes, t.labels, t.scores, masks)


def _batch(
    images: Sequence[np.ndarray],
    targets: Sequence[Boxes],
    rows: np.ndarray,
    offset: int,
    flips: np.ndarray | None = None,
) -> ListBatch:
    x, y = [], []
    for k, i in enumerate(rows):
        image, t = images[i], targets[i]
        if flips is not None and flips[k].any():
            image, t = flip_objects(image, t, *flips[k].tolist())
        x.append(torch.from_numpy(np.ascontiguousarray(image, np.float32)))
        target = {"boxes": torch.as_tensor(t.boxes, dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.as_tensor(t.labels + offset, dtype=torch.int64)}  # fmt: skip
        if t.masks is not None:  # Mask R-CNN: one (H, W) mask per box
            target["masks"] = torch.from_numpy(np.ascontiguousarray(t.dense_masks(), np.uint8))
        y.append(target)
    return x, y, torch.as_tensor(rows)


def _predict(
    model: nn.Module, images: Sequence[np.ndarray], rows: np.ndarray, run: RunSettings, offset: int
) -> list[Boxes]:
    model.eval()
    out = []
    with torch.no_grad():
        for i in rows:
            x = torch.from_numpy(np.ascontiguousarray(images[i], np.float32)).to(run.device)
            found = model([x])[0]
            soft = found.get("masks")  # Mask R-CNN: (N, 1, H, W) probabilities
            masks = None if soft is None else RleMasks.encode(soft[:, 0].cpu().numpy() >= 0.5)
            out.append(Boxes(found["boxes"].cpu().numpy().astype(np.float32),
                             found["labels"].cpu().numpy().astype(np.int64) - offset,
                             found["scores"].cpu().numpy().astype(np.float32), masks))  # fmt: skip
    return out


# --- label issues ---------------------------------------------------------------------------------


def cleanlab_inputs(
    targets: Sequence[Boxes], predictions: Sequence[Boxes], num_classes: int
) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    """``cleanlab.object_detection``'s formats: labels ``{bboxes (L, 4), labels (L,)}`` and per
    image an object array of ``num_classes`` ``(M_k, 5)`` arrays ``[x0, y0, x1, y1, score]``."""
    labels = [{"bboxes": t.boxes.astype(np.float32).reshape(-1, 4), "labels": t.labels.astype(int)}
              for t in targets]  # fmt: skip
    preds = []
    for p in predictions:
        per_class = np.empty(num_classes, dtype=object)
        scores = p.confidences()
        for k in range(num_classes):
            hit = p.labels == k
            per_class[k] = (
                np.column_stack([p.boxes[hit], scores[hit]]).astype(np.float32).reshape(-1, 5)
            )
        preds.append(per_class)
    return labels, preds


@dataclass(frozen=True)
class DetectionIssues:
    images: pd.DataFrame  # per image: label_quality, is_label_issue
    #: per given box: image, box, badloc, swap, issue, suggested_class, suggested_box, box_from
    #: (the prediction the suggested box came from, -1 for none)
    boxes: pd.DataFrame
    missing: pd.DataFrame  # per overlooked prediction: image, class, score, box, overlooked


def detection_label_issues(
    targets: Sequence[Boxes], predictions: Sequence[Boxes], num_classes: int
) -> DetectionIssues:
    """Per image and per box label issues from held-out predictions (cleanlab's scores)."""
    from cleanlab.object_detection import filter as od_filter
    from cleanlab.object_detection import rank

    labels, preds = cleanlab_inputs(targets, predictions, num_classes)
    flagged = od_filter.find_label_issues(labels, preds)
    badloc = rank.compute_badloc_box_scores(labels=labels, predictions=preds)
    swap = rank.compute_swap_box_scores(labels=labels, predictions=preds)
    overlooked = rank.compute_overlooked_box_scores(labels=labels, predictions=preds)
    rows, missing, looked = [], [], []
    for i, (t, p) in enumerate(zip(targets, predictions, strict=True)):
        mine = [_box_row(i, b, t, p, float(badloc[i][b]), float(swap[i][b]))
                for b in range(len(t.labels))]  # fmt: skip
        rows += mine
        order = np.concatenate([np.flatnonzero(p.labels == k) for k in range(num_classes)])
        scores = np.full(len(p.labels), np.nan)
        scores[order] = np.asarray(overlooked[i], np.float64)
        # cleanlab leaves these NaN; one already suggested as a flagged box's box is not new
        cover = _cover(t, p)
        crowded = (p.confidences() >= MISSING_SCORE) & (cover > 0) & (cover < MISSING_COVER)
        taken = np.asarray([r["box_from"] for r in mine], np.int64)  # suggested boxes
        crowded[taken[taken >= 0]] = False
        own = cover[crowded] * (1 - p.confidences()[crowded])
        scores[crowded] = np.fmin(scores[crowded], own)
        looked.append(scores)
        for j in np.flatnonzero(np.isfinite(scores) & (scores < ISSUE_THRESHOLD)):
            missing.append({"image": i, "class": int(p.labels[j]),
                            "score": float(p.confidences()[j]),
                            "box": p.boxes[j].round(1).tolist(),
                            "overlooked": float(scores[j])})  # fmt: skip
    quality = count_fair_quality([badloc, swap, looked])
    images = pd.DataFrame({"label_quality": quality, "is_label_issue": flagged})
    return DetectionIssues(
        images,
        pd.DataFrame(rows),
        pd.DataFrame(missing, columns=["image", "class", "score", "box", "overlooked"]),
    )


def count_fair_quality(families: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Per image, how plausible its worst box is for an image of its object count: 0 = a box
    far worse than an image of that many boxes shows by chance, 1 = none below the rest.

    ``families[f][i]`` holds image ``i``'s box scores of one kind (cleanlab's badloc and swap
    per given box, overlooked per prediction; NaN = no evidence, read as 1). A box's tail ``u``
    is the share of the dataset's boxes of its family scoring at most as low; an image of ``n``
    boxes scores ``1 - (1 - u_min) ** n``, the chance that the lowest of ``n`` boxes drawn from
    the dataset's own scores is at least this low (the Sidak correction), and its quality is
    the lowest over the families. On real nuclei (1-46 per crop) cleanlab's softmin pooling
    correlates with the count (r = -0.48, this -0.23) and puts 4 of 18 planted problems in the
    worst 15% of crops; this puts 8 (bench/realdata_detection.py, through ``dvc repro``)."""
    quality = np.ones(len(families[0]) if families else 0)
    for family in families:
        boxes = [np.nan_to_num(np.asarray(v, np.float64).reshape(-1), nan=1.0) for v in family]
        pooled = np.sort(np.concatenate([np.ones(0), *boxes]))
        for i, v in enumerate(boxes):
            if len(v):
                u = np.searchsorted(pooled, v.min(), side="right") / len(pooled)
                quality[i] = min(quality[i], 1.0 - (1.0 - u) ** len(v))
    return quality


def _cover(t: Boxes, p: Boxes) -> np.ndarray:
    """Per prediction, the largest share of its box that one given box covers."""
    if not len(t.boxes) or not len(p.boxes):
        return np.zeros(len(p.boxes))
    area = np.prod(np.clip(p.boxes[:, 2:] - p.boxes[:, :2], 1e-6, None), axis=1)
    return (box_intersection(p.boxes, t.boxes) / area[:, None]).max(axis=1)


def _box_row(i: int, b: int, t: Boxes, p: Boxes, badloc: float, swap: float) -> dict[str, object]:
    issue = ""
    if min(badloc, swap) < ISSUE_THRESHOLD:
        issue = "wrong_class" if swap <= badloc else "mislocated"
    suggested_class, suggested_box, box_from = -1, None, -1
    confident = np.flatnonzero(p.confidences() >= SUGGEST_SCORE)
    if issue and len(confident):
        iou = box_iou(t.boxes[b : b + 1], p.boxes[confident])[0]
        best = int(confident[np.argmax(iou)])
        if iou.max() > 0:
            if issue == "wrong_class" and p.labels[best] != t.labels[b]:
                suggested_class = int(p.labels[best])
            if issue == "mislocated" and p.labels[best] == t.labels[b]:
                suggested_box, box_from = p.boxes[best].round(1).tolist(), best
    return {"image": i, "box": b, "class": int(t.labels[b]), "badloc": badloc, "swap": swap,
            "issue": issue, "suggested_class": suggested_class, "suggested_box": suggested_box,
            "box_from": box_from}  # fmt: skip
