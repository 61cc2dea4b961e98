from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss as tv_sigmoid_focal_loss

from datapipe.losses import (
    FocalLoss,
    SigmoidFocalLoss,
    cross_entropy,
    focal_loss,
    one_hot_bce,
    sigmoid_focal_loss,
)

from ._shared import IGNORE, Batch

ALPHA = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)


@pytest.mark.parametrize("alpha", [None, ALPHA], ids=["no-alpha", "alpha"])
def test_softmax_focal_gamma_0_is_cross_entropy(seg: Batch, alpha: torch.Tensor | None) -> None:
    logits, target = seg
    torch.testing.assert_close(
        focal_loss(logits, target, gamma=0.0, alpha=alpha, ignore_index=IGNORE),
        F.cross_entropy(logits, target, weight=alpha, ignore_index=IGNORE),
    )


def test_softmax_focal_gamma_0_soft_targets_is_cross_entropy(seg: Batch) -> None:
    logits, _ = seg
    soft = torch.softmax(torch.randn_like(logits), dim=1)
    torch.testing.assert_close(focal_loss(logits, soft, gamma=0.0), F.cross_entropy(logits, soft))


def test_softmax_focal_known_answer() -> None:
    # p_y = 0.8 and 0.5: (1 - p)^2·(-log p) for each, averaged
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.5, 0.5]], dtype=torch.float64))
    loss = focal_loss(logits, torch.tensor([0, 1]), gamma=2.0)
    expected = (0.04 * -torch.log(torch.tensor(0.8)) + 0.25 * -torch.log(torch.tensor(0.5))) / 2
    assert loss.item() == pytest.approx(expected.item())


def test_focal_quiets_easy_elements(cls: Batch) -> None:
    logits, target = cls
    per_ce = cross_entropy(logits, target, reduction="none")
    per_focal = focal_loss(logits, target, gamma=2.0, reduction="none")
    assert (per_focal <= per_ce).all()
    assert (per_focal < per_ce).any()


@pytest.mark.parametrize("as_indices", [True, False], ids=["indices", "one-hot"])
def test_sigmoid_focal_gamma_0_is_bce_with_logits(cls: Batch, as_indices: bool) -> None:
    logits, target = cls
    one_hot = F.one_hot(target, 4).double()
    ours = sigmoid_focal_loss(logits, target if as_indices else one_hot, gamma=0.0)
    torch.testing.assert_close(ours, F.binary_cross_entropy_with_logits(logits, one_hot))


@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, 0.25), (1.5, None), (0.0, 0.75)])
def test_sigmoid_focal_matches_torchvision(seg: Batch, gamma: float, alpha: float | None) -> None:
    logits, target = seg
    target = target.clamp_max(2)  # no ignore: torchvision knows none
    one_hot = F.one_hot(target, 3).movedim(-1, 1).double()
    theirs = tv_sigmoid_focal_loss(
        logits, one_hot, alpha=-1 if alpha is None else alpha, gamma=gamma, reduction="mean"
    )
    torch.testing.assert_close(sigmoid_focal_loss(logits, target, gamma=gamma, alpha=alpha), theirs)


def test_sigmoid_focal_ignores_like_bce(seg: Batch) -> None:
    logits, target = seg
    torch.testing.assert_close(
        sigmoid_focal_loss(logits, target, gamma=0.0, ignore_index=IGNORE),
        one_hot_bce(logits, target, ignore_index=IGNORE),
    )


def test_modules_match_functions(seg: Batch) -> None:
    logits, target = seg
    torch.testing.assert_close(
        FocalLoss(gamma=1.0, alpha=ALPHA, ignore_index=IGNORE)(logits, target),
        focal_loss(logits, target, gamma=1.0, alpha=ALPHA, ignore_index=IGNORE),
    )
    torch.testing.assert_close(
        SigmoidFocalLoss(alpha=0.25, ignore_index=IGNORE)(logits, target),
        sigmoid_focal_loss(logits, target, alpha=0.25, ignore_index=IGNORE),
    )


@pytest.mark.parametrize(
    ("fn", "kwargs", "match"),
    [
        (focal_loss, {"gamma": -1.0}, "gamma >= 0"),
        (sigmoid_focal_loss, {"alpha": 1.5}, r"alpha in \[0, 1\]"),
        (focal_loss, {"alpha": [1.0, 2.0]}, r"alpha of shape \(4,\)"),
    ],
    ids=["negative-gamma", "alpha-out-of-range", "alpha-wrong-length"],
)
def test_bad_options_are_refused(cls: Batch, fn, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fn(*cls, **kwargs)
