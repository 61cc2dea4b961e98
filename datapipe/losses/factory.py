"""``build_loss``: a :class:`~datapipe.losses.CompositeLoss` from flat, params.yaml-like options;
``criterion``: the same from a ``loss:`` params section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from datapipe.config import LossParams
from datapipe.errors import DatapipeError
from datapipe.losses._weights import ClassWeight
from datapipe.losses.class_weights import class_weights
from datapipe.losses.composite import CompositeLoss
from datapipe.losses.ohem import PixelOhem, SampleOhem


def build_loss(
    terms: Mapping[str, float],
    *,
    dense: bool,
    num_classes: int,
    class_weight: ClassWeight | None = None,
    ignore_index: int | None = 255,
    avg_non_ignore: bool = True,
    label_smoothing: float = 0.0,
    ohem_thresh: float | None = None,
    ohem_min_kept: int | None = None,
    ohem_keep_ratio: float | None = None,
    focal_gamma: float = 2.0,
) -> CompositeLoss:
    """The weighted sum of ``terms`` (e.g. ``{"loss_ce": 1.0, "loss_dice": 3.0}``).

    OHEM: ``ohem_thresh`` / ``ohem_min_kept`` select pixels (segmentation), ``ohem_keep_ratio``
    samples (classification); none of them, no OHEM.

    Shapes: as :class:`~datapipe.losses.CompositeLoss`.
    """
    return CompositeLoss(
        terms,
        dense=dense,
        num_classes=num_classes,
        class_weight=class_weight,
        ignore_index=ignore_index,
        avg_non_ignore=avg_non_ignore,
        label_smoothing=label_smoothing,
        ohem=_ohem(dense, ohem_thresh, ohem_min_kept, ohem_keep_ratio),
        focal_gamma=focal_gamma,
    )


def _ohem(
    dense: bool, thresh: float | None, min_kept: int | None, keep_ratio: float | None
) -> PixelOhem | SampleOhem | None:
    pixel = thresh is not None or min_kept is not None
    if not dense and pixel:
        raise ValueError(
            "expected ohem_keep_ratio (not ohem_thresh / ohem_min_kept) for image labels, "
            f"got ohem_thresh={thresh}, ohem_min_kept={min_kept}"
        )
    if dense and keep_ratio is not None:
        raise ValueError(
            "expected ohem_thresh / ohem_min_kept (not ohem_keep_ratio) for dense targets, "
            f"got ohem_keep_ratio={keep_ratio}"
        )
    if pixel:
        return PixelOhem(thresh=thresh, min_kept=min_kept or 0)
    return None if keep_ratio is None else SampleOhem(keep_ratio=keep_ratio)


def criterion(
    loss: LossParams,
    *,
    dense: bool,
    classes: Sequence[str],
    class_counts: np.ndarray | Sequence[float] | None,
    ignore_index: int,
    key: str,
) -> CompositeLoss:
    """The loss a ``loss:`` params section describes, for the score and train stages alike:
    class weights from a list or from ``class_counts`` (samples or labelled pixels per class),
    ``ignore_index`` for dense (per-pixel) targets. Errors name ``key`` (e.g.
    ``train.segmentation.loss``).
    """
    weight: list[float] | None
    if isinstance(loss.class_weight, list):
        if len(loss.class_weight) != len(classes):
            raise DatapipeError(
                f"{key}.class_weight: expected {len(classes)} weights (one per class "
                f"{list(classes)}); got {len(loss.class_weight)}"
            )
        weight = loss.class_weight
    elif loss.class_weight == "none":
        weight = None
    else:
        if class_counts is None:
            raise DatapipeError(f"{key}.class_weight: {loss.class_weight!r} needs class counts")
        weight = np.asarray(
            class_weights(np.asarray(class_counts, np.float64), method=loss.class_weight),
            np.float64,
        ).tolist()
    try:
        return build_loss(
            loss.terms,
            dense=dense,
            num_classes=len(classes),
            class_weight=weight,
            ignore_index=ignore_index if dense else None,
            avg_non_ignore=loss.avg_non_ignore,
            label_smoothing=loss.label_smoothing,
            ohem_thresh=loss.ohem_thresh,
            ohem_min_kept=loss.ohem_min_kept,
            ohem_keep_ratio=loss.ohem_keep_ratio,
            focal_gamma=loss.focal_gamma,
        )
    except ValueError as exc:
        raise DatapipeError(f"{key}: {exc}") from None
