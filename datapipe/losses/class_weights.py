"""Per-class loss weights from per-class counts (pixels or samples in the curated table).

- ``"inverse"``: ``1 / n_c``.
- ``"median_frequency"``: ``median(f) / f_c`` with ``f_c = n_c / Σ n`` and the median over
  present classes (Eigen & Fergus, 2015): the median class weighs 1.
- ``"effective_number"``: ``(1 - β) / (1 - β^n_c)``, the inverse of the effective number of
  samples (Cui et al., 2019); β → 0 gives equal weights, β → 1 inverse frequency.

A class with count 0 gets weight 0 (never inf or nan). ``"inverse"`` and
``"effective_number"`` are scaled so the weights average to 1 over the present classes;
``"median_frequency"`` keeps its own scale (scaled to mean 1 it would equal ``"inverse"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import numpy as np
import torch
from torch import Tensor

WeightMethod = Literal["inverse", "median_frequency", "effective_number"]
METHODS: tuple[WeightMethod, ...] = ("inverse", "median_frequency", "effective_number")


@overload
def class_weights(counts: Tensor, *, method: WeightMethod, beta: float = 0.999) -> Tensor: ...
@overload
def class_weights(
    counts: np.ndarray | Sequence[float], *, method: WeightMethod, beta: float = 0.999
) -> np.ndarray: ...
def class_weights(
    counts: Tensor | np.ndarray | Sequence[float], *, method: WeightMethod, beta: float = 0.999
) -> Tensor | np.ndarray:
    """Class weights from class counts: a float32 Tensor for a Tensor, else a float64 array.

    Shapes: counts (K,) -> (K,).
    """
    n = np.asarray(counts.detach().cpu() if isinstance(counts, Tensor) else counts, np.float64)
    if n.ndim != 1 or n.size == 0 or not np.isfinite(n).all() or (n < 0).any():
        raise ValueError(f"expected a non-empty 1-D array of finite counts >= 0, got {n!r}")
    if not (n > 0).any():
        raise ValueError(f"expected at least one class with a count > 0, got {n.tolist()}")
    if method not in METHODS:
        raise ValueError(f"expected method in {METHODS}, got {method!r}")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"expected beta in [0, 1), got {beta}")
    present = n > 0
    w = np.zeros_like(n)
    w[present] = _RAW[method](n[present], beta)
    if method != "median_frequency":
        w /= w[present].mean()
    if isinstance(counts, Tensor):
        return torch.as_tensor(w, dtype=torch.float32, device=counts.device)
    return w


def _inverse(n: np.ndarray, beta: float) -> np.ndarray:
    return 1.0 / n


def _median_frequency(n: np.ndarray, beta: float) -> np.ndarray:
    freq = n / n.sum()
    return np.median(freq) / freq


def _effective_number(n: np.ndarray, beta: float) -> np.ndarray:
    # 1 - β^n computed as -expm1(n·log β), exact for β near 1; β = 0 gives 1 for every n > 0.
    effective = -np.expm1(n * np.log(beta)) if beta > 0 else np.ones_like(n)
    return (1.0 - beta) / effective


_RAW = {
    "inverse": _inverse,
    "median_frequency": _median_frequency,
    "effective_number": _effective_number,
}
