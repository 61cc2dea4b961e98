from __future__ import annotations

import pytest
import torch

from datapipe.losses import reduce_loss
from datapipe.losses.reduction import reduce_with_ignore

LOSS = torch.tensor([[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, 2.5),
        ({"reduction": "sum"}, 10.0),
        ({"weight": torch.tensor([1.0, 0.0])}, 1.5),  # per sample, broadcast over the row
        ({"weight": torch.tensor([2.0, 1.0])}, (2 * 3 + 7) / 6),  # weight 2 counts twice
        ({"weight": torch.tensor([2.0, 1.0]), "reduction": "sum"}, 13.0),
        ({"mask": torch.tensor([[True, False], [False, True]])}, 2.5),
        ({"mask": torch.tensor([[True, False], [True, False]])}, 2.0),
        ({"avg_factor": 5.0}, 2.0),
        ({"mask": torch.zeros(2, 2, dtype=torch.bool)}, 0.0),  # a mean over nothing is 0
    ],
    ids=[
        "mean",
        "sum",
        "sample-weight-0",
        "sample-weight-2",
        "weighted-sum",
        "mask-diagonal",
        "mask-column",
        "avg-factor",
        "all-masked",
    ],
)
def test_reduce_loss_known_answers(kwargs: dict, expected: float) -> None:
    assert reduce_loss(LOSS, **kwargs).item() == pytest.approx(expected)


def test_reduce_none_zeroes_masked_and_scales_weighted() -> None:
    out = reduce_loss(
        LOSS,
        weight=torch.tensor([2.0, 1.0]),
        mask=torch.tensor([[True, False], [True, True]]),
        reduction="none",
    )
    assert out.tolist() == [[2.0, 0.0], [3.0, 4.0]]


def test_masked_nan_does_not_leak() -> None:
    loss = torch.tensor([1.0, float("nan")])
    assert reduce_loss(loss, mask=torch.tensor([True, False])).item() == 1.0


def test_mask_broadcast_over_classes_counts_each_class() -> None:
    loss = torch.ones(2, 3, 4)  # (N, K, P): the keep mask (N, 1, P) spans the K classes
    keep = torch.tensor([[True, True, False, False], [True, False, False, False]]).unsqueeze(1)
    assert reduce_loss(loss * 2, mask=keep).item() == pytest.approx(2.0)
    assert reduce_loss(loss, mask=keep, reduction="sum").item() == 9.0


@pytest.mark.parametrize(
    ("avg_non_ignore", "target_weight", "expected"),
    [(True, None, 2.0), (False, None, 1.0), (True, torch.tensor([0.5, 9.0, 1.5, 9.0]), 2.0)],
    ids=["count-kept", "count-all", "weight-kept"],
)
def test_reduce_with_ignore_denominators(
    avg_non_ignore: bool, target_weight: torch.Tensor | None, expected: float
) -> None:
    loss = torch.tensor([1.0, 5.0, 3.0, 5.0])
    keep = torch.tensor([True, False, True, False])
    out = reduce_with_ignore(
        loss, keep=keep, target_weight=target_weight, avg_non_ignore=avg_non_ignore
    )
    assert out.item() == pytest.approx(expected)


def test_unknown_reduction_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expected reduction in .*got 'avg'"):
        reduce_loss(LOSS, reduction="avg")  # type: ignore[arg-type]
