from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from datapipe.losses import PixelOhem, SampleOhem, ohem_pixel_mask, ohem_sample_mask

from ._shared import IGNORE, Batch

# One image of 6 pixels, 2 classes; the true class has these probabilities:
PROB = torch.tensor([0.9, 0.2, 0.6, 0.05, 0.4, 0.3])


def _image(prob: torch.Tensor, target: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.tensor([target])
    p_true = prob[None]
    p0 = torch.where(t == 0, p_true, 1 - p_true)
    return torch.log(torch.stack([p0, 1 - p0], dim=1)), t  # (1, 2, 6), (1, 6)


TARGET = [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize(
    ("thresh", "min_kept", "expected"),
    [
        (0.5, 0, [0, 1, 0, 1, 1, 1]),  # p < 0.5
        (0.5, 2, [0, 1, 0, 1, 1, 1]),  # 4 below thresh >= min_kept
        (0.25, 3, [0, 1, 0, 1, 0, 1]),  # only 1 below: threshold rises to the 3 least probable
        (None, 2, [0, 1, 0, 1, 0, 0]),  # the 2 highest losses: p = 0.05 and 0.2
        (None, 100, [1, 1, 1, 1, 1, 1]),  # more than the image has: all
    ],
    ids=["thresh", "thresh-enough", "min-kept-raises-thresh", "top-min-kept", "min-kept-over"],
)
def test_pixel_mask_known_answers(thresh: float | None, min_kept: int, expected: list[int]) -> None:
    logits, target = _image(PROB, TARGET)
    mask = ohem_pixel_mask(logits, target, thresh=thresh, min_kept=min_kept)
    assert mask.dtype == torch.bool
    assert mask[0].int().tolist() == expected


@pytest.mark.parametrize(("thresh", "min_kept"), [(0.5, 0), (0.25, 3), (None, 6)])
def test_ignored_pixels_are_never_kept(thresh: float | None, min_kept: int) -> None:
    target = [0, IGNORE, 0, IGNORE, 0, 1]  # the hardest two pixels are ignored
    logits, t = _image(PROB, [0, 1, 0, 1, 0, 1])
    t = t.masked_fill(torch.tensor([target]) == IGNORE, IGNORE)
    mask = ohem_pixel_mask(logits, t, thresh=thresh, min_kept=min_kept)
    assert not mask[0, [1, 3]].any()
    assert mask[0, [4, 5]].all()  # p = 0.4 and 0.3: below 0.5, or among the 3 least probable


def test_min_kept_is_per_image() -> None:
    easy, t1 = _image(torch.tensor([0.9, 0.95, 0.99, 0.97, 0.98, 0.96]), TARGET)
    hard, t2 = _image(PROB, TARGET)
    mask = ohem_pixel_mask(torch.cat([easy, hard]), torch.cat([t1, t2]), min_kept=2)
    # each image keeps its own 2 hardest, not 4 from the hard image
    assert mask.int().tolist() == [[1, 1, 0, 0, 0, 0], [0, 1, 0, 1, 0, 0]]


def test_pixel_mask_has_no_gradient_and_image_shape(seg: Batch) -> None:
    logits, target = seg
    logits = logits.clone().requires_grad_()
    mask = ohem_pixel_mask(logits, target, thresh=0.7, min_kept=3)
    assert mask.shape == target.shape and not mask.requires_grad
    assert (mask.flatten(1).sum(1) >= 3).all()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"top_k": 2}, [0, 1, 0, 1, 0]),
        ({"keep_ratio": 0.5}, [0, 1, 1, 1, 0]),  # ceil(0.5·5) = 3
        ({"keep_ratio": 1.0}, [1, 1, 1, 1, 1]),
        ({"top_k": 2, "valid": torch.tensor([1, 0, 1, 1, 1]).bool()}, [0, 0, 1, 1, 0]),
    ],
    ids=["top-k", "keep-ratio", "keep-all", "invalid-never-kept"],
)
def test_sample_mask_known_answers(kwargs: dict, expected: list[int]) -> None:
    loss = torch.tensor([0.1, 3.0, 1.0, 2.0, 0.5])
    assert ohem_sample_mask(loss, **kwargs).int().tolist() == expected


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: PixelOhem(), "min_kept > 0"),
        (lambda: PixelOhem(thresh=1.5), r"thresh in \(0, 1\]"),
        (lambda: SampleOhem(), "exactly one of keep_ratio, top_k"),
        (lambda: SampleOhem(keep_ratio=0.0), r"keep_ratio in \(0, 1\]"),
        (lambda: SampleOhem(top_k=0), "top_k >= 1"),
    ],
    ids=["pixel-nothing", "pixel-thresh", "sample-nothing", "sample-ratio-0", "sample-top-0"],
)
def test_bad_configs_are_refused(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    pixels=st.integers(1, 12),
    thresh=st.sampled_from([None, 0.3, 0.7]),
    min_kept=st.integers(0, 14),
)
def test_pixel_mask_invariants(seed: int, pixels: int, thresh: float | None, min_kept: int) -> None:
    if thresh is None and min_kept == 0:
        min_kept = 1
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 4, pixels, generator=gen) * 3
    target = torch.randint(0, 5, (3, pixels), generator=gen)
    target[target == 4] = IGNORE
    mask = ohem_pixel_mask(logits, target, thresh=thresh, min_kept=min_kept)
    valid = target != IGNORE
    assert not (mask & ~valid).any()  # ignored pixels are never kept
    kept_per_image = mask.sum(1)
    assert (kept_per_image >= valid.sum(1).clamp_max(min_kept)).all()
    prob = logits.softmax(1).gather(1, target.where(valid, 0)[:, None])[:, 0]
    for i in range(3):  # every dropped valid pixel is easier than every kept one
        dropped = valid[i] & ~mask[i]
        if dropped.any() and mask[i].any():
            assert prob[i][dropped].min() >= prob[i][mask[i]].max()
        if thresh is not None:
            assert (prob[i][dropped] >= thresh).all()
