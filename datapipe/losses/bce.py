"""Binary cross-entropy with logits on one-hot targets: one sigmoid per class.

For multi-label classification (or single-label data trained with sigmoids). Class indices
become one-hot rows, and an ignored index contributes nothing; (N, K, *) float targets in
[0, 1] are used as they are. An (element, class) pair costs ``w[k]·(softplus(x) - x·t)``: class
weights multiply, as ``weight=`` does in ``F.binary_cross_entropy_with_logits``, and the mean is
over the kept (element, class) pairs, or over all of them with ``avg_non_ignore=False``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from datapipe.losses._inputs import LossInput, check_inputs
from datapipe.losses._weights import ClassWeight, class_view, class_weight_buffer
from datapipe.losses.reduction import Reduction, reduce_with_ignore


def one_hot_bce(
    logits: Tensor,
    target: Tensor,
    *,
    class_weight: ClassWeight | None = None,
    ignore_index: int | None = None,
    avg_non_ignore: bool = True,
    sample_weight: Tensor | None = None,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """BCE-with-logits of every class against one-hot (or multi-hot) targets.

    Shapes: logits (N, K, *); target (N, *) int64 or (N, K, *) float in [0, 1];
    sample_weight (N,); mask (N, *) bool -> scalar, or (N, K, *) with ``reduction="none"``.
    """
    inputs = check_inputs(
        logits,
        target,
        class_weight=class_weight,
        ignore_index=ignore_index,
        sample_weight=sample_weight,
        mask=mask,
    )
    return _sigmoid_loss(inputs, 0.0, None, avg_non_ignore, reduction)


def _sigmoid_loss(
    inputs: LossInput,
    gamma: float,
    alpha: float | None,
    avg_non_ignore: bool,
    reduction: Reduction = "mean",
) -> Tensor:
    """Sigmoid focal loss; ``gamma=0, alpha=None`` is plain BCE-with-logits."""
    x = inputs.logits
    t = inputs.target
    if not inputs.soft:
        t = F.one_hot(inputs.safe_target, x.shape[1]).movedim(-1, 1).to(x.dtype)
    loss = F.softplus(x) - x * t
    if gamma > 0:
        p = x.sigmoid()
        loss = loss * (p + t - 2 * p * t).pow(gamma)  # 1 - p_t = p(1 - t) + (1 - p)t
    if alpha is not None:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    if inputs.class_weight is not None:
        loss = loss * class_view(inputs.class_weight, loss.ndim)
    return reduce_with_ignore(
        loss,
        keep=inputs.keep.unsqueeze(1),
        sample_weight=inputs.sample_weight,
        avg_non_ignore=avg_non_ignore,
        reduction=reduction,
    )


class OneHotBCELoss(nn.Module):
    """:func:`one_hot_bce` with its options fixed. Shapes: as :func:`one_hot_bce`."""

    class_weight: Tensor | None

    def __init__(
        self,
        *,
        class_weight: ClassWeight | None = None,
        ignore_index: int | None = None,
        avg_non_ignore: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.register_buffer("class_weight", class_weight_buffer(class_weight), persistent=False)
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
        return one_hot_bce(
            logits,
            target,
            class_weight=self.class_weight,
            ignore_index=self.ignore_index,
            avg_non_ignore=self.avg_non_ignore,
            sample_weight=sample_weight,
            mask=mask,
            reduction=self.reduction,
        )
