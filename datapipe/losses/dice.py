"""Multi-class soft Dice loss on softmax probabilities, per image and ignore-aware.

Per image and class ``c``, over the kept pixels (not ``ignore_index``, not masked out):
``dice_c = (2·Σ p_c·t_c + smooth) / (Σ p_c + Σ t_c + smooth)``, with ``t`` the one-hot target
built from kept pixels only; an ignored pixel adds nothing to the intersection or the union,
whatever is predicted there. An image's loss is ``1 - mean_c dice_c``, the mean weighted by
``class_weight`` when given (a class of weight 0 drops out). Images are averaged with their
sample weights; an image without a kept pixel counts for nothing. Soft targets are refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datapipe.losses._inputs import LossInput, check_inputs
from datapipe.losses._weights import ClassWeight, class_weight_buffer
from datapipe.losses.reduction import Reduction, reduce_loss


def dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    class_weight: ClassWeight | None = None,
    ignore_index: int | None = None,
    smooth: float = 1.0,
    sample_weight: Tensor | None = None,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Soft Dice loss of per-pixel logits against a class-index mask.

    Shapes: logits (N, K, H, W) (any number >= 1 of spatial dims); target (N, H, W) int64;
    sample_weight (N,); mask (N, H, W) bool -> scalar, or (N,) with ``reduction="none"``.
    """
    if not smooth > 0:
        raise ValueError(f"expected smooth > 0, got {smooth}")
    if isinstance(logits, Tensor) and logits.ndim < 3:
        raise ValueError(f"expected logits (N, K, H, W) for dice_loss, got {tuple(logits.shape)}")
    inputs = check_inputs(
        logits,
        target,
        class_weight=class_weight,
        ignore_index=ignore_index,
        sample_weight=sample_weight,
        mask=mask,
    )
    if inputs.soft:
        raise ValueError(
            f"expected a class-index target for dice_loss, got soft target {tuple(target.shape)}"
        )
    return _dice(inputs, smooth, reduction)


def _dice(inputs: LossInput, smooth: float, reduction: Reduction = "mean") -> Tensor:
    keep = inputs.keep.unsqueeze(1)
    p = torch.where(keep, inputs.logits.softmax(1), 0.0)
    t = F.one_hot(inputs.safe_target, p.shape[1]).movedim(-1, 1).to(p.dtype) * keep
    pixels = tuple(range(2, p.ndim))
    intersection = (p * t).sum(pixels)
    union = p.sum(pixels) + t.sum(pixels)
    dice = (2 * intersection + smooth) / (union + smooth)  # (N, K)
    cw = inputs.class_weight
    mean_dice = dice.mean(1) if cw is None else (dice * cw).sum(1) / cw.sum()
    has_pixels = inputs.keep.flatten(1).any(1)
    return reduce_loss(
        1 - mean_dice, weight=inputs.sample_weight, mask=has_pixels, reduction=reduction
    )


class DiceLoss(nn.Module):
    """:func:`dice_loss` with its options fixed. Shapes: as :func:`dice_loss`."""

    class_weight: Tensor | None

    def __init__(
        self,
        *,
        class_weight: ClassWeight | None = None,
        ignore_index: int | None = None,
        smooth: float = 1.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        if not smooth > 0:
            raise ValueError(f"expected smooth > 0, got {smooth}")
        self.register_buffer("class_weight", class_weight_buffer(class_weight), persistent=False)
        self.ignore_index = ignore_index
        self.smooth = smooth
        self.reduction: Reduction = reduction

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        *,
        sample_weight: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        return dice_loss(
            logits,
            target,
            class_weight=self.class_weight,
            ignore_index=self.ignore_index,
            smooth=self.smooth,
            sample_weight=sample_weight,
            mask=mask,
            reduction=self.reduction,
        )
