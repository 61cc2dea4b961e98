"""Online hard example mining: which elements a loss keeps. Returns a mask, computes no loss.

- :func:`ohem_pixel_mask`, segmentation, MMSegmentation's ``OHEMPixelSampler`` per image: with
  ``thresh``, keep the pixels whose softmax probability of their true class is below ``thresh``,
  and at least the ``min_kept`` least probable of each image (the threshold rises to the
  ``min_kept``-th smallest probability); without ``thresh``, keep the ``min_kept`` pixels of
  each image with the highest cross-entropy (the lowest true-class probability). Ignored pixels
  are never kept. MMSegmentation pools ``min_kept·N`` over the batch; here it is per image.
- :func:`ohem_sample_mask`, classification: keep the ``top_k`` (or ``⌈keep_ratio·N⌉``) samples
  with the highest loss.

Both run without gradient; ties are broken as ``torch.topk`` breaks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from datapipe.losses._inputs import LossInput, check_inputs


@dataclass(frozen=True)
class PixelOhem:
    thresh: float | None = None
    min_kept: int = 0

    def __post_init__(self) -> None:
        if self.thresh is not None and not 0.0 < self.thresh <= 1.0:
            raise ValueError(f"expected ohem thresh in (0, 1] or None, got {self.thresh}")
        if self.min_kept < 0 or (self.thresh is None and self.min_kept == 0):
            raise ValueError(f"expected min_kept > 0 (>= 0 with thresh), got {self.min_kept}")


@dataclass(frozen=True)
class SampleOhem:
    keep_ratio: float | None = None
    top_k: int | None = None

    def __post_init__(self) -> None:
        if (self.keep_ratio is None) == (self.top_k is None):
            raise ValueError(
                f"expected exactly one of keep_ratio, top_k; got {self.keep_ratio}, {self.top_k}"
            )
        if self.keep_ratio is not None and not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"expected keep_ratio in (0, 1], got {self.keep_ratio}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"expected top_k >= 1, got {self.top_k}")


def ohem_pixel_mask(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int | None = 255,
    thresh: float | None = None,
    min_kept: int = 0,
) -> Tensor:
    """The pixels to keep. Shapes: logits (N, K, *), target (N, *) int64 -> (N, *) bool."""
    config = PixelOhem(thresh=thresh, min_kept=min_kept)
    inputs = check_inputs(logits, target, class_weight=None, ignore_index=ignore_index)
    if inputs.soft:
        raise ValueError(f"expected a class-index target for OHEM, got {tuple(target.shape)}")
    return pixel_mask(inputs, config)


@torch.no_grad()
def pixel_mask(inputs: LossInput, config: PixelOhem) -> Tensor:
    """:func:`ohem_pixel_mask` on checked inputs; pixels outside ``inputs.keep`` never kept."""
    prob = inputs.logits.softmax(1).gather(1, inputs.safe_target.unsqueeze(1)).squeeze(1)
    prob, valid = prob.flatten(1), inputs.keep.flatten(1)
    kept = _top_k(-prob, valid, config.min_kept)
    if config.thresh is not None:
        kept |= valid & (prob < config.thresh)
    return kept.view_as(inputs.keep)


def ohem_sample_mask(
    loss: Tensor,
    *,
    keep_ratio: float | None = None,
    top_k: int | None = None,
    valid: Tensor | None = None,
) -> Tensor:
    """The samples with the highest loss, among ``valid`` ones.

    Shapes: loss (N,) float; valid (N,) bool -> (N,) bool.
    """
    config = SampleOhem(keep_ratio=keep_ratio, top_k=top_k)
    if loss.ndim != 1 or not loss.is_floating_point():
        raise ValueError(
            f"expected per-sample float losses (N,), got {loss.dtype} {tuple(loss.shape)}"
        )
    if valid is not None and (valid.dtype != torch.bool or valid.shape != loss.shape):
        raise ValueError(
            f"expected valid as bool {tuple(loss.shape)}, got {valid.dtype} {tuple(valid.shape)}"
        )
    return sample_mask(
        loss, torch.ones_like(loss, dtype=torch.bool) if valid is None else valid, config
    )


@torch.no_grad()
def sample_mask(loss: Tensor, valid: Tensor, config: SampleOhem) -> Tensor:
    """:func:`ohem_sample_mask` on checked inputs."""
    k = config.top_k or math.ceil((config.keep_ratio or 1.0) * loss.shape[0])
    return _top_k(loss[None], valid[None], k)[0]


def _top_k(score: Tensor, valid: Tensor, k: int) -> Tensor:
    """Per row, the ``k`` valid entries of highest score. Shapes: (B, P), (B, P) -> (B, P)."""
    k = min(k, score.shape[1])
    kept = torch.zeros_like(valid)
    if k == 0:
        return kept
    index = score.masked_fill(~valid, -torch.inf).topk(k, dim=1).indices
    return kept.scatter(1, index, True) & valid
