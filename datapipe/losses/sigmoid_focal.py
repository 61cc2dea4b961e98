"""Sigmoid focal loss (Lin et al., 2017): one sigmoid per class, on one-hot targets.

As ``torchvision.ops.sigmoid_focal_loss``: an (element, class) pair costs ``(1 - p_t)^γ·BCE``,
times ``α·t + (1 - α)·(1 - t)`` when ``alpha`` is given, times ``class_weight[k]``; targets,
ignore handling and the mean are those of :func:`~datapipe.losses.one_hot_bce`, which is the
case ``γ = 0`` without ``alpha``.
"""

from __future__ import annotations

from torch import Tensor, nn

from datapipe.losses._inputs import check_inputs
from datapipe.losses._weights import ClassWeight, class_weight_buffer
from datapipe.losses.bce import _sigmoid_loss
from datapipe.losses.focal import check_gamma
from datapipe.losses.reduction import Reduction


def sigmoid_focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = None,
    class_weight: ClassWeight | None = None,
    ignore_index: int | None = None,
    avg_non_ignore: bool = True,
    sample_weight: Tensor | None = None,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Sigmoid focal loss on one-hot targets; ``alpha`` in [0, 1] weighs the positives.

    Shapes: logits (N, K, *); target (N, *) int64 or (N, K, *) float in [0, 1];
    sample_weight (N,); mask (N, *) bool -> scalar, or (N, K, *) with ``reduction="none"``.
    """
    check_gamma(gamma)
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"expected alpha in [0, 1] or None, got {alpha}")
    inputs = check_inputs(
        logits,
        target,
        class_weight=class_weight,
        ignore_index=ignore_index,
        sample_weight=sample_weight,
        mask=mask,
    )
    return _sigmoid_loss(inputs, gamma, alpha, avg_non_ignore, reduction)


class SigmoidFocalLoss(nn.Module):
    """:func:`sigmoid_focal_loss` with its options fixed. Shapes: as :func:`sigmoid_focal_loss`."""

    class_weight: Tensor | None

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | None = None,
        class_weight: ClassWeight | None = None,
        ignore_index: int | None = None,
        avg_non_ignore: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_gamma(gamma)
        self.register_buffer("class_weight", class_weight_buffer(class_weight), persistent=False)
        self.gamma = gamma
        self.alpha = alpha
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
        return sigmoid_focal_loss(
            logits,
            target,
            gamma=self.gamma,
            alpha=self.alpha,
            class_weight=self.class_weight,
            ignore_index=self.ignore_index,
            avg_non_ignore=self.avg_non_ignore,
            sample_weight=sample_weight,
            mask=mask,
            reduction=self.reduction,
        )
