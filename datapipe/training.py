"""Training and evaluation of the final model: curriculum sampling, augmentation, batch
mixing, the composite loss, param groups with LR multipliers, warmup + cosine / step /
plateau, gradient clipping, AMP, EMA, SyncBN + DDP under torchrun, and resumable
checkpoints.

Every random choice is a function of ``(seed, epoch)`` (sample order, augmentation, mixing,
dropout), so a run resumed from the checkpoint of epoch ``e`` continues exactly as the
uninterrupted run would have: on the CPU the final weights are bit-identical.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import BatchSampler

from datapipe import tasks
from datapipe.augment import Augment, build_pipeline, check_pipeline, to_dict
from datapipe.augment.batch import (
    MixPolicy,
    MultiScaleBatchSampler,
    average_crops,
    mix_batch,
    multi_crop,
)
from datapipe.config import DatasetParams, TrainParams, TrainTaskParams
from datapipe.curate import TRAINING_ACTIONS
from datapipe.curriculum import CurriculumSampler, from_recipe
from datapipe.data import (
    AugmentedSet,
    AugmentFn,
    SampleSpec,
    manifest_items,
    sample_spec,
    swappable_loader,
)
from datapipe.distributed import Dist, init_distributed, shutdown
from datapipe.errors import DatapipeError
from datapipe.io import atomic_path
from datapipe.live import live_log
from datapipe.loop import Hooks, Optimisation, RunSettings, Trainer, fit
from datapipe.loop import predict as run_model
from datapipe.losses import CompositeLoss, criterion
from datapipe.metrics import confusion_matrix
from datapipe.models import check_lr_mult
from datapipe.progress import progress
from datapipe.runs import RunFiles, RunStats
from datapipe.tasks import Task, TaskModule

log = logging.getLogger("datapipe")
LogFn = Callable[[int, dict[str, float]], None]
TransformFn = Callable[[torch.Tensor, torch.Tensor, int, int], tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class TrainInputs:
    """What one training run sees.

    ``weights`` ``(N,)`` are the curation weights of ``train``'s samples (0 never sampled);
    ``difficulty`` ``(N,)`` in [0, 1] drives the curriculum; ``class_counts`` ``(K,)`` the
    automatic class weights. ``task`` may be given by name.
    """

    task: TaskModule
    classes: list[str]
    train: AugmentedSet
    val: AugmentedSet | None
    weights: np.ndarray
    difficulty: np.ndarray
    class_counts: np.ndarray
    ignore_index: int = 255

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", tasks.get(self.task))


@dataclass
class TrainResult:
    model: nn.Module  # the weights to keep (the EMA when enabled), on the CPU
    history: list[dict[str, float]]
    resumed_from: int | None  # the epoch a checkpoint ended with, when resumed


def train_model(
    model: nn.Module,
    inputs: TrainInputs,
    recipe: TrainTaskParams,
    run: RunSettings,
    *,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    log: LogFn | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` for ``recipe.epochs`` with :func:`datapipe.loop.fit`; with
    ``checkpoint``, save after every epoch and continue from a checkpoint whose ``fingerprint``
    matches (a different one starts over).

    Long by design: resume, the epoch loop and validation share the trainer's state."""
    dist = run.dist
    sampler = _curriculum(inputs, recipe, dist)
    trainer = Trainer.build(
        model, Optimisation.of(recipe), _criterion(inputs, recipe),
        steps=_steps_per_epoch(sampler, recipe), run=run,
        sync_bn=use_sync_bn(recipe.sync_bn, dist, run.device),
    )  # fmt: skip
    first, resumed = 0, None
    state = load_checkpoint(checkpoint, fingerprint) if checkpoint else None
    if state is not None:
        trainer.load_state_dict(state)
        first = resumed = int(state["epoch"]) + 1
        if dist.is_main:
            logging.getLogger("datapipe").info(
                "%s: resuming from epoch %d of %d (%s)", desc, first, recipe.epochs, checkpoint
            )
        if log is not None and dist.is_main:
            for row in trainer.history:  # a fresh log gets the epochs before the interruption
                log(int(row["epoch"]), row)
    train_feed = Feeder(inputs.train, run)
    val_feed = Feeder(inputs.val, run) if inputs.val is not None else None
    ticks = iter(
        progress(range(first, recipe.epochs), total=recipe.epochs - first, desc=desc, unit="epoch")
    )

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        row["samples"] = float(len(sampler))
        if val_feed is not None:
            scores = _validate(trainer.final, inputs, recipe, run, val_feed)
            row.update({f"val/{k}": v for k, v in scores.items()})
            if recipe.schedule == "plateau":
                trainer.schedule.step_metric(scores[inputs.task.headline])
        if log is not None and dist.is_main:
            log(epoch, row)
        if checkpoint is not None and dist.is_main:
            save_checkpoint(checkpoint, fingerprint, epoch, trainer)
        dist.barrier()
        next(ticks, None)

    fit(
        trainer,
        lambda epoch: train_feed(_batch_sampler(sampler, recipe, epoch), epoch=epoch),
        run=run,
        seed=recipe.seed,
        first_epoch=first,
        hooks=Hooks(
            transform=_mixer(recipe, inputs),
            sample_weight=_weights(inputs, recipe, run.device),
            on_epoch=on_epoch,
        ),
        lr_key=f"train.{inputs.task.name}.lr",
    )
    for _ in ticks:  # the closing progress line
        pass
    return TrainResult(trainer.final.cpu(), trainer.history, resumed)


def _mixer(recipe: TrainTaskParams, inputs: TrainInputs) -> TransformFn | None:
    """Mixup / cutmix of each batch, from a generator seeded by ``(seed, epoch)``."""
    policy = _mix_policy(recipe, inputs.task)
    if policy is None:
        return None
    rngs: dict[int, np.random.Generator] = {}

    def mix(x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, ...]:
        if step == 0 or epoch not in rngs:
            rngs.clear()
            rngs[epoch] = np.random.default_rng([recipe.seed, epoch, 1])
        return mix_batch(x, y, dense=inputs.task.dense, policy=policy, rng=rngs[epoch],
                         num_classes=len(inputs.classes))  # fmt: skip

    return mix


def _weights(
    inputs: TrainInputs, recipe: TrainTaskParams, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if not recipe.sample_weights:
        return None
    weights = torch.tensor(inputs.weights, dtype=torch.float32)
    return lambda index: weights[index].to(device)


def use_sync_bn(wanted: bool, dist: Dist, device: torch.device) -> bool:
    """SyncBatchNorm across ranks when asked, distributed, and on CUDA: torch's SyncBatchNorm
    has no CPU implementation, so CPU ranks (gloo) keep per-rank BatchNorm statistics."""
    if wanted and dist.active and device.type != "cuda" and dist.is_main:
        log.info("sync_bn: SyncBatchNorm needs CUDA; CPU ranks keep per-rank BatchNorm")
    return wanted and dist.active and device.type == "cuda"


def _curriculum(inputs: TrainInputs, recipe: TrainTaskParams, dist: Dist) -> CurriculumSampler:
    return from_recipe(inputs.difficulty, inputs.weights > 0, recipe, rank=dist.rank,
                       world=dist.world)  # fmt: skip


def _batch_sampler(
    sampler: CurriculumSampler, recipe: TrainTaskParams, epoch: int
) -> BatchSampler | Any:
    sampler.set_epoch(epoch)
    drop_last = len(sampler) > recipe.batch_size  # no batch of one for BatchNorm
    if recipe.multi_scale:
        batches = MultiScaleBatchSampler(
            sampler, batch_size=recipe.batch_size, sizes=recipe.multi_scale,
            every=recipe.multi_scale_every, drop_last=drop_last, seed=recipe.seed,
        )  # fmt: skip
        batches.set_epoch(epoch)
        return batches
    return BatchSampler(sampler, recipe.batch_size, drop_last=drop_last)


def _steps_per_epoch(sampler: CurriculumSampler, recipe: TrainTaskParams) -> list[int]:
    steps = [max(1, len(_batch_sampler(sampler, recipe, e))) for e in range(recipe.epochs)]
    sampler.set_epoch(0)
    return steps


def _criterion(inputs: TrainInputs, recipe: TrainTaskParams) -> CompositeLoss:
    return criterion(
        recipe.loss, dense=inputs.task.dense, classes=inputs.classes,
        class_counts=inputs.class_counts, ignore_index=inputs.ignore_index,
        key=f"train.{inputs.task.name}.loss",
    )  # fmt: skip


def _mix_policy(recipe: TrainTaskParams, task: TaskModule) -> MixPolicy | None:
    m = recipe.mix
    mixup = 0.0 if task.dense else m.mixup_alpha  # refused for masks when params load
    if mixup == 0 and m.cutmix_alpha == 0:
        return None
    return MixPolicy(
        mixup_alpha=mixup, cutmix_alpha=m.cutmix_alpha, prob=m.prob, switch_prob=m.switch_prob
    )


class Feeder:
    """One DataLoader with persistent workers for a whole run: each pass swaps in its
    batches of ``(index, size, epoch)`` keys, so workers are forked once, not per epoch."""

    def __init__(self, dataset: AugmentedSet, run: RunSettings) -> None:
        self.dataset = dataset
        self._loader, self._batches = swappable_loader(
            dataset, workers=run.workers, pin_memory=run.device.type == "cuda"
        )

    def __call__(
        self, batches: Iterable[Sequence[int | tuple[int, int]]], *, epoch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        self._batches.batches = [
            [(k, None, epoch) if isinstance(k, int | np.integer) else (*k, epoch) for k in batch]
            for batch in batches
        ]
        yield from self._loader


def _validate(
    model: nn.Module, inputs: TrainInputs, recipe: TrainTaskParams, run: RunSettings, feed: Feeder
) -> dict[str, float]:
    cm = evaluate(
        model, feed, task=inputs.task, classes=inputs.classes,
        batch_size=recipe.batch_size, run=run, ignore_index=inputs.ignore_index,
    )  # fmt: skip
    return scalar_metrics(cm, inputs.classes, inputs.task)


def scalar_metrics(cm: np.ndarray, classes: list[str], task: Task | TaskModule) -> dict[str, float]:
    full = tasks.get(task).metrics(cm, classes)
    return {k: float(v) for k, v in full.items() if isinstance(v, int | float)}


def predict(
    model: nn.Module,
    data: AugmentedSet | Feeder,
    *,
    task: Task | TaskModule,
    batch_size: int,
    run: RunSettings,
    tta: Literal["none", "flip", "five_crop", "ten_crop"] = "none",
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """``(indices, probabilities, targets)`` per batch on the CPU; probabilities ``(B, K)`` or
    ``(B, K, H, W)``. Under DDP each rank predicts its own share of ``dataset``."""
    feed = data if isinstance(data, Feeder) else Feeder(data, run)
    order = run.dist.shard(np.arange(len(feed.dataset)), pad=False)
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    yield from run_model(
        model.to(run.device),
        feed(batches),
        run,
        probs=lambda net, x: _tta_probs(net, x, dense=tasks.get(task).dense, tta=tta),
    )


def _tta_probs(model: nn.Module, x: torch.Tensor, *, dense: bool, tta: str) -> torch.Tensor:
    if tta in ("five_crop", "ten_crop"):
        if dense:
            raise DatapipeError("tta: crops are for image labels, not masks; use flip")
        size = max(8, round(x.shape[-1] * 0.875))
        kind: Literal["five", "ten"] = "five" if tta == "five_crop" else "ten"
        crops = multi_crop(x, size=size, kind=kind)
        probs: torch.Tensor = model(crops).float().softmax(1)
        return average_crops(probs, num_crops=5 if kind == "five" else 10)
    probs = model(x).float().softmax(1)
    if tta == "flip":
        flipped = model(x.flip(-1)).float().softmax(1)
        probs = (probs + (flipped.flip(-1) if dense else flipped)) / 2
    return probs


def evaluate(
    model: nn.Module,
    data: AugmentedSet | Feeder,
    *,
    task: Task | TaskModule,
    classes: list[str],
    batch_size: int,
    run: RunSettings,
    ignore_index: int = 255,
    tta: Literal["none", "flip", "five_crop", "ten_crop"] = "none",
) -> np.ndarray:
    """The ``(K, K)`` confusion matrix of ``model`` on ``dataset`` (summed over ranks)."""
    cm = np.zeros((len(classes), len(classes)), np.int64)
    ignore = ignore_index if tasks.get(task).dense else None
    for _, probs, y in predict(model, data, task=task, batch_size=batch_size, run=run, tta=tta):
        cm += confusion_matrix(y, probs.argmax(1), num_classes=len(classes), ignore_index=ignore)
    return run.dist.sum_(cm)


def save_checkpoint(path: Path, fingerprint: str, epoch: int, trainer: Trainer) -> None:
    """Atomic: written beside, then renamed over, so a kill never leaves half a file."""
    state = {"fingerprint": fingerprint, "epoch": epoch, **trainer.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a foreign or damaged file: start over rather than fail
        return None
    return state if state.get("fingerprint") == fingerprint else None


# --- inputs, models and the saved bundle ---------------------------------------------------


def split_set(
    curated: pd.DataFrame,
    split: str,
    spec: SampleSpec,
    *,
    augment: AugmentFn | None = None,
    seed: int = 0,
) -> tuple[AugmentedSet, pd.DataFrame]:
    """The usable rows of ``split`` (not dropped, not excluded) as a dataset, with the rows."""
    rows = curated[(curated["split"] == split) & curated["action"].isin(TRAINING_ACTIONS)]
    rows = rows.reset_index(drop=True)
    labels = rows["final_label_index"].fillna(-1).to_numpy(np.int64)
    return AugmentedSet(manifest_items(rows), spec, labels, augment=augment, seed=seed), rows


def build_model(
    task: Task | TaskModule, recipe: TrainTaskParams, *, in_channels: int, num_classes: int
) -> nn.Module:
    module = tasks.get(task)
    return module.build_model(
        recipe, in_channels=in_channels, num_classes=num_classes, key=f"train.{module.name}"
    )


def train_dataset(
    curated: pd.DataFrame,
    stats: RunStats,
    dataset: DatasetParams,
    recipe: TrainTaskParams,
    settings: TrainParams,
    *,
    files: RunFiles,
    workers: int,
    section: str,
    name: str,
) -> tuple[TrainInputs, TrainResult] | None:
    """The train stage's work: inputs, model, (distributed) training with DVCLive curves and a
    resumable checkpoint under ``files.train_state``; None on ranks other than 0.
    ``section`` is the params path of the recipe, for errors."""
    inputs = train_inputs(curated, stats, dataset, recipe)
    dist, device = init_distributed(settings.device, key="train.device")
    torch.manual_seed(recipe.seed)
    model = build_model(
        inputs.task, recipe, in_channels=stats.image_channels(), num_classes=len(inputs.classes)
    )
    check_lr_mult(model, recipe.lr_mult, key=f"{section}.lr_mult")  # before any epoch
    state = files.train_state / "checkpoint.pt"
    if settings.resume == "never":
        state.unlink(missing_ok=True)
    try:
        with live_log(files.dvclive, enabled=dist.is_main) as log_epoch:
            result = train_model(
                model, inputs, recipe, RunSettings(device, settings.amp, min(workers, 4), dist),
                checkpoint=state, fingerprint=run_fingerprint(recipe, curated, stats),
                log=log_epoch, desc=f"train {name}",
            )  # fmt: skip
    finally:
        shutdown()
    return (inputs, result) if dist.is_main else None


#: what the train stage saves of a finished run: model, per-epoch history, meta, augmentation
Trained = tuple[nn.Module, list[dict[str, float]], dict[str, Any], Any]


def train_images(
    curated: pd.DataFrame,
    stats: RunStats,
    dataset: DatasetParams,
    recipe: TrainTaskParams,
    settings: TrainParams,
    *,
    files: RunFiles,
    workers: int,
    name: str,
) -> Trained | None:
    """:func:`train_dataset` for image-label and mask tasks, with what the stage saves: the
    model, its history, its meta and the resolved augmentation (None on ranks other than 0)."""
    own = "lr_mult" in dataset.train
    trained = train_dataset(
        curated, stats, dataset, recipe, settings, files=files, name=name, workers=workers,
        section=f"datasets.{name}.train" if own else f"train.{dataset.task}",
    )  # fmt: skip
    if trained is None:
        return None
    inputs, result = trained
    pipeline = build_pipeline(recipe.augment, ignore_index=dataset.ignore_index)
    meta = model_meta(inputs, recipe, stats, to_dict(pipeline))
    return result.model, result.history, meta, pipeline


def evaluate_images(
    model: nn.Module,
    meta: Mapping[str, Any],
    curated: pd.DataFrame,
    stats: RunStats,
    dataset: DatasetParams,
    recipe: TrainTaskParams,
    settings: TrainParams,
    *,
    workers: int,
) -> tuple[dict[str, Any], np.ndarray]:
    """The evaluate stage's work for image-label and mask tasks: the model on the test split;
    the task's metrics and the confusion matrix."""
    task = tasks.get(dataset.task)
    spec = sample_spec(dataset, stats, size=recipe.image_size)
    test, _ = split_set(curated, "test", spec)
    if len(test) == 0:
        raise DatapipeError("no usable test samples (datasets.*.splits.test is 0?)")
    _, device = init_distributed(settings.device, key="train.device")  # one process
    classes = meta["classes"]
    cm = evaluate(
        model, test, task=task, classes=classes, batch_size=recipe.batch_size,
        run=RunSettings(device, settings.amp, min(workers, 4)),
        ignore_index=dataset.ignore_index, tta=recipe.tta,
    )  # fmt: skip
    return task.metrics(cm, classes) | {"tta": recipe.tta, "test_samples": len(test)}, cm


def model_meta(
    inputs: TrainInputs, recipe: TrainTaskParams, stats: RunStats, augment: dict[str, Any]
) -> dict[str, Any]:
    """What ``model.pt`` carries beside the weights: enough to rebuild the model and its
    inputs (:func:`load_model`)."""
    return {"task": inputs.task.name, "classes": inputs.classes,
            "in_channels": stats.image_channels(), "recipe": recipe.model_dump(mode="json"),
            "augment": augment}  # fmt: skip


def run_fingerprint(recipe: TrainTaskParams, curated: pd.DataFrame, stats: RunStats) -> str:
    """What a train checkpoint must match to be resumed: the recipe, the curated table, the
    stats."""
    digest = hashlib.sha256(recipe.model_dump_json().encode())
    digest.update(pd.util.hash_pandas_object(curated, index=False).to_numpy().tobytes())
    digest.update(stats.model_dump_json().encode())
    return digest.hexdigest()


def save_model(path: Path, model: nn.Module, meta: Mapping[str, Any]) -> Path:
    """``model.pt``: the state dict and what is needed to rebuild the model and its inputs."""
    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), "meta": dict(meta)}, tmp)
    return path


def load_model(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=False)
        meta = bundle["meta"]
    except (OSError, KeyError, RuntimeError) as exc:
        raise DatapipeError(f"{path}: not a datapipe model ({exc}); re-run train") from None
    recipe_type = TrainParams.model_fields[meta["task"]].annotation  # the task's recipe model
    recipe = recipe_type.model_validate(meta["recipe"])  # type: ignore[union-attr]
    model = build_model(meta["task"], recipe, in_channels=meta["in_channels"],
                        num_classes=len(meta["classes"]))  # fmt: skip
    model.load_state_dict(bundle["state_dict"])
    return model, meta


def train_inputs(
    curated: pd.DataFrame,
    stats: RunStats | Mapping[str, Any],
    dataset: DatasetParams,
    recipe: TrainTaskParams,
) -> TrainInputs:
    """Train and val sets of the curated table: augmented training samples with their weights
    and difficulty, plain validation samples. The augmentation is checked against the data's
    channel count first."""
    stats = RunStats.coerce(stats)
    check_pipeline(recipe.augment, channels=stats.image_channels(),
                   ignore_index=dataset.ignore_index)  # fmt: skip
    augment = Augment(build_pipeline(recipe.augment, ignore_index=dataset.ignore_index))
    spec = sample_spec(dataset, stats, size=recipe.image_size)
    train, rows = split_set(curated, "train", spec, augment=augment, seed=recipe.seed)
    val, _ = split_set(curated, "val", spec)
    if len(train) < 2:
        raise DatapipeError("fewer than 2 usable training samples in curated.parquet")
    classes = list(stats.classes)
    return TrainInputs(
        task=tasks.get(dataset.task), classes=classes, train=train, val=val if len(val) else None,
        weights=rows["weight"].to_numpy(np.float64),
        difficulty=rows["difficulty"].to_numpy(np.float64),
        class_counts=tasks.get(dataset.task).class_counts(
            rows["final_label_index"].to_numpy(np.int64), stats, classes
        ),
        ignore_index=dataset.ignore_index,
    )  # fmt: skip
