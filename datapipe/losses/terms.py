"""The named terms of :class:`~datapipe.losses.CompositeLoss` and the checks of its options.

Each term is a small function of checked inputs (:class:`~datapipe.losses._inputs.LossInput`)
and the options shared by all terms; ``TERMS`` is the whole registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor

from datapipe.losses._inputs import LossInput
from datapipe.losses.bce import _sigmoid_loss
from datapipe.losses.cross_entropy import _cross_entropy
from datapipe.losses.dice import _dice
from datapipe.losses.focal import _focal
from datapipe.losses.ohem import PixelOhem, SampleOhem


@dataclass(frozen=True)
class TermOptions:
    avg_non_ignore: bool = True
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0


TERMS: dict[str, Callable[[LossInput, TermOptions], Tensor]] = {
    "loss_ce": lambda inputs, o: _cross_entropy(inputs, o.label_smoothing, o.avg_non_ignore),
    "loss_focal": lambda inputs, o: _focal(inputs, o.focal_gamma, o.avg_non_ignore),
    "loss_dice": lambda inputs, o: _dice(inputs, 1.0),
    "loss_bce": lambda inputs, o: _sigmoid_loss(inputs, 0.0, None, o.avg_non_ignore),
    # RetinaNet's one-vs-all focal loss (Lin et al. 2017) on one-hot targets
    "loss_sigmoid_focal": lambda inputs, o: _sigmoid_loss(
        inputs, o.focal_gamma, None, o.avg_non_ignore
    ),
}


def check_terms(terms: Mapping[str, float], dense: bool) -> dict[str, float]:
    """``terms`` as a dict, once every name is known and every weight finite and >= 0 (Dice
    only for ``dense``, per-pixel, targets)."""
    if not terms:
        raise ValueError(f"expected at least one loss term from {sorted(TERMS)}, got none")
    for name, weight in terms.items():
        if name not in TERMS:
            raise ValueError(f"expected loss names in {sorted(TERMS)}, got unknown {name!r}")
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"expected a finite weight >= 0 for {name!r}, got {weight}")
    if not dense and "loss_dice" in terms:
        raise ValueError("expected loss_dice only with dense (per-pixel) targets, got image labels")
    return dict(terms)


def check_ohem(ohem: PixelOhem | SampleOhem | None, dense: bool) -> None:
    wanted = PixelOhem if dense else SampleOhem
    if ohem is not None and not isinstance(ohem, wanted):
        raise ValueError(f"expected {wanted.__name__} OHEM for dense={dense}, got {ohem!r}")
