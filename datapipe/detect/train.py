"""The final detector: trained on the curated boxes of the train split with albumentations
(boxes follow the geometry; ``bbox_params`` clips or drops cut boxes), detection mixup and the
shared loop; evaluated with COCO metrics on the test split's boxes as given (reviews apply).

Images are decoded once at their own size (full bit depth, unit float), augmented there, then
resized to ``image_size`` squares and normalised with stats.json, boxes scaled alike. A
down-weighted image (curation) is drawn into an epoch with probability = its weight, since
torchvision's detectors sum their losses over the batch and take no per-image weight.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from datapipe.curate import TRAINING_ACTIONS
from datapipe.curriculum import CurriculumSampler, from_recipe
from datapipe.data import SampleSpec, manifest_items, normalise, sample_seed
from datapipe.detect.curate import TRAINING_OBJECT_ACTIONS
from datapipe.detect.targets import group_masks, resize_masks, scale_boxes
from datapipe.distributed import Dist
from datapipe.errors import DatapipeError
from datapipe.loop import Hooks, ListBatch, ModelLoss, Optimisation, RunSettings, Trainer, fit
from datapipe.progress import progress
from datapipe.scoring.detection import Boxes
from datapipe.scoring.masks import RleMasks

log = logging.getLogger("datapipe")


@dataclass(frozen=True)
class DetectionSet:
    """Decoded images of one split with their boxes (image pixels) and curation weights."""

    sample_ids: list[str]
    images: list[np.ndarray]  # (H, W, C) float32 in [0, 1]
    targets: list[Boxes]
    weights: np.ndarray  # (N,) in [0, 1]
    difficulty: np.ndarray | None = None  # (N,) in [0, 1], NaN unknown: the curriculum's order

    def __len__(self) -> int:
        return len(self.images)


def detection_set(
    curated: pd.DataFrame,
    curated_objects: pd.DataFrame,
    split: str,
    spec: SampleSpec,
    classes: Sequence[str],
    *,
    desc: str,
    masks: bool = False,
) -> DetectionSet:
    """The usable images of ``split`` (a training action) and their boxes that train (keep,
    relabel, rebox, add), with the final class and box (and, with ``masks``, the decoded
    instance mask; the filled box for an added box)."""
    rows = curated[(curated["split"] == split) & curated["action"].isin(TRAINING_ACTIONS)]
    index = {c: i for i, c in enumerate(classes)}
    boxes = curated_objects[curated_objects["action"].isin(TRAINING_OBJECT_ACTIONS)]
    groups = dict(tuple(boxes.groupby("sample_id", sort=False)))
    images, targets = [], []
    pairs = list(zip(manifest_items(rows), rows["sample_id"], strict=True))
    for item, sid in progress(pairs, total=len(pairs), desc=desc, unit="image"):
        image, _ = spec.decode_unit(item)
        images.append(image)
        group = groups.get(sid)
        h, w = image.shape[:2]
        if group is None:  # Mask R-CNN needs a (0, H, W) mask stack on an empty image
            targets.append(Boxes.empty((h, w) if masks else None))
            continue
        xyxy = np.clip(group[["x0", "y0", "x1", "y1"]].to_numpy(np.float32), 0,
                       np.array([w, h, w, h], np.float32))  # fmt: skip
        keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        labels = group["final_class"].map(index).to_numpy()
        keep &= pd.notna(labels)
        found = group_masks(group[keep], xyxy[keep], h, w) if masks else None
        targets.append(Boxes(xyxy[keep], labels[keep].astype(np.int64), masks=found))
    weights = rows["weight"].to_numpy(np.float64) if "weight" in rows else np.ones(len(rows))
    difficulty = (rows["difficulty"].to_numpy(np.float64) if "difficulty" in rows
                  else np.full(len(rows), np.nan))  # fmt: skip
    return DetectionSet(rows["sample_id"].astype(str).tolist(), images, targets, weights,
                        difficulty)  # fmt: skip


def model_input(
    image: np.ndarray, target: Boxes, spec: SampleSpec, size: int
) -> tuple[torch.Tensor, Boxes]:
    """A unit ``(H, W, C)`` image as the detector's normalised ``(C, size, size)`` input and
    its boxes scaled into that frame."""
    h, w = image.shape[:2]
    x = normalise(image, spec.image, size)
    return torch.from_numpy(x), resize_masks(scale_boxes(target, size / w, size / h), size, size)


def epoch_batches(
    train: DetectionSet, recipe: Any, spec: SampleSpec, *, offset: int, dist: Dist | None = None
) -> Callable[[int], Iterator[ListBatch]]:
    """One epoch's batches, a function of ``(recipe.seed, epoch)``: the images drawn by
    weight, each augmented with its boxes (and masks), resized and normalised; detection
    mixup over the batch when ``mix.mixup_alpha`` > 0. ``offset`` 1 adds the R-CNNs'
    background class. Under torchrun (``dist``) every rank draws the same epoch and takes its
    shard, padded so that every rank steps as often (DistributedDataParallel needs it)."""
    dist = dist or Dist()
    from datapipe.augment.detection import (
        augment_objects,
        build_box_pipeline,
        draw_box_mix,
        mix_detection,
    )

    masks = any(t.masks is not None for t in train.targets)
    pipeline = build_box_pipeline(recipe.augment, min_visibility=recipe.min_visibility,
                                  masks=masks, seed=recipe.seed)  # fmt: skip

    def one(i: int, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t = train.targets[i]
        image, boxes, labels, _, kept_masks = augment_objects(
            pipeline, train.images[i], t.boxes, t.labels, t.dense_masks(),
            seed=sample_seed(recipe.seed, epoch, i),
        )  # fmt: skip
        x, scaled = model_input(image, Boxes(boxes, labels, masks=kept_masks), spec,
                                recipe.image_size)  # fmt: skip
        target = {"boxes": torch.as_tensor(scaled.boxes).reshape(-1, 4),
                  "labels": torch.as_tensor(scaled.labels + offset)}  # fmt: skip
        if scaled.masks is not None:
            target["masks"] = torch.as_tensor(scaled.masks, dtype=torch.uint8)
        return x, target

    sampler = detection_curriculum(train, recipe)

    def batches(epoch: int) -> Iterator[ListBatch]:
        rng = np.random.default_rng([recipe.seed, epoch])
        order = sampler.epoch_order(epoch)  # paced, oversampled, shuffled
        order = order[rng.random(len(order)) < train.weights[order]]
        order = dist.shard(order, pad=True) if len(order) else order
        rng = np.random.default_rng([recipe.seed, epoch, dist.rank])  # this rank's mixing
        for start in range(0, len(order), recipe.batch_size):
            picked = order[start : start + recipe.batch_size]
            pairs = [one(int(i), epoch) for i in picked]
            xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
            if recipe.mix.mixup_alpha > 0 and len(xs) > 1:
                draw = draw_box_mix(len(xs), alpha=recipe.mix.mixup_alpha, rng=rng)
                xs, ys = mix_detection(xs, ys, draw)
            yield xs, ys, torch.as_tensor(picked)

    return batches


def detection_curriculum(train: DetectionSet, recipe: Any) -> CurriculumSampler:
    """``recipe.curriculum`` over the images, every rank's order (:func:`epoch_batches`
    shards it after the weights draw); images with weight 0 never enter."""
    difficulty = train.difficulty if train.difficulty is not None else np.full(len(train), np.nan)
    return from_recipe(difficulty, train.weights > 0, recipe, rank=0, world=1)


def epoch_steps(train: DetectionSet, recipe: Any, world: int = 1) -> list[int]:
    """Expected optimiser steps per epoch and rank: the paced images' weights over the batch
    size and the ranks."""
    sampler = detection_curriculum(train, recipe)
    per_rank = recipe.batch_size * world
    return [max(1, int(np.ceil(train.weights[sampler.selection(e)].sum() / per_rank)))
            for e in range(recipe.epochs)]  # fmt: skip


def train_detector(
    model: nn.Module,
    train: DetectionSet,
    recipe: Any,
    spec: SampleSpec,
    run: RunSettings,
    *,
    log_epoch: Callable[[int, dict[str, float]], None] | None = None,
    validate: Callable[[nn.Module], dict[str, float]] | None = None,
    headline: str = "map_50",
    checkpoint: Path | None = None,
    fingerprint: str = "",
    desc: str = "train",
) -> list[dict[str, float]]:
    """Train ``model`` for ``recipe.epochs`` on ``train``; returns the per-epoch history.
    With ``checkpoint``, the trainer is saved after every epoch and a run whose checkpoint
    has this ``fingerprint`` continues after its last epoch, as the uninterrupted run would
    (epoch batches and dropout are functions of the seed and the epoch).

    ``validate(model)`` gives the validation metrics (``val/...`` in the history): after
    every epoch with ``schedule: plateau``, whose learning rate steps on ``headline`` (the
    same value on every rank), else after the last. Under torchrun (``run.dist``) the ranks
    train one model with DistributedDataParallel and, with ``recipe.sync_bn`` on CUDA,
    SyncBatchNorm."""
    from datapipe.training import save_checkpoint, use_sync_bn

    if len(train) < 2:
        raise DatapipeError("fewer than 2 usable training images in curated.parquet")
    offset = 1 if hasattr(model, "roi_heads") else 0  # the R-CNNs' background class 0
    trainer = Trainer.build(model, Optimisation.of(recipe), ModelLoss(),
                            steps=epoch_steps(train, recipe, run.dist.world), run=run,
                            sync_bn=use_sync_bn(recipe.sync_bn, run.dist, run.device))  # fmt: skip

    first = _resume(trainer, checkpoint, fingerprint, log_epoch, desc, run.dist)
    ticks = iter(progress(range(first, recipe.epochs), total=recipe.epochs - first, desc=desc,
                          unit="epoch"))  # fmt: skip
    plateau = recipe.schedule == "plateau"

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        if validate is not None and (plateau or epoch == recipe.epochs - 1):
            scores = validate(trainer.final)
            row.update({f"val/{k}": v for k, v in scores.items()})
            if plateau:
                trainer.schedule.step_metric(scores[headline])
        if log_epoch is not None:
            log_epoch(epoch, row)
        if checkpoint is not None and run.dist.is_main:
            save_checkpoint(checkpoint, fingerprint, epoch, trainer)
        run.dist.barrier()
        next(ticks, None)

    history = fit(trainer, epoch_batches(train, recipe, spec, offset=offset, dist=run.dist),
                  run=run, seed=recipe.seed, first_epoch=first, hooks=Hooks(on_epoch=on_epoch),
                  lr_key="train.detection.lr")  # fmt: skip
    for _ in ticks:
        pass
    model.load_state_dict(trainer.final.state_dict())
    return history


def _resume(
    trainer: Trainer,
    checkpoint: Path | None,
    fingerprint: str,
    log_epoch: Callable[[int, dict[str, float]], None] | None,
    desc: str,
    dist: Dist,
) -> int:
    """The first epoch to train: after the checkpoint's, when it matches (its history goes to
    a fresh log again), else 0."""
    from datapipe.training import load_checkpoint

    state = load_checkpoint(checkpoint, fingerprint) if checkpoint is not None else None
    if state is None:
        return 0
    trainer.load_state_dict(state)
    first = int(state["epoch"]) + 1
    if dist.is_main:
        log.info("%s: resuming from epoch %d (%s)", desc, first, checkpoint)
    if log_epoch is not None:
        for row in trainer.history:
            log_epoch(int(row["epoch"]), row)
    return first


def predict_set(
    model: nn.Module, data: DetectionSet, spec: SampleSpec, size: int, run: RunSettings
) -> list[Boxes]:
    """Predictions for every image of ``data``, in each image's own pixels; under torchrun
    each rank predicts its share and every rank gets them all."""
    offset = 1 if hasattr(model, "roi_heads") else 0
    was_training = model.training
    model.eval().to(run.device)
    mine = run.dist.shard(np.arange(len(data)), pad=False)
    out = []
    with torch.no_grad():
        for i in mine.tolist():
            image, t = data.images[i], data.targets[i]
            h, w = image.shape[:2]
            x, _ = model_input(image, t, spec, size)
            found = model([x.to(run.device)])[0]
            soft = found.get("masks")  # Mask R-CNN: (N, 1, S, S) probabilities
            boxes = Boxes(found["boxes"].cpu().numpy().astype(np.float32),
                          found["labels"].cpu().numpy().astype(np.int64) - offset,
                          found["scores"].cpu().numpy().astype(np.float32),
                          None if soft is None
                          else RleMasks.encode(soft[:, 0].cpu().numpy() >= 0.5))  # fmt: skip
            out.append(resize_masks(scale_boxes(boxes, w / size, h / size), h, w))
    model.train(was_training)
    if not run.dist.active:
        return out
    return run.dist.gather_into([Boxes.empty()] * len(data), mine.tolist(), out)


def evaluate_detector(
    model: nn.Module,
    data: DetectionSet,
    spec: SampleSpec,
    recipe: Any,
    classes: Sequence[str],
    run: RunSettings,
) -> tuple[dict[str, Any], np.ndarray]:
    """COCO metrics (maxDets up to ``detections_per_img``) and the object confusion of
    ``data`` (``(K+1, K+1)``, background last)."""
    from datapipe.detect.score import object_confusion
    from datapipe.scoring.coco_eval import coco_metrics

    found = predict_set(model, data, spec, recipe.image_size, run)
    sizes = [im.shape[:2] for im in data.images]
    masks = any(t.masks is not None for t in data.targets)
    metrics = coco_metrics(data.targets, found, classes, sizes=sizes, masks=masks,
                           max_detections=recipe.detector.detections_per_img)  # fmt: skip
    return metrics, object_confusion(data.targets, found, len(classes))


def train_run(
    curated: pd.DataFrame,
    curated_objects: pd.DataFrame,
    stats: Any,
    dataset: Any,
    recipe: Any,
    settings: Any,
    *,
    files: Any,
    name: str,
) -> tuple[nn.Module, list[dict[str, float]], dict[str, Any], Any] | None:
    """The train stage's work for an object task: the train and val sets, the detector, its
    training with DVCLive curves, and the validation COCO metrics (every epoch with
    ``schedule: plateau``, else the last). Under torchrun the ranks train one model (rank 0
    logs and returns it; the others return None)."""
    from datapipe import tasks
    from datapipe.data import sample_spec
    from datapipe.distributed import init_distributed, shutdown
    from datapipe.live import live_log

    dist, device = init_distributed(settings.device, key="train.device")
    task, classes = tasks.get(dataset.task), list(stats.classes)
    spec = sample_spec(dataset, stats, size=recipe.image_size)
    masks = task.instance_masks
    train = detection_set(curated, curated_objects, "train", spec, classes,
                          desc=f"{name}: decode train", masks=masks)  # fmt: skip
    val = detection_set(curated, curated_objects, "val", spec, classes,
                        desc=f"{name}: decode val", masks=masks)  # fmt: skip
    torch.manual_seed(recipe.seed)
    model = task.build_model(recipe, in_channels=stats.image_channels(), num_classes=len(classes),
                             key=f"train.{task.name}")  # fmt: skip
    run = RunSettings(device, settings.amp, 0, dist)

    def validate(trained: nn.Module) -> dict[str, float]:
        scores, _ = evaluate_detector(trained, val, spec, recipe, classes, run)
        return {k: v for k, v in scores.items() if isinstance(v, float)}

    state = files.train_state / "checkpoint.pt"
    if settings.resume == "never":
        state.unlink(missing_ok=True)
    try:
        with live_log(files.dvclive, enabled=dist.is_main) as log_epoch:
            history = train_detector(model, train, recipe, spec, run, log_epoch=log_epoch,
                                     validate=validate if len(val) else None,
                                     headline=task.headline, checkpoint=state,
                                     fingerprint=_fingerprint(recipe, curated,
                                                              curated_objects, stats),
                                     desc=f"train {name}")  # fmt: skip
    finally:
        shutdown()
    if not dist.is_main:
        return None
    from datapipe.augment import to_dict
    from datapipe.augment.detection import build_box_pipeline

    pipeline = build_box_pipeline(recipe.augment, min_visibility=recipe.min_visibility,
                                  masks=masks)  # fmt: skip
    meta = {"task": task.name, "classes": classes, "in_channels": stats.image_channels(),
            "recipe": recipe.model_dump(mode="json"), "augment": to_dict(pipeline)}  # fmt: skip
    return model.cpu(), history, meta, pipeline


def _fingerprint(recipe: Any, curated: pd.DataFrame, objects: pd.DataFrame, stats: Any) -> str:
    """What a detector's train checkpoint must match to be resumed: the recipe, the curated
    images and boxes, the stats."""
    from datapipe.training import run_fingerprint

    digest = hashlib.sha256(run_fingerprint(recipe, curated, stats).encode())
    digest.update(pd.util.hash_pandas_object(objects, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def evaluate_run(
    model: nn.Module,
    meta: dict[str, Any],
    curated: pd.DataFrame,
    curated_objects: pd.DataFrame,
    stats: Any,
    dataset: Any,
    recipe: Any,
    settings: Any,
) -> tuple[dict[str, Any], np.ndarray]:
    """The evaluate stage's work for an object task: COCO metrics and the object confusion
    of the test split (its boxes as given, reviews applied)."""
    from datapipe.data import sample_spec
    from datapipe.distributed import init_distributed

    spec = sample_spec(dataset, stats, size=recipe.image_size)
    classes = list(meta["classes"])
    from datapipe import tasks

    test = detection_set(curated, curated_objects, "test", spec, classes, desc="decode test",
                         masks=tasks.get(dataset.task).instance_masks)  # fmt: skip
    if len(test) == 0:
        raise DatapipeError("no usable test images (datasets.*.splits.test is 0?)")
    _, device = init_distributed(settings.device, key="train.device")  # one process
    metrics, cm = evaluate_detector(model, test, spec, recipe, classes,
                                    RunSettings(device, settings.amp, 0))  # fmt: skip
    objects = int(sum(len(t.labels) for t in test.targets))
    return metrics | {"test_samples": len(test), "test_objects": objects}, cm
