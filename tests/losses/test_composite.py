from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from datapipe.losses import (
    TERMS,
    build_loss,
    cross_entropy,
    dice_loss,
    focal_loss,
    ohem_pixel_mask,
    ohem_sample_mask,
    one_hot_bce,
    sigmoid_focal_loss,
)

from ._shared import IGNORE, Batch

CW = [0.5, 2.0, 1.0]

# What each named term is on its own, for a segmentation batch with class_weight CW.
STANDALONE: dict[str, Callable[..., torch.Tensor]] = {
    "loss_ce": lambda x, y, **kw: cross_entropy(
        x, y, class_weight=CW, ignore_index=IGNORE, label_smoothing=0.1, **kw
    ),
    "loss_focal": lambda x, y, **kw: focal_loss(
        x, y, gamma=1.5, alpha=CW, ignore_index=IGNORE, **kw
    ),
    "loss_dice": lambda x, y, **kw: dice_loss(x, y, class_weight=CW, ignore_index=IGNORE, **kw),
    "loss_bce": lambda x, y, **kw: one_hot_bce(x, y, class_weight=CW, ignore_index=IGNORE, **kw),
    "loss_sigmoid_focal": lambda x, y, **kw: sigmoid_focal_loss(
        x, y, gamma=1.5, class_weight=CW, ignore_index=IGNORE, **kw
    ),
}


def _seg_loss(terms: dict[str, float], **kwargs: object):
    options = {"label_smoothing": 0.1, "focal_gamma": 1.5, **kwargs}
    return build_loss(terms, dense=True, num_classes=3, class_weight=CW, **options)  # type: ignore[arg-type]


def test_every_term_has_a_standalone_oracle() -> None:
    assert set(STANDALONE) == set(TERMS)


@pytest.mark.parametrize("name", sorted(TERMS))
def test_each_term_equals_its_standalone_loss(seg: Batch, name: str) -> None:
    logits, target = seg
    total, parts = _seg_loss({name: 1.0})(logits, target)
    torch.testing.assert_close(total, STANDALONE[name](logits, target))
    torch.testing.assert_close(parts[name], total)


def test_dice_plus_ce_with_255_is_the_weighted_sum(seg: Batch) -> None:
    logits, target = seg
    assert (target == IGNORE).any()
    total, parts = _seg_loss({"loss_ce": 1.0, "loss_dice": 3.0})(logits, target)
    ce = STANDALONE["loss_ce"](logits, target)
    dice = STANDALONE["loss_dice"](logits, target)
    torch.testing.assert_close(total, ce + 3.0 * dice)
    torch.testing.assert_close(parts, {"loss_ce": ce, "loss_dice": dice})


def test_pixel_ohem_mask_applies_to_every_term(seg: Batch) -> None:
    logits, target = seg
    loss = _seg_loss({"loss_ce": 1.0, "loss_dice": 0.5}, ohem_thresh=0.4, ohem_min_kept=2)
    total, _ = loss(logits, target)
    mask = ohem_pixel_mask(logits, target, ignore_index=IGNORE, thresh=0.4, min_kept=2)
    assert 0 < mask.sum() < (target != IGNORE).sum()  # the mask does drop pixels here
    expected = STANDALONE["loss_ce"](logits, target, mask=mask) + 0.5 * STANDALONE["loss_dice"](
        logits, target, mask=mask
    )
    torch.testing.assert_close(total, expected)


def test_sample_ohem_keeps_the_hardest_samples(cls: Batch) -> None:
    logits, target = cls
    loss = build_loss(
        {"loss_ce": 1.0, "loss_bce": 1.0},
        dense=False,
        num_classes=4,
        ignore_index=None,
        ohem_keep_ratio=0.5,
    )
    total, _ = loss(logits, target)
    keep = ohem_sample_mask(cross_entropy(logits, target, reduction="none"), keep_ratio=0.5)
    assert keep.sum() == 3
    expected = cross_entropy(logits, target, mask=keep) + one_hot_bce(logits, target, mask=keep)
    torch.testing.assert_close(total, expected)


def test_soft_classification_targets_from_mixup(cls: Batch) -> None:
    logits, target = cls
    one_hot = torch.nn.functional.one_hot(target, 4).double()
    mixed = 0.7 * one_hot + 0.3 * one_hot.roll(1, dims=0)
    loss = build_loss(
        {"loss_ce": 1.0, "loss_focal": 2.0}, dense=False, num_classes=4, ignore_index=-1
    )
    total, _ = loss(logits, mixed)
    expected = cross_entropy(logits, mixed) + 2.0 * focal_loss(logits, mixed, gamma=2.0)
    torch.testing.assert_close(total, expected)


def test_sample_weight_reaches_every_term(seg: Batch) -> None:
    logits, target = seg
    loss = _seg_loss({"loss_ce": 1.0, "loss_dice": 1.0, "loss_bce": 1.0})
    total, _ = loss(logits, target, sample_weight=torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(total, loss(logits[1:], target[1:])[0])


def test_gradients_flow_and_logs_are_detached(seg: Batch) -> None:
    logits, target = seg
    logits = logits.clone().requires_grad_()
    loss = _seg_loss({"loss_ce": 1.0, "loss_focal": 1.0, "loss_dice": 3.0, "loss_bce": 0.5})
    total, parts = loss(logits, target, sample_weight=torch.tensor([1.0, 0.0]))
    total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad[0].abs().sum() > 0
    assert logits.grad[1].abs().sum() == 0  # a sample of weight 0 trains nothing
    ignored = (target[0] == IGNORE).expand(3, -1, -1)
    assert logits.grad[0][ignored].abs().sum() == 0  # nor does an ignored pixel
    assert not any(v.requires_grad for v in parts.values())


def test_unknown_term_names_itself_and_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"loss_bce.*loss_ce.*loss_dice.*loss_focal.*'loss_lovasz'"
    ):
        build_loss({"loss_ce": 1.0, "loss_lovasz": 1.0}, dense=True, num_classes=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dense": False, "terms": {"loss_dice": 1.0}}, "loss_dice only with"),
        ({"dense": False, "ohem_thresh": 0.7}, "ohem_keep_ratio"),
        ({"dense": True, "ohem_keep_ratio": 0.5}, "ohem_thresh / ohem_min_kept"),
        ({"dense": False, "num_classes": 300}, r"outside \[0, 300\)"),
        ({"dense": True, "terms": {"loss_ce": -1.0}}, "weight >= 0 for 'loss_ce'"),
        ({"dense": True, "terms": {}}, "at least one loss term"),
        ({"dense": True, "class_weight": [1.0, 2.0]}, r"class_weight of shape \(3,\)"),
        ({"dense": True, "ohem_min_kept": 0}, "min_kept > 0"),
    ],
    ids=[
        "dice-classification",
        "pixel-ohem-classification",
        "sample-ohem-segmentation",
        "ignore-index-is-a-class",
        "negative-weight",
        "no-terms",
        "class-weight-length",
        "ohem-nothing-kept",
    ],
)
def test_bad_options_are_refused(kwargs: dict, match: str) -> None:
    options = {"terms": {"loss_ce": 1.0}, "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_loss(options.pop("terms"), **options)


@pytest.mark.parametrize(
    ("logits", "target", "match"),
    [
        (torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), r"logits \(N, K\) with K=3"),
        (torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), r"logits \(N, K\) with K=3"),
        (torch.zeros(2, 3), torch.zeros(3, dtype=torch.long), r"int target \(2,\)"),
        (torch.zeros(2, 3), torch.tensor([0, 7]), r"values in \[0, 3\) or 255, got 7"),
    ],
    ids=["segmentation-logits", "wrong-k", "wrong-batch", "out-of-range-class"],
)
def test_bad_batches_are_refused(logits, target, match: str) -> None:
    loss = build_loss({"loss_ce": 1.0}, dense=False, num_classes=3)
    with pytest.raises(ValueError, match=match):
        loss(logits, target)


@pytest.mark.gpu
def test_composite_on_cuda_matches_cpu(seg: Batch) -> None:
    logits, target = seg
    loss = _seg_loss({"loss_ce": 1.0, "loss_dice": 1.0}, ohem_thresh=0.5, ohem_min_kept=2)
    weight = torch.tensor([1.0, 2.0])
    cpu_total, _ = loss(logits, target, sample_weight=weight)
    gpu_total, _ = loss.cuda()(logits.cuda(), target.cuda(), sample_weight=weight.cuda())
    torch.testing.assert_close(gpu_total.cpu(), cpu_total)
