"""The params augmentation pipeline: strict building, mask-safe geometry, uint16 parity,
channel checks and albumentations' own serialisation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datapipe.augment import (
    Augment,
    build_pipeline,
    check_pipeline,
    save_pipeline,
    to_dict,
    validate_spec,
)
from datapipe.config import parse_params
from datapipe.errors import ConfigError
from datapipe.io import to_unit_float
from tests.conftest import REPO

IGNORE = 255
K = 4

#: Geometric transforms, image interpolation forced to nearest so the image is an exact
#: witness of where each mask pixel came from.
GEOMETRIC: dict[str, dict[str, Any]] = {
    "HorizontalFlip": {"p": 1.0},
    "VerticalFlip": {"p": 1.0},
    "RandomRotate90": {"p": 1.0},
    "Transpose": {"p": 1.0},
    "Affine": {"rotate": [-40, 40], "scale": [0.7, 1.3], "translate_percent": [-0.2, 0.2],
               "shear": [-10, 10], "interpolation": 0, "p": 1.0},
    "Rotate": {"limit": [-45, 45], "interpolation": 0, "p": 1.0},
    "RandomResizedCrop": {"size": [40, 40], "scale": [0.3, 1.0], "interpolation": 0, "p": 1.0},
    "PadIfNeeded": {"min_height": 80, "min_width": 72, "p": 1.0},
    "Perspective": {"scale": [0.05, 0.1], "interpolation": 0, "p": 1.0},
    "GridDistortion": {"interpolation": 0, "p": 1.0},
    "ElasticTransform": {"alpha": 30.0, "sigma": 5.0, "interpolation": 0, "p": 1.0},
}  # fmt: skip


def _stripes(h: int = 64, w: int = 56) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal-ish stripes of K classes; the image encodes the class as (c + 1) / (K + 1),
    so a zero image pixel can only be padding."""
    yy, xx = np.indices((h, w))
    mask = ((xx // 6 + yy // 9) % K).astype(np.int16)
    image = ((mask + 1) / (K + 1)).astype(np.float32)[..., None]
    return image, mask


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_masks_stay_aligned_and_created_areas_are_ignored(name: str, seed: int) -> None:
    image, mask = _stripes()
    augment = Augment(build_pipeline([{name: GEOMETRIC[name]}], ignore_index=IGNORE))
    out_image, out_mask = augment(image, mask, seed)
    assert out_mask is not None and out_mask.shape == out_image.shape[:2]
    decoded = np.rint(out_image[..., 0] * (K + 1)).astype(np.int64) - 1  # -1 = padding
    labelled = out_mask != IGNORE
    # nearest-neighbour ties may round an image and a mask pixel differently at a stripe
    # border (cv2 takes float and integer paths); a misaligned mask disagrees on ~half
    disagree = (out_mask != decoded) & labelled
    assert disagree.sum() <= 0.005 * labelled.sum()
    padded = decoded == -1
    assert (padded & labelled).sum() <= 0.005 * labelled.sum()  # no fake labels in new areas
    assert (~padded & ~labelled).sum() <= 0.005 * labelled.sum()
    assert set(np.unique(out_mask).tolist()) <= {*range(K), IGNORE}


def test_padding_fills_masks_with_ignore_index_unless_told_otherwise() -> None:
    resolved = to_dict(build_pipeline([{"Rotate": {"limit": 30}}], ignore_index=7))
    assert resolved["transform"]["transforms"][0]["fill_mask"] == 7
    told = to_dict(build_pipeline([{"Rotate": {"limit": 30, "fill_mask": 0}}], ignore_index=7))
    assert told["transform"]["transforms"][0]["fill_mask"] == 0


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_uint16_and_12_bit_input_give_the_geometry_of_uint8(bits: int) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    stored = np.rint(base / 255 * (2**bits - 1)).astype(np.uint16) if bits > 8 else base
    spec = [{"Affine": {"rotate": [-30, 30], "scale": [0.8, 1.2], "p": 1.0}},
            {"RandomResizedCrop": {"size": [32, 32], "scale": [0.5, 1.0]}},
            {"HorizontalFlip": {"p": 0.5}}]  # fmt: skip
    augment = Augment(build_pipeline(spec, ignore_index=IGNORE))
    reference, _ = augment(to_unit_float(base, bit_depth=8), None, 11)
    out, _ = augment(to_unit_float(stored, bit_depth=bits), None, 11)
    assert out.dtype == np.float32 and out.shape == (32, 32, 3)
    np.testing.assert_allclose(out, reference, atol=0.5 / (2**bits - 1) + 1e-6)  # rounding only


@pytest.mark.parametrize(
    ("name", "channels"),
    [("ColorJitter", 2), ("ColorJitter", 5), ("HueSaturationValue", 1),
     ("HueSaturationValue", 4), ("ToGray", 1), ("ToGray", 5), ("ISONoise", 1), ("ISONoise", 5),
     ("RGBShift", 5), ("ToSepia", 5)],
)  # fmt: skip
def test_rgb_colour_transforms_are_refused_on_other_channel_counts(
    name: str, channels: int
) -> None:
    with pytest.raises(ConfigError, match=rf"augment\[0\]\.{name}: cannot run on {channels}-ch"):
        check_pipeline([{name: {}}], channels=channels, ignore_index=IGNORE)


def test_channel_agnostic_pipelines_pass_the_check_on_five_channels() -> None:
    spec = [{"RandomBrightnessContrast": {}}, {"GaussNoise": {}}, {"Affine": {"rotate": 10}}]
    check_pipeline(spec, channels=5, ignore_index=IGNORE)  # raises on failure
    check_pipeline([{"ColorJitter": {}}], channels=3, ignore_index=IGNORE)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([{"HorizontalFlp": {}}], r"augment\[0\]\.HorizontalFlp: unknown albumentations"),
        ([{"HorizontalFlip": {}}, {"Rotate": {"limt": 3}}], r"augment\[1\]\.Rotate: .*'limt'"),
        ([{"RandomRotate90": {"k": 1}}], r"augment\[0\]\.RandomRotate90: .*'k'"),
        ([{"Rotate": {"limit": "x"}}], r"augment\[0\]\.Rotate: .*limit"),
        ([{"Normalize": {}}], r"Normalize is not allowed here: .*stats\.json"),
        ([{"Rotate": {"mask_interpolation": 1}}], r"mask_interpolation must be nearest"),
        ([{"OneOf": {"p": 0.5}}], r"OneOf: needs a 'transforms' list"),
        ([{"OneOf": {"transforms": [{"Blurr": {}}]}}], r"OneOf\.transforms\[0\]\.Blurr"),
        (["HorizontalFlip"], r"augment\[0\]: expected a one-key mapping"),
        ([{"HorizontalFlip": {}, "VerticalFlip": {}}], r"expected a one-key mapping"),
    ],
    ids=["unknown-name", "unknown-arg", "unknown-arg-no-kwargs", "bad-value", "owned",
         "mask-interp", "compose-no-list", "nested-unknown", "bare-string", "two-keys"],
)  # fmt: skip
def test_bad_pipelines_are_errors_naming_the_transform(spec: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_spec(spec)


def test_params_check_the_pipeline_shape_when_they_load_and_arguments_when_built() -> None:
    def raw(augment: Any) -> dict[str, Any]:
        return {
            "datasets": {"a": {"root": "x", "task": "segmentation"}},
            "train": {"segmentation": {"augment": augment}},
        }

    with pytest.raises(ConfigError, match=r"train\.segmentation\.augment: .*augment\[1\]: "):
        parse_params(raw([{"HorizontalFlip": {}}, {"Affine": {}, "Rotate": {}}]))
    typo = [{"Affine": {"rotat": 10}}]
    recipe = parse_params(raw(typo)).train.segmentation  # the stages that augment refuse it
    with pytest.raises(ConfigError, match=r"augment\[0\]\.Affine: .*'rotat'"):
        build_pipeline(recipe.augment, ignore_index=IGNORE)


def test_loading_params_imports_neither_albumentations_nor_torch() -> None:
    code = (
        "import sys; from datapipe.config import load_params; load_params('params.yaml'); "
        "print(sorted(m for m in ('albumentations', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_nested_composes_build_and_apply() -> None:
    spec = [{"OneOf": {"p": 1.0, "transforms": [{"HorizontalFlip": {"p": 1.0}},
                                                 {"VerticalFlip": {"p": 1.0}}]}}]  # fmt: skip
    image, mask = _stripes()
    _, out_mask = Augment(build_pipeline(spec, ignore_index=IGNORE))(image, mask, 3)
    flipped = [np.fliplr(mask), np.flipud(mask)]
    assert any(np.array_equal(out_mask, f) for f in flipped)


def test_same_seed_same_views_and_other_seeds_differ() -> None:
    image, mask = _stripes()
    augment = Augment(
        build_pipeline([{"Affine": {"rotate": [-40, 40], "p": 1.0}}], ignore_index=IGNORE)
    )
    a, b, c = (augment(image, mask, s)[1] for s in (5, 5, 6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_resolved_pipeline_round_trips_through_albumentations_serialisation(
    tmp_path: Path,
) -> None:
    spec = [{"Affine": {"rotate": [-20, 20], "p": 0.8}}, {"RandomBrightnessContrast": {}},
            {"OneOf": {"transforms": [{"GaussianBlur": {}}, {"GaussNoise": {}}]}}]  # fmt: skip
    pipeline = build_pipeline(spec, ignore_index=IGNORE)
    # augment.json is albumentations' own serialisation: users load it with A.from_dict
    loaded = A.from_dict(json.loads(save_pipeline(pipeline, tmp_path / "augment.json").read_text()))
    assert to_dict(loaded) == to_dict(pipeline)
    image, mask = _stripes()
    for seed in range(5):
        got, want = Augment(loaded)(image, mask, seed), Augment(pipeline)(image, mask, seed)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
