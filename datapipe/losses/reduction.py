"""The one reduction every loss uses: per-element loss, element weights and mask, then reduce.

Weights are frequency weights: an element of weight 2 counts as two elements, in the sum and in
the mean's denominator, so a sample of weight 2 gives the same mean as that sample twice in the
batch, and weight 0 removes it. An element that is masked out counts for nothing.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[Reduction, ...] = ("mean", "sum", "none")


def reduce_loss(
    loss: Tensor,
    *,
    weight: Tensor | None = None,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
    avg_factor: float | Tensor | None = None,
) -> Tensor:
    """Weight, mask and reduce a per-element loss.

    ``"mean"`` divides the weighted sum by ``avg_factor`` when given, else by the total weight
    of the unmasked elements (their count without weights); a mean over nothing is 0, not nan.
    ``"none"`` returns the weighted loss with masked elements set to 0.

    Shapes: loss (N, *); weight (N,) (one per sample, broadcast over the rest) or broadcastable
    to loss; mask bool broadcastable to loss -> scalar, or loss's shape with ``"none"``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"expected reduction in {REDUCTIONS}, got {reduction!r}")
    scale = _scale(loss, weight, mask)
    if mask is not None:
        loss = torch.where(mask, loss, 0.0)
    if scale is not None:
        loss = loss * scale
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if avg_factor is None:
        avg_factor = scale.expand_as(loss).sum() if scale is not None else loss.numel()
    denominator = torch.as_tensor(avg_factor, dtype=total.dtype, device=total.device)
    return total / denominator.clamp_min(torch.finfo(total.dtype).tiny)


def _scale(loss: Tensor, weight: Tensor | None, mask: Tensor | None) -> Tensor | None:
    if weight is not None and weight.ndim == 1 and loss.ndim > 1:
        weight = weight.view(-1, *([1] * (loss.ndim - 1)))
    if mask is None:
        return weight
    as_float = mask.to(loss.dtype)
    return as_float if weight is None else as_float * weight


def reduce_with_ignore(
    loss: Tensor,
    *,
    keep: Tensor,
    target_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    avg_non_ignore: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """:func:`reduce_loss` for a loss over targets with ``ignore_index``.

    ``keep`` marks the elements that are neither ignored nor masked out. With
    ``avg_non_ignore=True`` the mean divides by their weight: ``Σ target_weight·sample_weight``
    over them (torch's weighted mean for ``F.cross_entropy(weight=...)``, where
    ``target_weight`` is the class weight of each element's target), or their count. With
    ``False`` every element counts (times its sample weight), ignored or not, as in
    MMSegmentation before ``avg_non_ignore``.

    Shapes: loss (N, *); keep and target_weight broadcastable to loss; sample_weight (N,).
    """
    if not avg_non_ignore:
        denominator = reduce_loss(torch.ones_like(loss), weight=sample_weight, reduction="sum")
    elif target_weight is not None:
        denominator = reduce_loss(target_weight, weight=sample_weight, mask=keep, reduction="sum")
    else:
        denominator = None
    return reduce_loss(
        loss, weight=sample_weight, mask=keep, reduction=reduction, avg_factor=denominator
    )
