from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from datapipe.losses import CrossEntropyLoss, cross_entropy

from ._shared import IGNORE, Batch

W = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"weight": W},
        {"label_smoothing": 0.1},
        {"weight": W, "label_smoothing": 0.2},
    ],
    ids=["plain", "class-weight", "smoothing", "class-weight-smoothing"],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hard_targets_with_ignore_match_torch(seg: Batch, kwargs: dict, reduction: str) -> None:
    logits, target = seg
    ours = cross_entropy(
        logits,
        target,
        class_weight=kwargs.get("weight"),
        label_smoothing=kwargs.get("label_smoothing", 0.0),
        ignore_index=IGNORE,
        reduction=reduction,  # type: ignore[arg-type]
    )
    torch.testing.assert_close(
        ours, F.cross_entropy(logits, target, ignore_index=IGNORE, reduction=reduction, **kwargs)
    )


def test_classification_without_ignore_matches_torch(cls: Batch) -> None:
    logits, target = cls
    cw = torch.tensor([1.0, 0.2, 3.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(
        cross_entropy(logits, target, class_weight=cw), F.cross_entropy(logits, target, weight=cw)
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "class-weight"])
def test_soft_targets_match_torch_probability_targets(
    seg: Batch, smoothing: float, weighted: bool
) -> None:
    logits, _ = seg
    soft = torch.softmax(torch.randn_like(logits) * 3, dim=1)  # e.g. a mixup of two masks
    weight = W if weighted else None
    ours = cross_entropy(logits, soft, class_weight=weight, label_smoothing=smoothing)
    theirs = F.cross_entropy(logits, soft, weight=weight, label_smoothing=smoothing)
    torch.testing.assert_close(ours, theirs)


def test_one_hot_soft_target_equals_hard_target(cls: Batch) -> None:
    logits, target = cls
    soft = F.one_hot(target, 4).double()
    torch.testing.assert_close(cross_entropy(logits, soft), cross_entropy(logits, target))


# Uniform logits over 2 classes: every element costs log 2. Two of four elements ignored.
UNIFORM = torch.zeros(4, 2)
HALF_IGNORED = torch.tensor([0, IGNORE, 1, IGNORE])


@pytest.mark.parametrize(
    ("avg_non_ignore", "class_weight", "expected"),
    [
        (True, None, math.log(2)),  # sum 2·log2 over the 2 kept elements
        (False, None, math.log(2) / 2),  # ... over all 4 (MMSegmentation's old mean)
        (True, [1.0, 3.0], math.log(2)),  # (1 + 3)·log2 / (1 + 3)
        (False, [1.0, 3.0], math.log(2)),  # (1 + 3)·log2 / 4 elements
    ],
    ids=["non-ignore", "all-elements", "non-ignore-weighted", "all-elements-weighted"],
)
def test_avg_non_ignore_known_values(
    avg_non_ignore: bool, class_weight: list[float] | None, expected: float
) -> None:
    loss = cross_entropy(
        UNIFORM,
        HALF_IGNORED,
        ignore_index=IGNORE,
        avg_non_ignore=avg_non_ignore,
        class_weight=class_weight,
    )
    assert loss.item() == pytest.approx(expected)


def test_avg_non_ignore_false_is_the_mean_over_all_elements(seg: Batch) -> None:
    logits, target = seg
    per_element = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    ours = cross_entropy(logits, target, ignore_index=IGNORE, avg_non_ignore=False)
    torch.testing.assert_close(ours, per_element.mean())


def test_all_ignored_gives_zero_not_nan() -> None:
    target = torch.full((3,), IGNORE)
    assert cross_entropy(torch.randn(3, 4), target, ignore_index=IGNORE).item() == 0.0


def test_mask_equals_ignoring_the_masked_elements(seg: Batch) -> None:
    logits, target = seg
    mask = torch.rand(target.shape, generator=torch.Generator().manual_seed(3)) > 0.5
    ignored = target.where(mask, IGNORE)
    torch.testing.assert_close(
        cross_entropy(logits, target, ignore_index=IGNORE, mask=mask, class_weight=W),
        F.cross_entropy(logits, ignored, ignore_index=IGNORE, weight=W),
    )


def test_module_matches_function_and_moves_its_weights(seg: Batch) -> None:
    logits, target = seg
    module = CrossEntropyLoss(class_weight=[0.5, 2.0, 1.0], ignore_index=IGNORE)
    assert "class_weight" not in module.state_dict()  # not a checkpoint entry
    torch.testing.assert_close(
        module(logits, target), F.cross_entropy(logits, target, weight=W, ignore_index=IGNORE)
    )


def test_half_precision_logits_give_a_float32_loss() -> None:
    logits = torch.randn(4, 3).to(torch.bfloat16)
    loss = cross_entropy(logits, torch.tensor([0, 1, 2, 0]))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.float(), torch.tensor([0, 1, 2, 0])))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 4),
    k=st.integers(2, 5),
    pixels=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([0.1, 1.0, 30.0]),
    smoothing=st.sampled_from([0.0, 0.1]),
    avg_non_ignore=st.booleans(),
)
def test_loss_is_finite_and_non_negative(
    n: int, k: int, pixels: int, seed: int, scale: float, smoothing: float, avg_non_ignore: bool
) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, pixels, generator=gen) * scale
    target = torch.randint(0, k + 1, (n, pixels), generator=gen)
    target[target == k] = IGNORE  # about 1 in k+1 elements ignored, sometimes all
    weight = torch.rand(k, generator=gen) + 0.01
    loss = cross_entropy(
        logits,
        target,
        class_weight=weight,
        ignore_index=IGNORE,
        label_smoothing=smoothing,
        avg_non_ignore=avg_non_ignore,
    )
    assert torch.isfinite(loss)
    assert loss.item() >= 0.0
