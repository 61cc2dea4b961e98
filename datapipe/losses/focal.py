"""Softmax focal loss (Lin et al., 2017): cross-entropy scaled by ``(1 - p_y)^γ``.

An element costs ``α[y]·(1 - p_y)^γ·(-log p_y)``, averaged like
:func:`~datapipe.losses.cross_entropy` with ``class_weight=α`` (the summed ``α`` of the
non-ignored elements), so ``γ = 0`` is that cross-entropy. Soft targets cost
``-Σ_k α[k]·t_k·(1 - p_k)^γ·log p_k``, averaged over elements. Sigmoid variant:
:func:`~datapipe.losses.sigmoid_focal_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datapipe.losses._inputs import LossInput, check_inputs
from datapipe.losses._weights import ClassWeight, class_view, class_weight_buffer
from datapipe.losses.reduction import Reduction, reduce_with_ignore


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: ClassWeight | None = None,
    ignore_index: int | None = None,
    avg_non_ignore: bool = True,
    sample_weight: Tensor | None = None,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Softmax focal loss; ``alpha`` is a per-class weight.

    Shapes: logits (N, K, *); target (N, *) int64 or (N, K, *) float; alpha (K,);
    sample_weight (N,); mask (N, *) bool -> scalar, or (N, *) with ``reduction="none"``.
    """
    check_gamma(gamma)
    inputs = check_inputs(
        logits,
        target,
        class_weight=alpha,
        class_weight_name="alpha",
        ignore_index=ignore_index,
        sample_weight=sample_weight,
        mask=mask,
    )
    return _focal(inputs, gamma, avg_non_ignore, reduction)


def _focal(
    inputs: LossInput, gamma: float, avg_non_ignore: bool, reduction: Reduction = "mean"
) -> Tensor:
    logp = F.log_softmax(inputs.logits, dim=1)
    per_class = -logp * (-torch.expm1(logp)).pow(gamma)  # -(1 - p)^γ·log p, for every class
    alpha = inputs.class_weight
    if alpha is not None:
        per_class = per_class * class_view(alpha, logp.ndim)
    target_weight = None
    if inputs.soft:
        loss = (per_class * inputs.target).sum(1)
    else:
        y = inputs.safe_target
        loss = per_class.gather(1, y.unsqueeze(1)).squeeze(1)
        target_weight = None if alpha is None else alpha[y]
    return reduce_with_ignore(
        loss,
        keep=inputs.keep,
        target_weight=target_weight,
        sample_weight=inputs.sample_weight,
        avg_non_ignore=avg_non_ignore,
        reduction=reduction,
    )


def check_gamma(gamma: float) -> None:
    if not gamma >= 0:
        raise ValueError(f"expected gamma >= 0, got {gamma}")


class FocalLoss(nn.Module):
    """:func:`focal_loss` with its options fixed. Shapes: as :func:`focal_loss`."""

    alpha: Tensor | None

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: ClassWeight | None = None,
        ignore_index: int | None = None,
        avg_non_ignore: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_gamma(gamma)
        self.register_buffer("alpha", class_weight_buffer(alpha), persistent=False)
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore
        self.reduction: Reduction = reduction

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        *,
        sample_weight: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        return focal_loss(
            logits,
            target,
            gamma=self.gamma,
            alpha=self.alpha,
            ignore_index=self.ignore_index,
            avg_non_ignore=self.avg_non_ignore,
            sample_weight=sample_weight,
            mask=mask,
            reduction=self.reduction,
        )
