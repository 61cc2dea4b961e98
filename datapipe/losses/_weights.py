"""Per-class and per-sample weights, and ``ignore_index``, checked at the boundary."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

ClassWeight = Sequence[float] | np.ndarray | Tensor


def check_ignore_index(ignore_index: int | None, num_classes: int) -> None:
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        raise ValueError(
            f"expected ignore_index outside [0, {num_classes}) or None (it would silence a "
            f"class), got {ignore_index}"
        )


def as_class_weight(
    class_weight: ClassWeight, num_classes: int, like: Tensor, *, name: str = "class_weight"
) -> Tensor:
    """``class_weight`` checked and converted to ``like``'s dtype and device. Shapes: (K,)."""
    w = as_weight(class_weight, name, (num_classes,), like)
    if not bool((w > 0).any()):
        raise ValueError(f"expected a {name} > 0 for some class, got {w.tolist()}")
    return w


def class_weight_buffer(class_weight: ClassWeight | None) -> Tensor | None:
    """A module's class-weight buffer (float32, moved with the module); checked on use."""
    return None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)


def as_weight(weight: ClassWeight, name: str, shape: tuple[int], like: Tensor) -> Tensor:
    w = torch.as_tensor(weight).to(device=like.device, dtype=like.dtype)
    if tuple(w.shape) != shape:
        raise ValueError(f"expected {name} of shape {shape}, got {tuple(w.shape)}")
    if not bool((torch.isfinite(w) & (w >= 0)).all()):
        raise ValueError(f"expected finite {name} >= 0, got {w.tolist()}")
    return w


def class_view(weight: Tensor, ndim: int) -> Tensor:
    """A (K,) weight shaped to broadcast over (N, K, *) of ``ndim`` dims."""
    return weight.view(1, -1, *([1] * (ndim - 2)))
