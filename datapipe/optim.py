"""Optimisers, learning-rate schedules, gradient clipping, AMP and EMA for the training stage.

``param_groups`` splits a model's trainable parameters by learning-rate multiplier (name keys,
as MMSegmentation's ``paramwise_cfg.custom_keys``) and by weight decay (none on norm layers and
biases); ``build_optimizer`` makes torch's SGD or AdamW from them. ``Schedule`` sets every
group's learning rate each iteration (warmup times cosine / step decay) and adds a plateau mode
that wraps torch's ``ReduceLROnPlateau`` per epoch. The rest wraps torch's own helpers:
``clip_grad_norm_``, ``autocast`` (bfloat16, which needs no loss scaling) and
``AveragedModel`` for EMA.

A training step, in order::

    schedule.step(iteration)                 # sets every group's lr (and tied weight decay)
    with autocast(device, enabled=amp):
        loss = criterion(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)               # before clipping (a no-op unless fp16)
    grad_norm = clip_gradients(model.parameters(), max_norm=10.0)
    scaler.step(optimizer)
    scaler.update()
    if ema is not None:
        ema.update_parameters(raw_model)     # the module, not its DDP wrapper
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

OptimizerName = Literal["sgd", "adamw"]
DecayKind = Literal["cosine", "step", "constant"]
ScheduleKind = Literal["cosine", "step", "constant", "plateau"]
AmpDtype = Literal["bfloat16", "float16"]

# Layers whose weights are scales and shifts, not filters: no weight decay on them.
# ``_NormBase`` covers BatchNorm*, SyncBatchNorm and InstanceNorm*.
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.RMSNorm,
)


# --------------------------------------------------------------------------- param groups


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    lr_mult: Mapping[str, float] | None = None,
    decay_norm_bias: bool = False,
) -> list[dict[str, Any]]:
    """The trainable parameters of ``model`` as optimizer groups.

    A parameter's learning-rate multiplier comes from ``lr_mult``: the *longest* key that is a
    substring of its name (``{"head": 10.0, "head.cls": 1.0}`` gives ``head.cls.weight`` 1.0
    and ``head.reg.weight`` 10.0); no matching key means 1.0. A key that matches no parameter,
    or two equally long keys matching one name, is a ValueError. Weights of norm layers
    (``NORM_LAYERS``) and every bias or other 1-d parameter get weight decay 0 unless
    ``decay_norm_bias``. Frozen parameters (``requires_grad`` False) are left out.

    Each group holds ``params``, ``param_names``, ``lr`` (= ``lr * mult``), ``weight_decay``,
    and, for ``Schedule``, ``lr_mult``, ``base_lr`` (its lr at schedule factor 1) and
    ``base_weight_decay``. Groups come in order of first appearance in ``named_parameters``.

    Long by design: the multiplier match and the decay split must see each parameter once.
    """
    mult = dict(lr_mult or {})
    _check_positive("lr", lr)
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"expected weight_decay >= 0, got {weight_decay}")
    for key, value in mult.items():
        if not key:
            raise ValueError("expected non-empty lr_mult keys, got ''")
        _check_positive(f"lr_mult[{key!r}]", value)
    names = [name for name, _ in model.named_parameters()]
    unused = sorted(key for key in mult if not any(key in name for name in names))
    if unused:
        raise ValueError(
            f"expected every lr_mult key to match a parameter name, got {unused} matching none "
            f"(names look like {names[:3]})"
        )
    no_decay = set() if decay_norm_bias else _no_decay_ids(model)
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        m = _multiplier(name, mult)
        decays = decay_norm_bias or (id(param) not in no_decay and param.ndim > 1)
        wd = weight_decay if decays else 0.0
        group = groups.setdefault(
            (m, decays),
            {
                "params": [],
                "param_names": [],
                "lr": lr * m,
                "weight_decay": wd,
                "lr_mult": m,
                "base_lr": lr * m,
                "base_weight_decay": wd,
            },
        )
        group["params"].append(param)
        group["param_names"].append(name)
    if not groups:
        raise ValueError("expected a model with trainable parameters, got none")
    return list(groups.values())


def _multiplier(name: str, mult: Mapping[str, float]) -> float:
    hits = [key for key in mult if key in name]
    if not hits:
        return 1.0
    longest = max(len(key) for key in hits)
    best = sorted(key for key in hits if len(key) == longest)
    if len(best) > 1:
        raise ValueError(
            f"expected one longest lr_mult key in parameter {name!r}, got {best}; "
            "add a longer key to settle it"
        )
    return float(mult[best[0]])


def _no_decay_ids(model: nn.Module) -> set[int]:
    """ids of the parameters of norm layers (weights and biases)."""
    return {
        id(p)
        for module in model.modules()
        if isinstance(module, NORM_LAYERS)
        for p in module.parameters(recurse=False)
    }


def build_optimizer(
    groups: list[dict[str, Any]],
    *,
    name: OptimizerName,
    momentum: float = 0.9,
    nesterov: bool = True,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """torch's SGD (momentum, Nesterov by default) or AdamW over ``param_groups`` output.

    The learning rate and weight decay come from each group; ``momentum`` and ``nesterov``
    apply to SGD, ``betas`` and ``eps`` to AdamW.
    """
    if name not in get_args(OptimizerName):
        raise ValueError(f"expected name in {get_args(OptimizerName)}, got {name!r}")
    if not groups:
        raise ValueError("expected at least one parameter group, got none")
    for i, group in enumerate(groups):
        missing = {"params", "lr", "weight_decay"} - set(group)
        if missing:
            raise ValueError(f"expected group {i} to have {sorted(missing)} (see param_groups)")
    if name == "sgd":
        if not 0 <= momentum < 1:
            raise ValueError(f"expected momentum in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("expected momentum > 0 with nesterov, got 0")
        return torch.optim.SGD(groups, momentum=momentum, nesterov=nesterov)
    if not all(0 <= b < 1 for b in betas):
        raise ValueError(f"expected betas in [0, 1), got {betas}")
    return torch.optim.AdamW(groups, betas=betas, eps=eps)


# --------------------------------------------------------------------------- schedules


def _warmup_factor(step: int, *, warmup: int, start: float) -> float:
    if step >= warmup:
        return 1.0
    return start + (1.0 - start) * step / warmup


def _decay_factor(
    step: int,
    *,
    total: int,
    warmup: int,
    kind: DecayKind,
    milestones: Sequence[int],
    gamma: float,
    min_factor: float,
) -> float:
    if kind == "constant" or step < warmup:
        return 1.0
    if kind == "step":
        return float(gamma ** sum(step >= m for m in milestones))
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_schedule(
    kinds: tuple[str, ...],
    *,
    total: int,
    warmup: int,
    kind: str,
    warmup_start: float,
    milestones: Sequence[int],
    gamma: float,
    min_factor: float,
) -> None:
    if kind not in kinds:
        raise ValueError(f"expected kind in {kinds}, got {kind!r}")
    if not isinstance(total, int) or total < 1:
        raise ValueError(f"expected total an int >= 1, got {total!r}")
    if not isinstance(warmup, int) or not 0 <= warmup <= total:
        raise ValueError(f"expected warmup an int in [0, total={total}], got {warmup!r}")
    if not 0 < warmup_start <= 1:
        raise ValueError(f"expected warmup_start in (0, 1], got {warmup_start}")
    if not 0 < gamma < 1:
        raise ValueError(f"expected gamma in (0, 1), got {gamma}")
    if not 0 <= min_factor <= 1:
        raise ValueError(f"expected min_factor in [0, 1], got {min_factor}")
    if kind == "step":
        ms = list(milestones)
        if not ms or ms != sorted(set(ms)) or not all(0 < m <= total for m in ms):
            raise ValueError(
                f"expected strictly increasing milestones in (0, total={total}] (iterations, "
                f"not epochs), got {ms}"
            )
    elif milestones:
        raise ValueError(f"expected no milestones with kind={kind!r}, got {list(milestones)}")
    if kind in ("step", "constant") and min_factor != 0:  # plateau: its floor
        raise ValueError(f"expected min_factor 0 with kind={kind!r}, got {min_factor}")


@dataclass(frozen=True)
class Plateau:
    """``ReduceLROnPlateau``'s options for kind ``plateau`` (its factor is the schedule's
    ``gamma``, its floor ``min_factor * base_lr``): reduce after ``patience`` epochs whose
    metric did not improve on the best by ``threshold`` (relative), then wait ``cooldown``."""

    mode: Literal["min", "max"] = "min"
    patience: int = 2
    threshold: float = 1e-4
    cooldown: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"expected mode 'min' or 'max', got {self.mode!r}")
        if min(self.patience, self.cooldown) < 0 or not self.threshold >= 0:
            raise ValueError(
                f"expected patience, cooldown, threshold >= 0, got {self.patience}, "
                f"{self.cooldown}, {self.threshold}"
            )


class Schedule:
    """Sets every group's learning rate from the iteration, and per epoch from a metric.

    ``step(iteration)`` sets ``lr = base_lr * warmup(iteration) * decay(iteration)`` in every group
    (``base_lr`` as ``param_groups`` records it, else the group's lr when the schedule is
    made); the constructor applies iteration 0. Kind ``plateau`` warms up like the others and
    then holds, while ``step_metric(value)``, once per epoch, hands the value to torch's
    ``ReduceLROnPlateau`` (options in ``plateau``), which multiplies the LR by ``gamma`` after
    ``patience`` epochs without improvement, never below ``min_factor * base_lr``.

    ``tie_weight_decay`` scales each group's weight decay by the same decay as its LR (the
    plateau's reductions, the cosine or step decay; never the warmup ramp), as practitioners
    do when fine-tuning Mask R-CNN.

    Only the plateau's state needs saving: ``state_dict`` / ``load_state_dict`` for resume.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        kind: ScheduleKind,
        total: int,
        warmup: int = 0,
        warmup_start: float = 0.001,
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        min_factor: float = 0.0,
        plateau: Plateau | None = None,
        tie_weight_decay: bool = False,
    ) -> None:
        is_plateau = kind == "plateau"
        _check_schedule(
            get_args(ScheduleKind),
            total=total,
            warmup=warmup,
            kind=kind,
            warmup_start=warmup_start,
            milestones=milestones,
            gamma=gamma,
            min_factor=min_factor,
        )
        if plateau is not None and not is_plateau:
            raise ValueError(f"expected plateau options only with kind='plateau', got {kind!r}")
        self.optimizer = optimizer
        self.kind = kind
        self.tie_weight_decay = tie_weight_decay
        self._warmup = warmup
        self._warmup_start = warmup_start
        self._decay: dict[str, Any] = {
            "total": total,
            "warmup": warmup,
            "kind": "constant" if is_plateau else kind,
            "milestones": tuple(milestones),
            "gamma": gamma,
            "min_factor": min_factor,
        }
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
            group.setdefault("base_weight_decay", group.get("weight_decay", 0.0))
            _check_positive("base_lr", group["base_lr"])
        self._scale = [1.0] * len(optimizer.param_groups)
        self._iteration = 0
        self._plateau: ReduceLROnPlateau | None = None
        if is_plateau:
            options = plateau or Plateau()
            self._plateau = ReduceLROnPlateau(
                optimizer,
                mode=options.mode,
                factor=gamma,
                patience=options.patience,
                threshold=options.threshold,
                cooldown=options.cooldown,
                min_lr=[g["base_lr"] * min_factor for g in optimizer.param_groups],
                eps=0.0,
            )
        self.step(0)

    @property
    def scale(self) -> list[float]:
        """The plateau's reduction of each group so far (1.0 until the first)."""
        return list(self._scale)

    def step(self, iteration: int) -> None:
        """Set the learning rate (and tied weight decay) for ``iteration`` (0-based)."""
        if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
            raise ValueError(f"expected iteration an int >= 0, got {iteration!r}")
        self._iteration = iteration
        warm = _warmup_factor(iteration, warmup=self._warmup, start=self._warmup_start)
        decay = _decay_factor(iteration, **self._decay)
        for group, scale in zip(self.optimizer.param_groups, self._scale, strict=True):
            group["lr"] = group["base_lr"] * warm * decay * scale
            if self.tie_weight_decay:
                group["weight_decay"] = group["base_weight_decay"] * decay * scale

    def step_metric(self, value: float) -> bool:
        """End of an epoch, kind ``plateau``: record the validation metric; True if the LR
        was reduced."""
        if self._plateau is None:
            raise ValueError(f"expected kind='plateau' for step_metric, got {self.kind!r}")
        if not math.isfinite(float(value)):
            raise ValueError(f"expected a finite metric, got {value}")
        groups = self.optimizer.param_groups
        for group, scale in zip(groups, self._scale, strict=True):
            group["lr"] = group["base_lr"] * scale  # the plateau works on the held LR
        self._plateau.step(float(value))
        new = [group["lr"] / group["base_lr"] for group in groups]
        reduced = any(n < s for n, s in zip(new, self._scale, strict=True))
        self._scale = new
        self.step(self._iteration)
        return reduced

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "scale": list(self._scale),
            "plateau": None if self._plateau is None else self._plateau.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"expected a {self.kind!r} schedule state, got {state.get('kind')!r}")
        if len(state["scale"]) != len(self._scale):
            raise ValueError(f"expected {len(self._scale)} group scales, got {len(state['scale'])}")
        self._scale = [float(s) for s in state["scale"]]
        if self._plateau is not None:
            self._plateau.load_state_dict(dict(state["plateau"]))
        self.step(self._iteration)


# --------------------------------------------------------------------------- step helpers


def clip_gradients(params: Iterable[torch.Tensor], *, max_norm: float | None) -> float:
    """The total L2 norm of the gradients, before clipping; clip them to ``max_norm``.

    ``max_norm`` None or 0 only measures. Under fp16 AMP, call ``scaler.unscale_(optimizer)``
    first, or the norm is of scaled gradients.
    """
    grads = [p for p in params if p.grad is not None]
    if max_norm is not None and not (math.isfinite(max_norm) and max_norm >= 0):
        raise ValueError(f"expected max_norm >= 0 or None, got {max_norm}")
    if not grads:
        return 0.0
    if not max_norm:
        norm = nn.utils.get_total_norm([p.grad for p in grads if p.grad is not None])
    else:
        norm = nn.utils.clip_grad_norm_(grads, max_norm)
    return float(norm)


def make_ema(model: nn.Module, *, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s weights and buffers (torch's
    ``AveragedModel``): after each optimizer step, ``ema.update_parameters(model)``;
    evaluate ``ema.module``. The first update copies the weights, each later one sets
    ``ema = decay * ema + (1 - decay) * weights``. Pass the bare module, not its DDP wrapper.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise ValueError("expected the bare module (ddp.module), got DistributedDataParallel")
    if not 0 <= decay <= 1:
        raise ValueError(f"expected decay in [0, 1], got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def autocast(
    device: torch.device | str,
    *,
    enabled: bool = True,
    dtype: AmpDtype = "bfloat16",
    cpu: bool = False,
) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision on CUDA when ``enabled`` (bfloat16 unless ``dtype``), bfloat16 on the
    CPU when ``cpu``; a no-op otherwise."""
    if dtype not in get_args(AmpDtype):
        raise ValueError(f"expected dtype in {get_args(AmpDtype)}, got {dtype!r}")
    kind = torch.device(device).type
    if kind == "cpu" and cpu:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if not enabled or kind != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=getattr(torch, dtype))


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 instructions (AMX or AVX512-BF16, from the Linux CPU
    flags); False where that cannot be read."""
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("amx_bf16", "avx512_bf16"))


def _check_positive(what: str, value: float) -> None:
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"expected {what} > 0, got {value!r}")
