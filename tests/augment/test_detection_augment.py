"""Boxes and instance masks through the params pipeline, and detection mixup: known answers
for flips, crops, clipping and blending; refusals named by position; torchvision's detectors
ignoring the mixup ``weights`` key (an oracle: equal losses)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from datapipe.augment import build_pipeline
from datapipe.augment.detection import (
    augment_objects,
    build_box_pipeline,
    check_box_pipeline,
    draw_box_mix,
    mix_detection,
)
from datapipe.errors import ConfigError
from datapipe.io import to_unit_float
from tests.augment.test_pipeline import GEOMETRIC

H, W = 64, 100


def _image(h: int = H, w: int = W, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c), dtype=np.float32)


def _box_masks(boxes: np.ndarray, h: int = H, w: int = W) -> np.ndarray:
    masks = np.zeros((len(boxes), h, w), bool)
    for m, (x0, y0, x1, y1) in zip(masks, boxes.astype(int), strict=True):
        m[y0:y1, x0:x1] = True
    return masks


def _tight_box(mask: np.ndarray) -> list[int]:
    yy, xx = np.nonzero(mask)
    return [int(xx.min()), int(yy.min()), int(xx.max()) + 1, int(yy.max()) + 1]


FLIP = build_box_pipeline([{"HorizontalFlip": {"p": 1.0}}])


# --------------------------------------------------------------------------------------------
# boxes follow the geometry


def test_horizontal_flip_maps_x0_x1_to_w_minus_x1_w_minus_x0_exactly() -> None:
    boxes = np.array(
        [[10.25, 5.5, 30.75, 20.0], [0.0, 0.0, 100.0, 64.0], [61.5, 40.25, 99.0, 63.75]], np.float32
    )
    out = augment_objects(FLIP, _image(), boxes, np.array([3, 1, 2]))
    expected = np.stack([W - boxes[:, 2], boxes[:, 1], W - boxes[:, 0], boxes[:, 3]], axis=1)
    np.testing.assert_array_equal(out.boxes, expected)
    np.testing.assert_array_equal(out.labels, [3, 1, 2])
    np.testing.assert_array_equal(out.kept_index, [0, 1, 2])
    assert out.boxes.dtype == np.float32 and out.labels.dtype == np.int64


def test_flipped_arbitrary_float32_boxes_get_the_float32_answer() -> None:
    """Normalised in float64 (albumentations' own pascal_voc path uses float32, which misses
    about a third of coordinates): exact but for rounding ties, never a pixel-convention slip."""
    rng = np.random.default_rng(1)
    x0 = rng.uniform(0, W / 2, 500).astype(np.float32)
    x1 = x0 + rng.uniform(1, W / 2, 500).astype(np.float32)
    boxes = np.stack([x0, np.full(500, 2, np.float32), x1, np.full(500, 9, np.float32)], axis=1)
    out = augment_objects(FLIP, _image(), boxes, np.zeros(500, np.int64))
    error = np.abs(out.boxes[:, [0, 2]] - (W - boxes[:, [2, 0]]))
    assert np.mean(error == 0) >= 0.99
    assert error.max() <= np.spacing(np.float32(W))


CROP = [{"Crop": {"x_min": 0, "y_min": 0, "x_max": 50, "y_max": 64, "p": 1.0}}]
#: inside; 10 of 40 px wide left (0.25 < 0.3); 20 of 30 left (0.67)
CROP_BOXES = np.array([[10, 10, 30, 30], [40, 10, 80, 30], [30, 40, 60, 60]], np.float32)


def test_crop_drops_box_below_min_visibility_and_kept_index_names_survivors() -> None:
    out = augment_objects(
        build_box_pipeline(CROP, min_visibility=0.3), _image(), CROP_BOXES, np.array([7, 8, 9])
    )
    np.testing.assert_array_equal(out.kept_index, [0, 2])
    np.testing.assert_array_equal(out.labels, [7, 9])
    assert out.image.shape == (64, 50, 3)


def test_crop_keeps_the_same_box_when_min_visibility_allows_it() -> None:
    out = augment_objects(
        build_box_pipeline(CROP, min_visibility=0.2), _image(), CROP_BOXES, np.array([7, 8, 9])
    )
    np.testing.assert_array_equal(out.kept_index, [0, 1, 2])


def test_partly_cut_box_is_clipped_to_the_crop() -> None:
    out = augment_objects(build_box_pipeline(CROP), _image(), CROP_BOXES, np.array([7, 8, 9]))
    np.testing.assert_allclose(out.boxes, [[10, 10, 30, 30], [30, 40, 50, 60]], atol=1e-4)


def test_zero_area_boxes_never_come_out_even_with_no_thresholds() -> None:
    """A cut on a box's edge leaves albumentations a box ~1e-7 px wide; a box wholly cut off
    is gone; neither comes out."""
    crop = [{"Crop": {"x_min": 10, "y_min": 0, "x_max": 40, "y_max": 64, "p": 1.0}}]
    boxes = np.array([[0, 0, 10, 10], [60, 10, 90, 30], [5, 10, 30, 30]], np.float32)
    pipeline = build_box_pipeline(crop, min_visibility=0.0, min_area=0.0)
    out = augment_objects(pipeline, _image(), boxes, np.arange(3))
    np.testing.assert_array_equal(out.kept_index, [2])
    np.testing.assert_allclose(out.boxes, [[0, 10, 20, 30]], atol=1e-4)


def test_input_boxes_outside_or_degenerate_are_dropped_not_raised() -> None:
    """albumentations 2.0 raises on a box wholly outside the image even with clip=True."""
    boxes = np.array(
        [[110, 10, 120, 20], [10, 10, 20, 20], [5, 5, 5, 9], [-10, -5, 20, 30]], np.float32
    )
    out = augment_objects(build_box_pipeline([]), _image(), boxes, np.arange(4))
    np.testing.assert_array_equal(out.kept_index, [1, 3])
    np.testing.assert_array_equal(out.boxes, [[10, 10, 20, 20], [0, 0, 20, 30]])


def test_no_objects_gives_empty_arrays_of_the_right_shape() -> None:
    out = augment_objects(
        build_box_pipeline(CROP, masks=True),
        _image(),
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.int64),
        np.zeros((0, H, W), bool),
    )
    assert out.boxes.shape == (0, 4) and out.labels.shape == (0,) and out.kept_index.shape == (0,)
    assert out.masks is not None and out.masks.shape == (0, 64, 50)


def test_same_seed_gives_the_same_augmentation() -> None:
    pipeline = build_box_pipeline(
        [{"Affine": {"rotate": [-30, 30], "scale": [0.8, 1.2], "p": 1.0}}]
    )
    runs = [
        augment_objects(pipeline, _image(), CROP_BOXES, np.arange(3), seed=s) for s in (5, 5, 6)
    ]
    np.testing.assert_array_equal(runs[0].boxes, runs[1].boxes)
    assert not np.array_equal(runs[0].boxes, runs[2].boxes)


def test_uint16_images_keep_full_precision() -> None:
    raw = np.random.default_rng(2).integers(0, 2**16, (H, W, 1), dtype=np.uint16)
    image = to_unit_float(raw)
    assert image.dtype == np.float32
    assert np.mean(np.abs(image * 255 - np.rint(image * 255)) > 1e-3) > 0.9  # not 8-bit values
    pipeline = build_box_pipeline([{"HorizontalFlip": {"p": 1.0}}, {"Transpose": {"p": 1.0}}])
    out = augment_objects(pipeline, image, CROP_BOXES, np.arange(3))
    np.testing.assert_array_equal(out.image, image[:, ::-1].transpose(1, 0, 2))
    assert out.image.dtype == np.float32


# --------------------------------------------------------------------------------------------
# instance masks


def test_mask_follows_a_flip_exactly_and_agrees_with_its_box() -> None:
    yy, xx = np.indices((H, W))
    disk = (xx - 30) ** 2 + (yy - 25) ** 2 < 12**2  # tight box [19, 14, 42, 37]
    masks = np.stack([disk, _box_masks(np.array([[70, 40, 95, 60]]))[0]])
    boxes = np.array([_tight_box(m) for m in masks], np.float32)
    out = augment_objects(
        build_box_pipeline([{"HorizontalFlip": {"p": 1.0}}], masks=True),
        _image(),
        boxes,
        np.array([0, 1]),
        masks,
    )
    assert out.masks is not None and out.masks.dtype == np.bool_
    np.testing.assert_array_equal(out.masks, masks[:, :, ::-1])
    assert [_tight_box(m) for m in out.masks] == out.boxes.astype(int).tolist()
    assert out.boxes.tolist() == [[58, 14, 81, 37], [5, 40, 30, 60]]


def test_masks_of_dropped_boxes_are_dropped_with_them() -> None:
    out = augment_objects(
        build_box_pipeline(CROP, masks=True),
        _image(),
        CROP_BOXES,
        np.arange(3),
        _box_masks(CROP_BOXES),
    )
    assert out.masks is not None
    assert [_tight_box(m) for m in out.masks] == [[10, 10, 30, 30], [30, 40, 50, 60]]


def test_created_border_in_instance_masks_is_background() -> None:
    pad = [{"PadIfNeeded": {"min_height": 96, "min_width": 120, "p": 1.0}}]
    masks = np.ones((1, H, W), bool)  # an object filling the image: every new pixel is border
    out = augment_objects(
        build_box_pipeline(pad, masks=True),
        _image(),
        np.array([[0, 0, W, H]], np.float32),
        np.array([0]),
        masks,
    )
    assert out.masks is not None and out.masks.shape == (1, 96, 120)
    assert int(out.masks.sum()) == H * W  # 0 (background) in the padding, not ignore_index
    assert _tight_box(out.masks[0]) == out.boxes.astype(int).tolist()[0] == [10, 16, 110, 80]


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_masks_stay_inside_their_boxes_through_geometry(name: str, seed: int) -> None:
    boxes = np.array([[4, 6, 20, 30], [30, 10, 92, 24], [10, 40, 60, 60], [0, 0, W, H]], np.float32)
    pipeline = build_box_pipeline([{name: GEOMETRIC[name]}], masks=True, min_visibility=0.0)
    out = augment_objects(pipeline, _image(c=1), boxes, np.arange(4), _box_masks(boxes), seed=seed)
    h, w = out.image.shape[:2]
    assert out.masks is not None and out.masks.shape == (len(out.boxes), h, w)
    assert np.all(np.diff(out.kept_index) > 0) and set(out.kept_index) <= {0, 1, 2, 3}
    for (x0, y0, x1, y1), mask in zip(out.boxes, out.masks, strict=True):
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        yy, xx = np.nonzero(mask)
        inside = (xx >= x0 - 1) & (xx < x1 + 1) & (yy >= y0 - 1) & (yy < y1 + 1)
        assert inside.all()  # within the 1 px of nearest-neighbour rounding


# --------------------------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ([{"HorizontalFlip": {}}, {"OverlayElements": {}}], r"augment\[1\]\.OverlayElements"),
        (
            [{"OneOf": {"transforms": [{"Blur": {}}, {"OverlayElements": {}}]}}],
            r"augment\[0\]\.OneOf\.transforms\[1\]\.OverlayElements",
        ),
    ],
    ids=["top-level", "nested"],
)
def test_transform_that_cannot_carry_boxes_is_refused_with_its_name(
    spec: list[dict[str, Any]], where: str
) -> None:
    with pytest.raises(ConfigError, match=rf"{where}: cannot transform bboxes"):
        build_box_pipeline(spec)


def test_strict_validation_is_the_params_pipelines() -> None:
    with pytest.raises(ConfigError, match=r"augment\[0\]\.HorizontalFlip: .*flip_prob"):
        build_box_pipeline([{"HorizontalFlip": {"flip_prob": 0.5}}])


def test_nonzero_mask_fill_is_refused_for_instance_masks_only() -> None:
    spec = [{"PadIfNeeded": {"min_height": 80, "min_width": 80, "fill_mask": 255}}]
    build_box_pipeline(spec)  # boxes only: the mask fill is irrelevant
    with pytest.raises(ConfigError, match=r"augment\[0\]\.PadIfNeeded: fill_mask must be 0"):
        build_box_pipeline(spec, masks=True)
    with pytest.raises(ValueError, match="expected fill_mask 0 for instance masks"):
        augment_objects(
            build_box_pipeline(spec), _image(), CROP_BOXES, np.arange(3), _box_masks(CROP_BOXES)
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"boxes": np.array([[30, 10, 20, 20]], np.float32)}, r"x0 <= x1 .* row 0"),
        ({"image": np.zeros((H, W, 1), np.uint16)}, "float32"),
        ({"labels": np.array([0.0])}, r"labels \(1,\) integer"),
        ({"masks": np.zeros((1, H, W), np.uint8)}, r"masks \(1, 64, 100\) bool"),
        ({"pipeline": build_pipeline([], ignore_index=255)}, "build_box_pipeline"),
    ],
    ids=["reversed-box", "uint16-image", "float-labels", "uint8-masks", "not-a-box-pipeline"],
)
def test_bad_inputs_are_refused_with_what_was_expected(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "pipeline": FLIP,
        "image": _image(),
        "labels": np.array([0]),
        "boxes": np.array([[1, 2, 3, 4]], np.float32),
    } | kwargs
    with pytest.raises(ValueError, match=match):
        augment_objects(**args)


def test_min_visibility_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="0 <= min_visibility <= 1"):
        build_box_pipeline([], min_visibility=1.5)


def test_check_box_pipeline_names_a_transform_that_fails_on_the_channels() -> None:
    spec = [{"HorizontalFlip": {}}, {"ColorJitter": {}}]
    check_box_pipeline(spec, channels=3, masks=True)  # raises on failure
    with pytest.raises(ConfigError, match=r"augment\[1\]\.ColorJitter: cannot run on 5-ch"):
        check_box_pipeline(spec, channels=5)


# --------------------------------------------------------------------------------------------
# detection mixup


def _target(boxes: list[list[float]], labels: list[int], h: int, w: int) -> dict[str, torch.Tensor]:
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    masks = torch.from_numpy(_box_masks(b.numpy(), h, w))
    return {"boxes": b, "labels": torch.tensor(labels, dtype=torch.int64), "masks": masks}


def test_mixup_blends_pixels_exactly_and_concatenates_weighted_boxes() -> None:
    a = torch.full((2, 4, 6), 0.5)  # (C, H, W): 4 high, 6 wide
    b = torch.full((2, 6, 4), 0.25)  # 6 high, 4 wide
    targets = [
        _target([[1, 1, 3, 3]], [1], 4, 6),
        _target([[0, 2, 4, 6], [1, 1, 2, 2]], [2, 3], 6, 4),
    ]
    images, out = mix_detection([a, b], targets, ((1, 0), np.array([0.25, 0.75])))
    first = images[0]
    assert first.shape == (2, 6, 6)
    expected = torch.zeros(2, 6, 6)
    expected[:, :4, :6] += 0.25 * 0.5
    expected[:, :6, :4] += 0.75 * 0.25
    torch.testing.assert_close(first, expected, rtol=0, atol=0)
    assert float(first[0, 0, 0]) == 0.3125 and float(first[0, 5, 5]) == 0.0
    assert out[0]["boxes"].tolist() == [[1, 1, 3, 3], [0, 2, 4, 6], [1, 1, 2, 2]]  # unchanged
    assert out[0]["labels"].tolist() == [1, 2, 3]
    assert out[0]["weights"].tolist() == [0.25, 0.75, 0.75]
    assert out[0]["weights"].dtype == torch.float32
    assert out[1]["labels"].tolist() == [2, 3, 1]
    assert out[1]["weights"].tolist() == [0.75, 0.75, 0.25]
    masks = out[0]["masks"]
    assert masks.shape == (3, 6, 6) and masks.dtype == torch.bool
    assert [_tight_box(m.numpy()) for m in masks] == out[0]["boxes"].int().tolist()


def test_mixup_multiplies_existing_box_weights_by_the_share() -> None:
    t = [
        {
            "boxes": torch.tensor([[0.0, 0, 2, 2]]),
            "labels": torch.tensor([1]),
            "weights": torch.tensor([0.5]),
        }
        for _ in range(2)
    ]
    _, out = mix_detection([torch.zeros(1, 4, 4)] * 2, t, ((1, 0), np.array([0.25, 0.5])))
    assert out[0]["weights"].tolist() == [0.125, 0.375]


def test_alpha_zero_is_the_identity() -> None:
    rng = np.random.default_rng(3)
    draw = draw_box_mix(3, alpha=0.0, rng=rng)
    assert draw[0] == (0, 1, 2) and draw[1].tolist() == [1.0, 1.0, 1.0]
    assert rng.random() == np.random.default_rng(3).random()  # nothing drawn
    images = [torch.rand(3, 5, 7), torch.rand(3, 8, 4), torch.rand(3, 5, 5)]
    targets = [
        _target([[0, 0, 2, 2]], [1], 5, 7),
        _target([], [], 8, 4),
        _target([[1, 1, 4, 4]], [2], 5, 5),
    ]
    out_images, out = mix_detection(images, targets, draw)
    for x, y, t, o in zip(images, out_images, targets, out, strict=True):
        assert torch.equal(x, y)
        assert torch.equal(t["boxes"], o["boxes"]) and torch.equal(t["masks"], o["masks"])
        assert o["weights"].tolist() == [1.0] * len(t["boxes"])


def test_same_seed_gives_the_same_draw() -> None:
    first = draw_box_mix(6, alpha=1.5, rng=np.random.default_rng(7))
    again = draw_box_mix(6, alpha=1.5, rng=np.random.default_rng(7))
    other = draw_box_mix(6, alpha=1.5, rng=np.random.default_rng(8))
    assert first[0] == again[0] and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])
    assert all(p != i for i, p in enumerate(first[0]))  # nobody mixed with itself


def test_lam_is_beta_alpha_alpha() -> None:
    _, lam = draw_box_mix(20_000, alpha=1.5, rng=np.random.default_rng(0))
    assert lam.min() >= 0 and lam.max() <= 1
    assert abs(lam.mean() - 0.5) < 0.01
    assert abs(lam.var() - 1 / (4 * (2 * 1.5 + 1))) < 0.003  # Beta(a, a): 1 / (4 (2a + 1))


def test_mixup_refuses_unknown_target_keys() -> None:
    t = [
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "image_id": torch.tensor(1),
        }
    ] * 2
    with pytest.raises(ValueError, match="image_id"):
        mix_detection([torch.zeros(1, 4, 4)] * 2, t, ((1, 0), np.array([0.5, 0.5])))


def _tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Conv2d(3, 32, 3, stride=4, padding=1), nn.ReLU())
    backbone.out_channels = 32  # type: ignore[assignment]
    return backbone


def _detector(name: str) -> nn.Module:
    from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    def anchors() -> AnchorGenerator:
        return AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),))

    size: dict[str, Any] = {"min_size": 64, "max_size": 64, "num_classes": 3}
    rois = {"rpn_anchor_generator": anchors(), "box_roi_pool": MultiScaleRoIAlign(["0"], 7, 2)}
    match name:
        case "fasterrcnn":
            return FasterRCNN(_tiny_backbone(), **rois, **size)
        case "maskrcnn":
            return MaskRCNN(
                _tiny_backbone(), **rois, mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2), **size
            )
        case "retinanet":
            return RetinaNet(_tiny_backbone(), anchor_generator=anchors(), **size)
        case _:
            return FCOS(
                _tiny_backbone(), anchor_generator=AnchorGenerator(((8,),), ((1.0,),)), **size
            )


@pytest.mark.parametrize("name", ["fasterrcnn", "maskrcnn", "retinanet", "fcos"])
def test_torchvision_detectors_ignore_the_weights_key(name: str) -> None:
    """An oracle for the docstring's claim: the losses do not change with ``weights``."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _detector(name).train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    boxes = [[5, 5, 30, 30], [20, 30, 50, 60]]
    keep = {"boxes", "labels"} | ({"masks"} if name == "maskrcnn" else set())
    plain = [{k: v for k, v in _target(boxes, [1, 2], 64, 64).items() if k in keep}] * 2
    weighted = [t | {"weights": torch.tensor([0.0, 0.25])} for t in plain]
    losses = []
    for targets in (plain, weighted):
        with torch.random.fork_rng():  # the samplers draw: same draws for both
            torch.manual_seed(1)
            losses.append({k: float(v.detach()) for k, v in model(images, targets).items()})
    assert losses[0] == losses[1]
    assert all(v > 0 for v in losses[0].values())
