"""Per-sample weights from curation: weight 0 removes a sample, weight 2 duplicates it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from datapipe.losses import (
    cross_entropy,
    dice_loss,
    focal_loss,
    one_hot_bce,
    sigmoid_focal_loss,
)

from ._shared import IGNORE, Batch

CW = [0.5, 2.0, 1.0]
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "ce": lambda x, y, **kw: cross_entropy(x, y, ignore_index=IGNORE, class_weight=CW, **kw),
    "ce-smoothing": lambda x, y, **kw: cross_entropy(
        x, y, ignore_index=IGNORE, label_smoothing=0.1, **kw
    ),
    "ce-all-elements": lambda x, y, **kw: cross_entropy(
        x, y, ignore_index=IGNORE, avg_non_ignore=False, **kw
    ),
    "focal": lambda x, y, **kw: focal_loss(x, y, ignore_index=IGNORE, alpha=CW, **kw),
    "sigmoid-focal": lambda x, y, **kw: sigmoid_focal_loss(x, y, ignore_index=IGNORE, **kw),
    "bce": lambda x, y, **kw: one_hot_bce(x, y, ignore_index=IGNORE, class_weight=CW, **kw),
    "dice": lambda x, y, **kw: dice_loss(x, y, ignore_index=IGNORE, **kw),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_weight_zero_removes_the_sample(seg: Batch, name: str) -> None:
    logits, target = seg
    loss = LOSSES[name]
    weighted = loss(logits, target, sample_weight=torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(weighted, loss(logits[1:], target[1:]))


@pytest.mark.parametrize("name", list(LOSSES))
def test_weight_two_equals_duplicating(seg: Batch, name: str) -> None:
    logits, target = seg
    loss = LOSSES[name]
    weighted = loss(logits, target, sample_weight=torch.tensor([2.0, 1.0]))
    duplicated = loss(torch.cat([logits[:1], logits]), torch.cat([target[:1], target]))
    torch.testing.assert_close(weighted, duplicated)


def test_sum_scales_each_sample(cls: Batch) -> None:
    logits, target = cls
    w = torch.tensor([1.0, 2.0, 0.0, 1.0, 0.5, 3.0])
    per_sample = cross_entropy(logits, target, reduction="none")
    weighted = cross_entropy(logits, target, sample_weight=w, reduction="sum")
    torch.testing.assert_close(weighted, (per_sample * w.double()).sum())


@pytest.mark.parametrize(
    ("weight", "match"),
    [
        (torch.tensor([1.0, 2.0, 3.0]), r"sample_weight of shape \(2,\)"),
        (torch.tensor([1.0, -1.0]), "sample_weight >= 0"),
        (torch.tensor([1.0, float("nan")]), "finite sample_weight"),
    ],
    ids=["wrong-length", "negative", "nan"],
)
def test_bad_sample_weights_are_refused(seg: Batch, weight: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cross_entropy(*seg, ignore_index=IGNORE, sample_weight=weight)
