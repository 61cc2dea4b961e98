"""Cross-entropy over class indices or class probabilities, as ``F.cross_entropy`` defines it.

Hard targets: with label smoothing ε an element's loss is
``(1 - ε)·w[y]·(-log p_y) + ε/K·Σ_k w[k]·(-log p_k)`` and 0 where the target is
``ignore_index``. The mean divides by the summed class weight of the non-ignored elements (their
count without class weights); ``avg_non_ignore=False`` divides by every element instead, ignored
ones included (MMSegmentation's behaviour before ``avg_non_ignore``). Soft targets ``t`` (mixup,
cutmix) give ``-Σ_k w[k]·t'_k·log p_k`` with ``t' = (1 - ε)·t + ε/K``, averaged over elements.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from datapipe.losses._inputs import LossInput, check_inputs
from datapipe.losses._weights import ClassWeight, class_view, class_weight_buffer
from datapipe.losses.reduction import Reduction, reduce_with_ignore


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    class_weight: ClassWeight | None = None,
    ignore_index: int | None = None,
    avg_non_ignore: bool = True,
    label_smoothing: float = 0.0,
    sample_weight: Tensor | None = None,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Cross-entropy of ``logits`` against class indices or class probabilities.

    Shapes: logits (N, K, *); target (N, *) int64 or (N, K, *) float; sample_weight (N,);
    mask (N, *) bool -> scalar, or (N, *) with ``reduction="none"``.
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"expected label_smoothing in [0, 1], got {label_smoothing}")
    inputs = check_inputs(
        logits,
        target,
        class_weight=class_weight,
        ignore_index=ignore_index,
        sample_weight=sample_weight,
        mask=mask,
    )
    return _cross_entropy(inputs, label_smoothing, avg_non_ignore, reduction)


def _cross_entropy(
    inputs: LossInput, label_smoothing: float, avg_non_ignore: bool, reduction: Reduction = "mean"
) -> Tensor:
    logp = F.log_softmax(inputs.logits, dim=1)
    cw = inputs.class_weight
    weighted_logp = logp if cw is None else logp * class_view(cw, logp.ndim)
    target_weight = None  # torch averages soft targets over elements, whatever the weights
    if inputs.soft:
        t = inputs.target * (1.0 - label_smoothing) + label_smoothing / logp.shape[1]
        loss = -(weighted_logp * t).sum(1)
    else:
        y = inputs.safe_target
        loss = -weighted_logp.gather(1, y.unsqueeze(1)).squeeze(1)
        target_weight = None if cw is None else cw[y]
        if label_smoothing > 0:
            smooth = -weighted_logp.mean(1)
            loss = (1.0 - label_smoothing) * loss + label_smoothing * smooth
    return reduce_with_ignore(
        loss,
        keep=inputs.keep,
        target_weight=target_weight,
        sample_weight=inputs.sample_weight,
        avg_non_ignore=avg_non_ignore,
        reduction=reduction,
    )


class CrossEntropyLoss(nn.Module):
    """:func:`cross_entropy` with its options fixed. Shapes: as :func:`cross_entropy`."""

    class_weight: Tensor | None

    def __init__(
        self,
        *,
        class_weight: ClassWeight | None = None,
        ignore_index: int | None = None,
        avg_non_ignore: bool = True,
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.register_buffer("class_weight", class_weight_buffer(class_weight), persistent=False)
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore
        self.label_smoothing = label_smoothing
        self.reduction: Reduction = reduction

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        *,
        sample_weight: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        return cross_entropy(
            logits,
            target,
            class_weight=self.class_weight,
            ignore_index=self.ignore_index,
            avg_non_ignore=self.avg_non_ignore,
            label_smoothing=self.label_smoothing,
            sample_weight=sample_weight,
            mask=mask,
            reduction=self.reduction,
        )
