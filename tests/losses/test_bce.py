from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datapipe.losses import OneHotBCELoss, one_hot_bce

from ._shared import IGNORE, Batch


def test_indices_match_bce_with_logits_on_one_hot(cls: Batch) -> None:
    logits, target = cls
    one_hot = F.one_hot(target, 4).double()
    torch.testing.assert_close(
        one_hot_bce(logits, target), F.binary_cross_entropy_with_logits(logits, one_hot)
    )


def test_multi_label_targets_with_class_weight_match_torch(cls: Batch) -> None:
    logits, _ = cls
    multi_hot = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]] * 2, dtype=torch.float64)
    cw = torch.tensor([1.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    for reduction in ("mean", "sum", "none"):
        torch.testing.assert_close(
            one_hot_bce(logits, multi_hot, class_weight=cw, reduction=reduction),  # type: ignore[arg-type]
            F.binary_cross_entropy_with_logits(logits, multi_hot, weight=cw, reduction=reduction),
        )


def test_segmentation_ignore_drops_whole_pixels(seg: Batch) -> None:
    logits, target = seg
    keep = target != IGNORE
    one_hot = F.one_hot(target.where(keep, 0), 3).movedim(-1, 1).double()
    per = F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none")
    expected = per.movedim(1, -1)[keep].mean()  # mean over kept (pixel, class) pairs
    torch.testing.assert_close(one_hot_bce(logits, target, ignore_index=IGNORE), expected)
    all_pairs = (per * keep.unsqueeze(1)).sum() / per.numel()
    torch.testing.assert_close(
        one_hot_bce(logits, target, ignore_index=IGNORE, avg_non_ignore=False), all_pairs
    )


def test_known_answer_zero_logits() -> None:
    # sigmoid(0) = 0.5: every (sample, class) pair costs log 2, whatever the target
    loss = one_hot_bce(torch.zeros(2, 3), torch.tensor([0, 2]))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_module_matches_function(seg: Batch) -> None:
    logits, target = seg
    module = OneHotBCELoss(class_weight=[1.0, 0.5, 2.0], ignore_index=IGNORE, reduction="sum")
    torch.testing.assert_close(
        module(logits, target),
        one_hot_bce(
            logits, target, class_weight=[1.0, 0.5, 2.0], ignore_index=IGNORE, reduction="sum"
        ),
    )
