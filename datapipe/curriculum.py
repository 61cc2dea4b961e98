"""Curriculum by difficulty: easy samples first, then all, then optionally the hard ones more.

``pacing`` is the share of the kept data trained on at an epoch, a pure function of the epoch
that starts at ``start`` and reaches 1.0 at ``full_epoch``: ``linear``, ``root`` (the square-root
competence of Platanios et al., 2019, which adds data fast early and slowly late) or ``step``
(equal jumps). ``CurriculumSampler`` takes the easiest such share of the kept samples (ranked by
the ``difficulty`` score once), from ``oversample_from_epoch`` on redraws them with replacement
in proportion to ``(difficulty + 0.001) ** alpha``, shuffles, and gives each DDP rank its shard.
Every rank draws the same epoch from ``(seed, epoch)``, so the shards need no communication;
dropped samples (``keep`` False) never enter.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal, get_args

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

PacingKind = Literal["none", "linear", "root", "step"]

OVERSAMPLE_EPS = 1e-3  # so the easiest samples (difficulty 0) can still be drawn


def pacing(epoch: int, *, kind: PacingKind, start: float, full_epoch: int, steps: int = 4) -> float:
    """The fraction of the kept data in use at ``epoch`` (0-based), in ``[start, 1]``.

    ``start`` at epoch 0, 1.0 from ``full_epoch`` on, non-decreasing between: ``linear``
    ``start + (1 - start) * t``, ``root`` ``sqrt(start² + (1 - start²) * t)`` with
    ``t = epoch / full_epoch``, ``step`` ``start + (1 - start) * floor(steps * t) / steps``
    (``steps`` equal jumps, the last at ``full_epoch``). ``none`` is always 1.0.
    """
    _check_pacing(kind=kind, start=start, full_epoch=full_epoch, steps=steps)
    return _pacing(_check_epoch(epoch), kind=kind, start=start, full_epoch=full_epoch, steps=steps)


def _pacing(epoch: int, *, kind: PacingKind, start: float, full_epoch: int, steps: int) -> float:
    if kind == "none" or epoch >= full_epoch:
        return 1.0
    t = epoch / full_epoch
    if kind == "linear":
        return start + (1.0 - start) * t
    if kind == "root":
        return min(1.0, math.sqrt(start**2 + (1.0 - start**2) * t))
    return start + (1.0 - start) * (epoch * steps // full_epoch) / steps


def _check_pacing(*, kind: str, start: float, full_epoch: int, steps: int) -> None:
    if kind not in get_args(PacingKind):
        raise ValueError(f"expected kind in {get_args(PacingKind)}, got {kind!r}")
    if not 0 < start <= 1:
        raise ValueError(f"expected start in (0, 1], got {start}")
    if isinstance(full_epoch, bool) or not isinstance(full_epoch, int) or full_epoch < 0:
        raise ValueError(f"expected full_epoch an int >= 0, got {full_epoch!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"expected steps an int >= 1, got {steps!r}")


class CurriculumSampler(Sampler[int]):
    """Indices of one epoch's curriculum, this rank's shard of them.

    Each epoch: the easiest ``ceil(pacing(epoch) * n_kept)`` kept samples (ties by index); if
    ``oversample_alpha`` > 0 and ``epoch >= oversample_from_epoch`` (default ``full_epoch``),
    as many draws from them with replacement, ``p ∝ (difficulty + 0.001) ** alpha``; shuffled
    (else in index order); padded by repeating its head to a multiple of ``world`` and split
    ``order[rank::world]``, as ``DistributedSampler`` does, so every rank has the same length.
    Call ``set_epoch`` before each epoch. ``rank``/``world`` default to torch.distributed's
    when it is initialised, else 0 and 1.

    Shapes:
        ``difficulty`` ``(N,)`` float in [0, 1], higher = harder, NaN = unknown (taken as the
        kept samples' median); ``keep`` ``(N,)`` bool, default all.
    """

    def __init__(
        self,
        difficulty: np.ndarray,
        *,
        seed: int,
        keep: np.ndarray | None = None,
        pacing_kind: PacingKind = "none",
        start: float = 1.0,
        full_epoch: int = 0,
        steps: int = 4,
        oversample_alpha: float = 0.0,
        oversample_from_epoch: int | None = None,
        shuffle: bool = True,
        rank: int | None = None,
        world: int | None = None,
    ) -> None:
        """Long by design: every option is validated here, before an epoch is drawn."""
        d = np.asarray(difficulty, np.float64)
        if d.ndim != 1 or len(d) == 0:
            raise ValueError(f"expected difficulty of shape (N,) with N > 0, got {d.shape}")
        known = d[~np.isnan(d)]
        if not np.all((known >= 0) & (known <= 1)):
            raise ValueError(
                f"expected difficulty in [0, 1] or NaN, got values in "
                f"[{known.min()}, {known.max()}]"
            )
        if keep is None:
            keep = np.ones(len(d), bool)
        keep = np.asarray(keep)
        if keep.dtype != np.bool_ or keep.shape != d.shape:
            raise ValueError(
                f"expected keep a bool mask of shape {d.shape}, got {keep.dtype} {keep.shape}"
            )
        if not keep.any():
            raise ValueError("expected at least one kept sample, got none")
        _check_pacing(kind=pacing_kind, start=start, full_epoch=full_epoch, steps=steps)
        if not (math.isfinite(oversample_alpha) and oversample_alpha >= 0):
            raise ValueError(f"expected oversample_alpha >= 0, got {oversample_alpha}")
        from_epoch = full_epoch if oversample_from_epoch is None else oversample_from_epoch
        if from_epoch < 0:
            raise ValueError(f"expected oversample_from_epoch >= 0, got {from_epoch}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"expected seed an int >= 0, got {seed!r}")
        rank, world = _rank_world(rank, world)

        kept = np.flatnonzero(keep)
        kept_d = d[kept]
        unknown = np.isnan(kept_d)
        if unknown.any():
            kept_d = np.where(
                unknown, np.median(kept_d[~unknown]) if (~unknown).any() else 0.5, kept_d
            )
        ranking = np.argsort(kept_d, kind="stable")  # kept is ascending: ties go by index
        self._ranked = kept[ranking]
        self._ranked_difficulty = kept_d[ranking]
        self.pacing_kind: PacingKind = pacing_kind
        self.start = start
        self.full_epoch = full_epoch
        self.steps = steps
        self.oversample_alpha = float(oversample_alpha)
        self.oversample_from_epoch = from_epoch
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = rank
        self.world = world
        self.epoch = 0

    @property
    def num_kept(self) -> int:
        return len(self._ranked)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = _check_epoch(epoch)

    def fraction(self, epoch: int) -> float:
        """The paced share of the kept samples at ``epoch``."""
        return _pacing(
            _check_epoch(epoch),
            kind=self.pacing_kind,
            start=self.start,
            full_epoch=self.full_epoch,
            steps=self.steps,
        )

    def selection(self, epoch: int) -> np.ndarray:
        """The distinct samples in use at ``epoch``, easiest first (before oversampling)."""
        n = self.num_kept
        count = min(n, max(1, math.ceil(self.fraction(epoch) * n - 1e-9)))
        return self._ranked[:count]

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Every rank's indices for ``epoch`` before sharding, padded to a multiple of world."""
        rng = np.random.default_rng([self.seed, _check_epoch(epoch)])
        chosen = self.selection(epoch)
        if self.oversample_alpha > 0 and epoch >= self.oversample_from_epoch:
            weight = (
                self._ranked_difficulty[: len(chosen)] + OVERSAMPLE_EPS
            ) ** self.oversample_alpha
            chosen = rng.choice(chosen, size=len(chosen), replace=True, p=weight / weight.sum())
        order = rng.permutation(chosen) if self.shuffle else np.sort(chosen)
        short = -len(order) % self.world
        if short:
            order = np.concatenate([order, np.resize(order, short)])
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order(self.epoch)[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return math.ceil(len(self.selection(self.epoch)) / self.world)


def from_recipe(
    difficulty: np.ndarray,
    keep: np.ndarray,
    recipe: Any,
    *,
    rank: int | None = None,
    world: int | None = None,
) -> CurriculumSampler:
    """The sampler a train recipe asks for (``recipe.curriculum``: pacing, start, full_epoch,
    oversample_alpha; ``recipe.epochs``, ``recipe.seed``): unknown difficulty counts as 0.5,
    ``full_epoch`` defaults to half of the epochs, oversampling starts there."""
    c = recipe.curriculum
    paced = c.pacing != "none"
    full = c.full_epoch or max(1, recipe.epochs // 2)
    return CurriculumSampler(
        np.clip(np.nan_to_num(np.asarray(difficulty, np.float64), nan=0.5), 0.0, 1.0),
        seed=recipe.seed,
        keep=keep,
        pacing_kind=c.pacing,
        start=c.start if paced else 1.0,
        full_epoch=full if paced else 0,
        oversample_alpha=c.oversample_alpha,
        oversample_from_epoch=full if paced else 0,
        rank=rank,
        world=world,
    )


def _rank_world(rank: int | None, world: int | None) -> tuple[int, int]:
    initialised = dist.is_available() and dist.is_initialized()
    if world is None:
        world = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"expected world >= 1 and rank in [0, world), got {rank}, {world}")
    return rank, world


def _check_epoch(epoch: int) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
        raise ValueError(f"expected epoch an int >= 0, got {epoch!r}")
    return int(epoch)
