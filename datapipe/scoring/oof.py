"""Out-of-fold training and prediction for classification, with training dynamics.

For fold k, a fresh model trains on every other fold and predicts fold k, so each sample's
probabilities come from a model that never saw it. While the models train, every forward pass
over a training sample records the probability of its given label and its margin; over all
(fold, epoch) passes these give Dataset Cartography's confidence / variability / correctness
(Swayamdipta et al., 2020) and the area under the margin, AUM (Pleiss et al., 2020).

Segmentation trains the same way on masks (cross-entropy over non-ignored pixels); its
per-pixel probabilities are handed batch by batch to a ``sink`` (which writes float16 shards),
never collected in memory. Under ``torchrun`` every rank trains on its shard of each epoch
through DistributedDataParallel and predicts its shard of the held-out fold.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from datapipe.config import FitParams
from datapipe.distributed import Dist
from datapipe.errors import DatapipeError
from datapipe.io import atomic_path
from datapipe.loop import Batch, Hooks, Optimisation, RunSettings, Trainer, fit, predict
from datapipe.losses import criterion
from datapipe.progress import progress
from datapipe.scoring.data import InMemory, Source

log = logging.getLogger("datapipe")


@dataclass(frozen=True)
class TrainSettings:
    """How each fold's model trains: a score recipe plus where it runs.

    :meth:`of` takes the recipe's fields and these flat (``TrainSettings.of(epochs=4)``)."""

    recipe: FitParams = field(default_factory=FitParams)
    device: str = "cpu"
    amp: bool = True  # bfloat16 autocast, on CUDA only
    ignore_index: int = -100  # target value that trains nothing (segmentation: 255)
    class_counts: tuple[float, ...] | None = None  # for loss.class_weight from counts
    seed: int = 0
    key: str = "score"  # the params section, for errors
    #: model and batches in ``torch.channels_last`` (None: on CUDA only) and bfloat16 autocast
    #: on the CPU: the score stage sets both where the task module's ``cpu_fast_paths`` says
    #: they measured faster with the same label issues
    channels_last: bool | None = None
    cpu_amp: bool = False

    @classmethod
    def of(cls, **fields: Any) -> TrainSettings:
        own = {k: fields.pop(k) for k in list(fields) if k in cls.__dataclass_fields__}
        return cls(recipe=FitParams(**fields), **own)

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    @property
    def batch_size(self) -> int:
        return self.recipe.batch_size

    def optimisation(self) -> Optimisation:
        return Optimisation.of(self.recipe)


@dataclass
class Dynamics:
    """Running sums per sample over every training pass that saw it."""

    passes: np.ndarray  # (N,) int
    prob_sum: np.ndarray  # (N,) sum of p(given label)
    prob_sq_sum: np.ndarray
    margin_sum: np.ndarray  # sum of logit[given] - max other logit
    correct: np.ndarray  # (N,) passes where the argmax was the given label

    @classmethod
    def zeros(cls, n: int) -> Dynamics:
        return cls(np.zeros(n, np.int64), *(np.zeros(n) for _ in range(4)))

    def add(self, index: np.ndarray, logits: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.no_grad():
            logits = logits.float()
            prob = logits.softmax(1).gather(1, labels[:, None])[:, 0]
            given = logits.gather(1, labels[:, None])[:, 0]
            others = logits.scatter(1, labels[:, None], float("-inf")).max(1).values
            margin, hit = given - others, logits.argmax(1) == labels
        np.add.at(self.passes, index, 1)
        p = prob.cpu().numpy().astype(np.float64)
        np.add.at(self.prob_sum, index, p)
        np.add.at(self.prob_sq_sum, index, p**2)
        np.add.at(self.margin_sum, index, margin.cpu().numpy())
        np.add.at(self.correct, index, hit.cpu().numpy())

    def summary(self) -> dict[str, np.ndarray]:
        """confidence, variability, correctness (cartography) and aum; NaN where never seen."""
        n = np.where(self.passes > 0, self.passes, np.nan)
        confidence = self.prob_sum / n
        variability = np.sqrt(np.maximum(self.prob_sq_sum / n - confidence**2, 0.0))
        return {
            "confidence": confidence,
            "variability": variability,
            "correctness": self.correct / n,
            "aum": self.margin_sum / n,
        }


class Sink(Protocol):
    """Receives held-out predictions: ``index (B,)``, probabilities ``(B, K, H, W)`` and the
    targets they were scored against ``(B, H, W)``; ``count`` batches so far, and
    ``truncate(count)`` forgets every batch after the first ``count`` (a resumed run)."""

    count: int

    def add(self, index: np.ndarray, probs: np.ndarray, targets: np.ndarray) -> None: ...

    def truncate(self, count: int) -> None: ...


@dataclass
class OOFResult:
    probs: np.ndarray | None  # classification (N, K) float32, NaN rows for samples left out
    dynamics: Dynamics | None  # classification only
    fold_accuracy: dict[int, float]  # share of held-out samples (pixels) predicted as labelled
    train_loss: dict[int, float]  # mean loss of each fold's last epoch


def out_of_fold(
    source: Source | torch.Tensor,
    labels: np.ndarray | None,
    folds: np.ndarray,
    include: np.ndarray,
    *,
    num_classes: int,
    make_model: Callable[[], nn.Module],
    settings: TrainSettings,
    desc: str = "score",
    sink: Sink | None = None,
    dist: Dist | None = None,
    checkpoint: FoldCheckpoint | None = None,
) -> OOFResult:
    """Train one model per fold on the other folds; predict the held-out fold.

    With ``checkpoint``, what each finished fold produced is saved, and a run whose checkpoint
    matches (same fingerprint) resumes at the first unfinished fold; each fold's randomness is a
    function of ``(seed, fold)``, so on the CPU the result equals an uninterrupted run's.

    ``source`` yields batches of images and targets (a tensor ``(N, C, H, W)`` is taken as
    in-memory images with ``labels`` as targets). Classification (``sink`` None) returns the
    ``(N, K)`` probabilities and training dynamics; segmentation passes each held-out batch's
    ``(B, K, H, W)`` probabilities to ``sink.add`` on the rank that predicted it.

    Shapes:
        ``labels`` ``(N,)`` or None (segmentation); ``folds``, ``include`` ``(N,)``. Samples
        with ``include`` False neither train nor get probabilities.

    Long by design: the fold loop with its checkpoint, sink and DDP handling reads top to bottom.
    """
    dist = dist or Dist()
    if isinstance(source, torch.Tensor):
        if labels is None:
            raise ValueError("an image tensor needs labels")
        source = InMemory(source, torch.as_tensor(labels, dtype=torch.long))
    n = len(source)
    if not (len(folds) == len(include) == n) or (labels is not None and len(labels) != n):
        raise ValueError(
            f"source, labels, folds, include must have equal length; got {n}, "
            f"{None if labels is None else len(labels)}, {len(folds)}, {len(include)}"
        )
    classification = sink is None
    run = RunSettings(torch.device(settings.device), amp=settings.amp, dist=dist,
                      channels_last=settings.channels_last, cpu_amp=settings.cpu_amp)  # fmt: skip
    probs = np.full((n, num_classes), np.nan, np.float32) if classification else None
    dynamics = Dynamics.zeros(n) if classification else None
    accuracy: dict[int, float] = {}
    losses: dict[int, float] = {}
    fold_ids = sorted(int(f) for f in np.unique(folds[include]))
    total = len(fold_ids) * settings.epochs
    ticks = iter(
        progress(range(total), total=total, desc=desc, unit="fold-epoch", every_s=15.0)
        if dist.is_main
        else range(total)
    )
    done = _resume(checkpoint, probs, dynamics, accuracy, losses, sink)
    for _ in range(len(done) * settings.epochs):
        next(ticks, None)
    for k in fold_ids:
        if k in done:
            continue
        train = np.flatnonzero(include & (folds != k))
        held = np.flatnonzero(include & (folds == k))
        if len(train) < 2:
            raise DatapipeError(
                f"fold {k}: only {len(train)} training samples outside it; lower folds"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed * 1000 + k)
            model = make_model()
        trainer = _train(model, source, train, dynamics, settings, fold=k, run=run,
                         num_classes=num_classes, tick=lambda: next(ticks, None))  # fmt: skip
        losses[k] = trainer.history[-1]["train/loss"]
        hits = np.zeros(2)  # correct, counted
        held_batches = _chunks(dist.shard(held, pad=False), settings.batch_size * 2)
        for index, p_, target in predict(trainer.final, _batches_of(source, held_batches), run):
            p, target_ = p_.numpy(), target.numpy()
            valid = target_ != settings.ignore_index
            hits += [(p.argmax(1) == target_)[valid].sum(), valid.sum()]
            if probs is not None:
                probs[index] = p
            elif sink is not None:
                sink.add(index, p, target_)
        hits = dist.sum_(hits)
        accuracy[k] = float(hits[0] / hits[1]) if hits[1] else math.nan
        done.append(k)
        if checkpoint is not None:
            checkpoint.save(done, probs, dynamics, accuracy, losses, sink)
    for _ in ticks:  # the closing progress line
        pass
    if dist.active:
        if probs is not None:
            probs = _gather_rows(probs, dist)
        if dynamics is not None:
            for arr in (
                dynamics.passes,
                dynamics.prob_sum,
                dynamics.prob_sq_sum,
                dynamics.margin_sum,
                dynamics.correct,
            ):
                dist.sum_(arr)
    return OOFResult(probs=probs, dynamics=dynamics, fold_accuracy=accuracy, train_loss=losses)


@dataclass(frozen=True)
class FoldCheckpoint:
    """Where :func:`out_of_fold` records its finished folds (one file per rank, written
    atomically after each fold); ``fingerprint`` names the inputs and settings it is valid for."""

    directory: Path
    fingerprint: str
    rank: int = 0

    @property
    def path(self) -> Path:
        return self.directory / f"folds.rank{self.rank}.pt"

    def load(self) -> dict[str, Any] | None:
        """The saved state when it matches this fingerprint, else None (a damaged or foreign
        file starts over)."""
        try:
            state: dict[str, Any] = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception:  # missing, damaged, or not ours
            return None
        return state if state.get("fingerprint") == self.fingerprint else None

    def save(
        self,
        done: list[int],
        probs: np.ndarray | None,
        dynamics: Dynamics | None,
        accuracy: dict[int, float],
        losses: dict[int, float],
        sink: Sink | None,
    ) -> None:
        state = {
            "fingerprint": self.fingerprint,
            "done": list(done),
            "probs": probs,
            "dynamics": None if dynamics is None else asdict(dynamics),
            "accuracy": dict(accuracy),
            "losses": dict(losses),
            "sink": getattr(sink, "count", None),
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _resume(
    checkpoint: FoldCheckpoint | None,
    probs: np.ndarray | None,
    dynamics: Dynamics | None,
    accuracy: dict[int, float],
    losses: dict[int, float],
    sink: Sink | None,
) -> list[int]:
    """Restore a matching checkpoint into the given containers; the folds it had finished."""
    state = checkpoint.load() if checkpoint is not None else None
    if checkpoint is None or state is None or not state["done"]:
        return []
    if probs is not None:
        probs[:] = state["probs"]
    if dynamics is not None:
        for name, value in state["dynamics"].items():
            getattr(dynamics, name)[:] = value
    accuracy.update(state["accuracy"])
    losses.update(state["losses"])
    if sink is not None and state["sink"] is not None:
        sink.truncate(int(state["sink"]))  # shards of the interrupted fold go
    log.info("resuming after fold(s) %s (%s)", state["done"], checkpoint.path)
    return list(state["done"])


def _train(
    model: nn.Module,
    source: Source,
    train: np.ndarray,
    dynamics: Dynamics | None,
    settings: TrainSettings,
    *,
    fold: int,
    run: RunSettings,
    num_classes: int,
    tick: Callable[[], object],
) -> Trainer:
    """One fold's model, trained with :func:`datapipe.loop.fit` on ``train`` (row positions)."""
    dist = run.dist
    steps = len(_batches(dist.shard(train, pad=True), settings.batch_size))
    dense = dynamics is None  # held-out pixel maps go to a sink; labels keep dynamics
    loss = criterion(
        settings.recipe.loss,
        dense=dense,
        classes=[str(c) for c in range(num_classes)],
        class_counts=settings.class_counts,
        ignore_index=settings.ignore_index,
        key=f"{settings.key}.loss",
    )
    trainer = Trainer.build(
        model, settings.optimisation(), loss, steps=[steps] * settings.epochs, run=run
    )
    flips: dict[int, torch.Tensor] = {}

    def batches(epoch: int) -> Iterator[Batch]:
        # the same permutation and flips on every rank; each rank takes its shard
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + fold * 1009 + epoch)
        order = train[torch.randperm(len(train), generator=generator).numpy()]
        flips[epoch] = torch.rand(steps, 2, generator=generator) < 0.5
        yield from _batches_of(source, _batches(dist.shard(order, pad=True), settings.batch_size))

    def flip(x: torch.Tensor, y: torch.Tensor, epoch: int, i: int) -> tuple[torch.Tensor, ...]:
        return _flip(x, y, flips[epoch][i % steps])

    def record(index: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        if dynamics is not None:
            dynamics.add(index.numpy(), logits, y)

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        tick()

    hooks = Hooks(
        transform=flip if settings.recipe.flip else None, on_batch=record, on_epoch=on_epoch
    )
    try:
        fit(trainer, batches, run=run, seed=settings.seed * 1000 + fold, hooks=hooks,
            lr_key=f"{settings.key}.lr")  # fmt: skip
    except DatapipeError as exc:
        raise DatapipeError(f"fold {fold}: {exc}") from None
    return trainer


def _batches_of(source: Source, batches: list[np.ndarray]) -> Iterator[Batch]:
    """``source``'s batches as :func:`datapipe.loop.fit` takes them: ``(x, y, index)``."""
    for index, x, y in source.batches(batches):
        yield x, y, torch.as_tensor(index)


def _chunks(index: np.ndarray, size: int) -> list[np.ndarray]:
    return [index[i : i + size] for i in range(0, len(index), size)]


def _flip(
    x: torch.Tensor, y: torch.Tensor, which: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal / vertical flip of a batch; masks (``y`` of rank 3) flip with their images."""
    for flip, dim in zip(which.tolist(), (3, 2), strict=True):
        if flip:
            x = x.flip(dim)
            if y.ndim == 3:
                y = y.flip(dim - 1)
    return x, y


def _batches(order: np.ndarray, size: int) -> list[np.ndarray]:
    """Consecutive batches of ``size``; a last batch of one joins the one before (BatchNorm
    cannot train on a single sample), so every sample trains once per epoch."""
    cuts = list(range(size, len(order), size))
    if cuts and len(order) - cuts[-1] == 1:
        cuts.pop()
    return np.split(order, cuts)


def _gather_rows(probs: np.ndarray, dist: Dist) -> np.ndarray:
    """Each rank filled the rows it predicted; combine them (every row is finite on one rank)."""
    parts = dist.gather(probs)
    out = parts[0].copy()
    for part in parts[1:]:
        rows = np.isfinite(part).all(1)
        out[rows] = part[rows]
    return out
