"""Boundary checks shared by the losses; each raises ``ValueError("expected …, got …")``.

:func:`check_inputs` turns user arguments into a :class:`LossInput` that the private ``_impl``
functions trust: logits in a float dtype of at least 32 bits, ignored and masked-out elements
folded into one ``keep`` mask, weights as tensors on the logits' device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from datapipe.losses._weights import ClassWeight, as_class_weight, as_weight, check_ignore_index


@dataclass(frozen=True)
class LossInput:
    """Checked inputs. Shapes: logits (N, K, *), target (N, *) int64 or (N, K, *) float,
    keep (N, *) bool, sample_weight (N,), class_weight (K,)."""

    logits: Tensor
    target: Tensor
    soft: bool
    keep: Tensor
    sample_weight: Tensor | None
    class_weight: Tensor | None

    @property
    def safe_target(self) -> Tensor:
        """Hard target with every element that is not kept set to class 0 (a valid index)."""
        return self.target.where(self.keep, 0)


def check_inputs(
    logits: Tensor,
    target: Tensor,
    *,
    class_weight: ClassWeight | None,
    ignore_index: int | None,
    sample_weight: Tensor | None = None,
    mask: Tensor | None = None,
    class_weight_name: str = "class_weight",
) -> LossInput:
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.ndim < 2:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"expected float logits of shape (N, K, *), got {got}")
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))
    soft = _check_target(x, target, ignore_index)
    elements = (x.shape[0], *x.shape[2:])
    keep = torch.ones(elements, dtype=torch.bool, device=x.device)
    if not soft and ignore_index is not None:
        keep = target != ignore_index
    if mask is not None:
        if mask.dtype != torch.bool or tuple(mask.shape) != elements:
            raise ValueError(
                f"expected a bool mask of shape {elements}, got {mask.dtype} {tuple(mask.shape)}"
            )
        keep = keep & mask
    cw = (
        None
        if class_weight is None
        else as_class_weight(class_weight, x.shape[1], x, name=class_weight_name)
    )
    sw = None
    if sample_weight is not None:
        sw = as_weight(sample_weight, "sample_weight", (x.shape[0],), x)
    return LossInput(x, target.to(x.dtype) if soft else target.long(), soft, keep, sw, cw)


def _check_target(logits: Tensor, target: Tensor, ignore_index: int | None) -> bool:
    """Whether ``target`` is soft (class probabilities); hard targets are checked for range."""
    if not isinstance(target, Tensor):
        raise ValueError(f"expected target as a Tensor, got {type(target).__name__}")
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(
                f"expected soft target of shape {tuple(logits.shape)}, got {tuple(target.shape)}"
            )
        return True
    hard_shape = (logits.shape[0], *logits.shape[2:])
    if target.dtype == torch.bool or tuple(target.shape) != hard_shape:
        raise ValueError(
            f"expected int target {hard_shape}, got {target.dtype} {tuple(target.shape)}"
        )
    num_classes = logits.shape[1]
    check_ignore_index(ignore_index, num_classes)
    bad = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    if bool(bad.any()):
        allowed = f"[0, {num_classes})" + ("" if ignore_index is None else f" or {ignore_index}")
        raise ValueError(f"expected target values in {allowed}, got {int(target[bad][0])}")
    return False
