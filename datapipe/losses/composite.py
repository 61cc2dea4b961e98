"""A weighted sum of named losses over one batch, with one OHEM mask for every term.

Terms, each the mean over the batch: ``loss_ce`` (:func:`~datapipe.losses.cross_entropy`, with
``class_weight`` and ``label_smoothing``), ``loss_focal`` (softmax
:func:`~datapipe.losses.focal_loss`, ``alpha = class_weight``), ``loss_dice``
(:func:`~datapipe.losses.dice_loss`, class-weighted mean over classes, ``smooth=1``;
segmentation with class-index targets only) and ``loss_bce``
(:func:`~datapipe.losses.one_hot_bce`). ``ignore_index``, ``avg_non_ignore``, sample weights
and the OHEM mask apply to every term; label smoothing to ``loss_ce`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import Tensor, nn

from datapipe.losses._inputs import LossInput, check_inputs
from datapipe.losses._weights import ClassWeight, as_class_weight, check_ignore_index
from datapipe.losses.cross_entropy import _cross_entropy
from datapipe.losses.focal import check_gamma
from datapipe.losses.ohem import PixelOhem, SampleOhem, pixel_mask, sample_mask
from datapipe.losses.terms import TERMS, TermOptions, check_ohem, check_terms


class CompositeLoss(nn.Module):
    """``Σ weight·term`` over the named terms; forward returns it and each term, detached.

    Shapes: classification logits (N, K), target (N,) int64 or (N, K) float; segmentation
    logits (N, K, H, W), target (N, H, W) int64 or (N, K, H, W) float; sample_weight (N,)
    -> (scalar, {name: scalar}).
    """

    class_weight: Tensor | None

    def __init__(
        self,
        terms: Mapping[str, float],
        *,
        dense: bool,
        num_classes: int,
        class_weight: ClassWeight | None = None,
        ignore_index: int | None = 255,
        avg_non_ignore: bool = True,
        label_smoothing: float = 0.0,
        ohem: PixelOhem | SampleOhem | None = None,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"expected num_classes >= 2, got {num_classes}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"expected label_smoothing in [0, 1], got {label_smoothing}")
        check_gamma(focal_gamma)
        check_ignore_index(ignore_index, num_classes)
        self.terms = check_terms(terms, dense)
        check_ohem(ohem, dense)
        self.dense = dense
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.ohem = ohem
        self.options = TermOptions(avg_non_ignore, label_smoothing, focal_gamma)
        if class_weight is not None:
            class_weight = as_class_weight(class_weight, num_classes, torch.zeros(()))
        self.register_buffer("class_weight", class_weight, persistent=False)

    def forward(
        self, logits: Tensor, target: Tensor, *, sample_weight: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        self._check_logits(logits)
        inputs = check_inputs(
            logits,
            target,
            class_weight=self.class_weight,
            ignore_index=self.ignore_index,
            sample_weight=sample_weight,
        )
        if inputs.soft and ("loss_dice" in self.terms or isinstance(self.ohem, PixelOhem)):
            raise ValueError(
                f"expected a class-index target for Dice and pixel OHEM, got {tuple(target.shape)}"
            )
        if self.ohem is not None:
            inputs = replace(inputs, keep=inputs.keep & self._ohem_mask(inputs))
        parts = {name: TERMS[name](inputs, self.options) for name in self.terms}
        total = torch.stack([w * parts[name] for name, w in self.terms.items()]).sum()
        return total, {name: value.detach() for name, value in parts.items()}

    def _check_logits(self, logits: Tensor) -> None:
        ndim = 4 if self.dense else 2
        if isinstance(logits, Tensor) and (logits.ndim, logits.shape[1]) == (
            ndim,
            self.num_classes,
        ):
            return
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        want = "(N, K)" if ndim == 2 else "(N, K, H, W)"
        raise ValueError(f"expected logits {want} with K={self.num_classes}, got {got}")

    def _ohem_mask(self, inputs: LossInput) -> Tensor:
        match self.ohem:
            case PixelOhem() as config:
                return pixel_mask(inputs, config)
            case SampleOhem() as config:
                with torch.no_grad():
                    plain = replace(inputs, class_weight=None, sample_weight=None)
                    loss = _cross_entropy(plain, 0.0, True, "none")
                return sample_mask(loss, inputs.keep, config)
        raise AssertionError(f"unreachable: ohem={self.ohem!r}")
