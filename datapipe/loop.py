"""The one training loop: :func:`fit` trains, :func:`predict` runs a model, for the out-of-fold
scorer (once per fold) and for the train stage alike.

What differs between the two comes in as arguments, never as a branch here:

* ``batches(epoch)``: the batches of one epoch, ``(x, y, index)`` on the host (the scorer's
  in-memory or streamed sources; the train stage's curriculum DataLoader);
* :class:`Hooks`: a batch transform (flips, mixup / cutmix), per-sample loss weights, a look at
  every batch's logits (training dynamics for AUM and cartography), and the end of each epoch
  (validation, plateau, logging, checkpoints, progress);
* the :class:`Optimisation` (optimizer, param groups with LR multipliers and no decay on norms
  and biases, warmup then cosine / step / plateau, clipping, EMA) and the criterion (a
  :class:`~datapipe.losses.CompositeLoss`).

A step, in order: batch to the device (float32, channels_last on CUDA), transform, weights,
``schedule.step(iteration)``, forward under autocast (bfloat16 on CUDA), loss on float logits,
backward, clip, optimizer step, EMA update, the batch hook. Every random choice of ``fit`` is a
function of ``(seed, epoch)``, so a run resumed after epoch ``e`` continues as the uninterrupted
run would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from datapipe.distributed import Dist
from datapipe.errors import DatapipeError
from datapipe.losses import CompositeLoss
from datapipe.optim import (
    Plateau,
    Schedule,
    autocast,
    build_optimizer,
    clip_gradients,
    make_ema,
    param_groups,
)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x, y, index (host tensors)
#: a detection batch: images (C, H, W) of any size, torchvision target dicts, index
ListBatch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]], torch.Tensor]


class ModelLoss(nn.Module):
    """The criterion of models that compute their losses themselves in training mode
    (torchvision's detectors: ``model(images, targets) -> {name: loss}``): the total is the
    sum of the terms, each logged under its name. ``fit`` passes the targets to such models."""

    def forward(
        self,
        losses: dict[str, torch.Tensor],
        targets: Any = None,
        sample_weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if sample_weight is not None:
            raise DatapipeError("per-sample loss weights are not supported for detectors yet")
        total = torch.stack([v.float() for v in losses.values()]).sum()
        return total, {k: v.detach() for k, v in losses.items()}


@dataclass(frozen=True)
class RunSettings:
    """Where and how a model runs: device, AMP, DataLoader workers, the process group."""

    device: torch.device
    amp: bool = True
    workers: int = 0
    dist: Dist = field(default_factory=Dist)
    #: model and 4-D batches in ``torch.channels_last``; None: on CUDA only
    channels_last: bool | None = None
    #: bfloat16 autocast on the CPU too
    cpu_amp: bool = False

    @property
    def nhwc(self) -> bool:
        return self.device.type == "cuda" if self.channels_last is None else self.channels_last


@dataclass(frozen=True)
class Optimisation:
    """How parameters are stepped; the score and train recipes both map onto it."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.05
    weight_decay: float = 5e-4
    lr_mult: Mapping[str, float] = field(default_factory=dict)
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "step", "plateau"] = "cosine"
    milestones: Sequence[int] = ()  # epochs, for schedule "step"
    gamma: float = 0.1
    tie_weight_decay: bool = False
    clip_grad: float | None = None
    ema: float | None = None

    @classmethod
    def of(cls, recipe: Any) -> Optimisation:
        """A score or train recipe's (``datapipe.config._Fit``) optimiser settings."""
        return cls(
            optimizer=recipe.optimizer, lr=recipe.lr, weight_decay=recipe.weight_decay,
            lr_mult=dict(recipe.lr_mult), warmup_epochs=recipe.warmup_epochs,
            schedule=recipe.schedule, milestones=tuple(recipe.milestones), gamma=recipe.gamma,
            tie_weight_decay=recipe.tie_weight_decay, clip_grad=recipe.clip_grad, ema=recipe.ema,
        )  # fmt: skip


@dataclass
class Hooks:
    """What a caller adds to :func:`fit`; every hook is optional."""

    #: ``(x, y, epoch, step_in_epoch) -> (x, y)`` on the device: flips, mixup / cutmix
    transform: Callable[[torch.Tensor, torch.Tensor, int, int], tuple[torch.Tensor, ...]] | None = (
        None
    )
    #: ``index -> (B,)`` loss weights, or None for all ones
    sample_weight: Callable[[torch.Tensor], torch.Tensor | None] | None = None
    #: ``(index, logits, y)`` after the forward pass, detached: training dynamics
    on_batch: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None
    #: ``(epoch, row)`` after each epoch, ``row`` already in the history; it may add entries
    #: (validation metrics) and save a checkpoint
    on_epoch: Callable[[int, dict[str, float]], None] | None = None


@dataclass
class Trainer:
    """A model with what steps it (optimizer, schedule, EMA, criterion): what :func:`fit` runs
    and a checkpoint saves."""

    raw: nn.Module  # the model itself, on the device
    net: nn.Module  # ``raw`` or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    ema: Any  # torch AveragedModel or None
    criterion: CompositeLoss | ModelLoss
    starts: np.ndarray  # (epochs + 1,) the first iteration of each epoch
    clip_grad: float | None = None  # max gradient norm
    history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        model: nn.Module,
        opt: Optimisation,
        criterion: CompositeLoss | ModelLoss,
        *,
        steps: Sequence[int],
        run: RunSettings,
        sync_bn: bool = False,
        plateau_mode: Literal["min", "max"] = "max",
    ) -> Trainer:
        """``steps``: optimizer steps of each epoch (their count is the number of epochs)."""
        raw, net = prepare(model, run, sync_bn=sync_bn)
        optimizer = build_optimizer(
            param_groups(raw, lr=opt.lr, weight_decay=opt.weight_decay, lr_mult=opt.lr_mult),
            name=opt.optimizer,
        )
        starts = np.concatenate([[0], np.cumsum(steps)]).astype(int)
        epochs = len(steps)
        schedule = Schedule(
            optimizer,
            kind=opt.schedule,
            total=int(starts[-1]),
            warmup=min(int(starts[-1]), round(opt.warmup_epochs * steps[0])),
            milestones=[int(starts[m]) for m in opt.milestones if 0 < m < epochs],
            gamma=opt.gamma,
            plateau=Plateau(mode=plateau_mode) if opt.schedule == "plateau" else None,
            tie_weight_decay=opt.tie_weight_decay,
        )
        ema = make_ema(raw, decay=opt.ema) if opt.ema else None
        return cls(
            raw, net, optimizer, schedule, ema, criterion.to(run.device), starts, opt.clip_grad
        )

    @property
    def final(self) -> nn.Module:
        """The weights to keep: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.raw

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.raw.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "history": list(self.history),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.raw.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.history = list(state["history"])


def prepare(
    model: nn.Module, run: RunSettings, *, sync_bn: bool = False
) -> tuple[nn.Module, nn.Module]:
    """``(raw, net)``: the model on the device (channels_last on CUDA, SyncBatchNorm when asked
    and possible) and, under torchrun, its DistributedDataParallel wrapper."""
    raw = model.to(run.device)
    if run.nhwc:
        raw = raw.to(memory_format=torch.channels_last)
    if sync_bn and run.dist.active and run.device.type == "cuda":
        raw = nn.SyncBatchNorm.convert_sync_batchnorm(raw)
    if not run.dist.active:
        return raw, raw
    ids = [run.device.index] if run.device.type == "cuda" else None
    return raw, nn.parallel.DistributedDataParallel(raw, device_ids=ids)


def to_device(x: torch.Tensor, device: torch.device, nhwc: bool | None = None) -> torch.Tensor:
    """Images as float32 on ``device``, 4-D ones channels_last when ``nhwc`` (None: on CUDA)."""
    x = x.to(device, torch.float32, non_blocking=True)
    if (device.type == "cuda" if nhwc is None else nhwc) and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _to_device(x: Any, y: Any, run: RunSettings) -> tuple[Any, Any]:
    """A batch on the run's device: tensors, or (detection) lists of images and target dicts."""
    device = run.device
    if isinstance(x, torch.Tensor):
        return to_device(x, device, run.nhwc), y.to(device, non_blocking=True)
    images = [i.to(device, torch.float32, non_blocking=True) for i in x]
    return images, [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in y]


def _finite(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return torch.isfinite(x).all()
    return torch.stack([torch.isfinite(i).all() for i in x]).all()


def fit(
    trainer: Trainer,
    batches: Callable[[int], Iterable[Batch]] | Callable[[int], Iterable[ListBatch]],
    *,
    run: RunSettings,
    seed: int,
    first_epoch: int = 0,
    hooks: Hooks | None = None,
    lr_key: str = "lr",
) -> list[dict[str, float]]:
    """Train ``trainer`` from ``first_epoch`` to the last epoch of its schedule; returns (and
    appends to ``trainer.history``) one row per epoch: mean ``train/<term>`` losses,
    ``train/grad_norm``, ``lr``, ``epoch`` and whatever ``hooks.on_epoch`` adds.

    A non-finite epoch loss is a :class:`DatapipeError` naming its likely cause: non-finite
    input pixels, or else the learning rate (``lr_key``, the params key to lower).
    """
    hooks = hooks or Hooks()
    epochs = len(trainer.starts) - 1
    for epoch in range(first_epoch, epochs):
        torch.manual_seed(seed * 100_003 + epoch)  # dropout etc.: a function of (seed, epoch)
        row = _epoch(trainer, batches(epoch), run, hooks, epoch=epoch, lr_key=lr_key)
        trainer.history.append(row)
        if hooks.on_epoch is not None:
            hooks.on_epoch(epoch, row)
    return trainer.history


def _epoch(
    trainer: Trainer,
    batches: Iterable[Batch] | Iterable[ListBatch],
    run: RunSettings,
    hooks: Hooks,
    *,
    epoch: int,
    lr_key: str,
) -> dict[str, float]:
    trainer.net.train()
    device = run.device
    sums: dict[str, float] = {}
    bad_input = torch.zeros((), dtype=torch.bool, device=device)
    step = int(trainer.starts[epoch])
    count = 0
    model_loss = isinstance(trainer.criterion, ModelLoss)
    for i, (x, y, index) in enumerate(batches):
        x, y = _to_device(x, y, run)
        bad_input |= ~_finite(x)
        if hooks.transform is not None:
            x, y = hooks.transform(x, y, epoch, i)
        w = hooks.sample_weight(index) if hooks.sample_weight is not None else None
        trainer.schedule.step(step)
        with autocast(device, enabled=run.amp, cpu=run.cpu_amp):
            logits = trainer.net(x, y) if model_loss else trainer.net(x)
        loss, terms = trainer.criterion(
            logits if model_loss else logits.float(), y, sample_weight=w
        )
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(trainer.net.parameters(), max_norm=trainer.clip_grad)
        trainer.optimizer.step()
        if trainer.ema is not None:
            trainer.ema.update_parameters(trainer.raw)
        if hooks.on_batch is not None and not model_loss:
            hooks.on_batch(index, logits.detach(), y)
        for name, value in {"loss": loss.detach(), **terms, "grad_norm": grad_norm}.items():
            sums[name] = sums.get(name, 0.0) + float(value)
        step += 1
        count += 1
    row = {f"train/{k}": v / max(1, count) for k, v in sums.items()}
    loss_value = row.get("train/loss", 0.0)
    if not math.isfinite(loss_value):
        cause = (
            "some input pixels are NaN or infinite (see the clean stage's nonfinite flags)"
            if bool(bad_input)
            else f"lower {lr_key}, or set clip_grad"
        )
        raise DatapipeError(f"epoch {epoch}: the training loss is {loss_value}; {cause}")
    row["lr"] = float(trainer.optimizer.param_groups[0]["lr"])
    row["epoch"] = float(epoch)
    return row


def predict(
    model: nn.Module,
    batches: Iterable[Batch],
    run: RunSettings,
    *,
    probs: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """``(index, probabilities, y)`` per batch, on the host (probabilities float32).

    ``probs(model, x)`` turns a batch into probabilities (default: softmax over dim 1; test-time
    augmentation passes its own).
    """
    model.eval()
    with torch.no_grad():
        for x, y, index in batches:
            x = to_device(x, run.device, run.nhwc)
            with autocast(run.device, enabled=run.amp, cpu=run.cpu_amp):
                p = probs(model, x) if probs is not None else model(x).float().softmax(1)
            yield np.asarray(index), p.float().cpu(), y
