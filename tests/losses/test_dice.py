from __future__ import annotations

import pytest
import torch

from datapipe.losses import DiceLoss, dice_loss

from ._shared import IGNORE, Batch


def test_known_answer_uniform_prediction() -> None:
    # p = 0.5 everywhere on 4 pixels, target [0, 0, 0, 1], smooth 1:
    # class 0: (2·1.5 + 1) / (2 + 3 + 1) = 2/3; class 1: (2·0.5 + 1) / (2 + 1 + 1) = 1/2
    logits = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[0, 0], [0, 1]]])
    assert dice_loss(logits, target).item() == pytest.approx(1 - (2 / 3 + 1 / 2) / 2)


def test_class_weight_weighs_the_class_mean() -> None:
    logits = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[0, 0], [0, 1]]])
    loss = dice_loss(logits, target, class_weight=[3.0, 1.0])
    assert loss.item() == pytest.approx(1 - (3 * 2 / 3 + 1 / 2) / 4)


def test_perfect_prediction_is_near_zero(seg: Batch) -> None:
    _, target = seg
    target = target.clamp_max(2)
    logits = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).double() * 50.0
    assert dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-12)


def test_target_with_255_does_not_crash_and_ignored_predictions_do_not_matter(seg: Batch) -> None:
    logits, target = seg
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    other = logits.masked_fill(ignored, 1e4)  # anything at the ignored pixels
    base = dice_loss(logits, target, ignore_index=IGNORE)
    assert torch.isfinite(base)
    torch.testing.assert_close(dice_loss(other, target, ignore_index=IGNORE), base)


def test_ignore_equals_dropping_the_pixels() -> None:
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 3, 8, generator=gen, dtype=torch.float64)  # one spatial dim
    target = torch.tensor([[0, 1, IGNORE, 2, 2, IGNORE, 1, 0]])
    keep = target[0] != IGNORE
    torch.testing.assert_close(
        dice_loss(logits, target, ignore_index=IGNORE),
        dice_loss(logits[:, :, keep], target[:, keep]),
    )


def test_image_without_kept_pixels_counts_for_nothing(seg: Batch) -> None:
    logits, target = seg
    all_ignored = torch.cat([target, torch.full_like(target[:1], IGNORE)])
    more = torch.cat([logits, logits[:1]])
    torch.testing.assert_close(
        dice_loss(more, all_ignored, ignore_index=IGNORE),
        dice_loss(logits, target, ignore_index=IGNORE),
    )


def test_reduction_none_is_per_image(seg: Batch) -> None:
    logits, target = seg
    per_image = dice_loss(logits, target, ignore_index=IGNORE, reduction="none")
    assert per_image.shape == (2,)
    torch.testing.assert_close(per_image[1], dice_loss(logits[1:], target[1:], ignore_index=IGNORE))


def test_module_matches_function(seg: Batch) -> None:
    logits, target = seg
    torch.testing.assert_close(
        DiceLoss(ignore_index=IGNORE, smooth=0.5)(logits, target),
        dice_loss(logits, target, ignore_index=IGNORE, smooth=0.5),
    )


@pytest.mark.parametrize(
    ("logits", "target", "kwargs", "match"),
    [
        (torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), {}, "class-index target"),
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), {}, r"\(N, K, H, W\)"),
        (torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), {"smooth": 0}, "smooth"),
        (torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 255), {}, r"\[0, 3\), got 255"),
    ],
    ids=["soft-target", "classification-shape", "zero-smooth", "255-without-ignore-index"],
)
def test_bad_input_is_refused(logits, target, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dice_loss(logits, target, **kwargs)
