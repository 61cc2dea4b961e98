"""Known answers for the dataset-relative intensity rules, on images measured by the real code."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from datapipe.checks import CHECKS
from datapipe.checks.features import FeatureSettings, image_features
from datapipe.checks.intensity import _spread_z
from datapipe.config import CleanParams
from tests.checks.test_known_answers import facts

PARAMS = CleanParams()


def _settings(**scaling: int) -> FeatureSettings:
    return FeatureSettings(
        root=Path(),
        scaling=scaling or {"uint8": 8},
        percentiles=(0.5, 99.5),
        max_pixels=1 << 28,
        class_values=[0, 1],
        ignore_index=255,
    )


def _table(images: list[np.ndarray], settings: FeatureSettings) -> pd.DataFrame:
    rows = [image_features(img, settings) for img in images]
    table = pd.DataFrame(rows).drop(columns="phash")
    table["read_error"] = None
    table["decode_error"] = None
    return table


def _flagged(check: str, table: pd.DataFrame) -> list[int]:
    found = CHECKS[check].run(table, facts(), PARAMS)
    return sorted(found.index[found["flagged"]])


def _stroke(rng: np.random.Generator) -> np.ndarray:
    """An MNIST-like 28x28 digit: black, one bright anti-aliased stroke (entropy about 0.1)."""
    img = np.zeros((28, 28), np.uint8)
    points = rng.integers(5, 23, (4, 2))
    for a, b in itertools.pairwise(points):
        cv2.line(img, tuple(map(int, a)), tuple(map(int, b)), 255, 2, cv2.LINE_AA)
    return img[..., None]


def test_spread_z_falls_back_to_mean_deviation_when_mad_is_zero() -> None:
    z = _spread_z(pd.Series([0.0] * 9 + [1.0]))
    assert z[-1] == pytest.approx(1 / (1.2533 * 0.1))
    assert (z[:-1] == 0).all()
    assert (_spread_z(pd.Series([0.3] * 5)) == 0).all()


def test_only_the_near_constant_image_among_digits_is_low_information() -> None:
    rng = np.random.default_rng(0)
    speck = np.zeros((28, 28, 1), np.uint8)
    speck[3, 4] = speck[20, 9] = 255
    table = _table([*(_stroke(rng) for _ in range(40)), speck], _settings())
    assert (table["entropy"].iloc[:40] < 0.2).mean() > 0.7  # the old rule flagged most digits
    assert _flagged("low_information", table) == [40]


def test_low_information_is_not_flagged_in_a_dataset_of_equal_entropy() -> None:
    rng = np.random.default_rng(1)
    table = _table([_stroke(rng) for _ in range(30)], _settings())
    assert _flagged("low_information", table) == []


def test_only_the_heavily_clipped_photo_is_saturated() -> None:
    rng = np.random.default_rng(2)
    natural = np.where(rng.random(80) < 0.6, 0.0, rng.uniform(0, 0.03, 80))  # skies: 0-3%
    table = pd.DataFrame(
        {
            "saturated": [*natural, 0.30],
            "brightness": 0.5,
            "read_error": None,
            "decode_error": None,
        }
    )
    assert _flagged("saturated", table) == [80]


@pytest.mark.parametrize(("bits", "top"), [(12, 4095), (16, 65535)], ids=["12-bit", "16-bit"])
def test_a_detector_saturated_uint16_image_stands_out(bits: int, top: int) -> None:
    rng = np.random.default_rng(3)
    images = [rng.integers(100, top // 2, (64, 64, 1)).astype(np.uint16) for _ in range(20)]
    clipped = images[0].copy()
    clipped[:, :19] = top  # 30% of the pixels at the top of the bit depth
    table = _table([*images, clipped], _settings(uint16=bits))
    assert table["saturated"].iloc[-1] == pytest.approx(19 / 64)
    assert _flagged("saturated", table) == [20]


def test_a_dataset_that_always_clips_is_not_flagged_as_saturated() -> None:
    rng = np.random.default_rng(4)
    table = pd.DataFrame(
        {
            "saturated": rng.uniform(0.28, 0.32, 40),
            "brightness": 0.5,
            "read_error": None,
            "decode_error": None,
        }
    )
    assert _flagged("saturated", table) == []


def test_a_flat_red_rgb_image_is_blank_not_blurry() -> None:
    rng = np.random.default_rng(5)
    photos = [rng.integers(0, 256, (48, 48, 3)).astype(np.uint8) for _ in range(20)]
    photos = [cv2.GaussianBlur(p, (0, 0), 0.7) for p in photos]
    red = np.zeros((48, 48, 3), np.uint8)
    red[..., 0] = 255
    table = _table([*photos, red], _settings())
    assert table["value_range"].iloc[-1] == 0.0
    assert _flagged("blank", table) == [20]
    assert 20 not in _flagged("blurry", table)
    assert 20 not in _flagged("low_information", table)


def test_dark_counts_stops_in_a_dark_dataset() -> None:
    """Night shots around 0.1: one two stops darker (mean 0.025, highlights 0.125) is dark; the
    0.05 shift guard holds."""
    rng = np.random.default_rng(6)
    level = np.exp(rng.normal(0, 0.1, 40))
    table = pd.DataFrame(
        {
            "brightness": [*(0.1 * level), 0.025],
            "highlight": [*(0.5 * level), 0.125],
            "shadow": 0.0,
            "value_range": 0.8,
            "read_error": None,
            "decode_error": None,
        }
    )
    assert _flagged("dark", table) == [40]
    assert _flagged("bright", table) == []


def test_highlight_and_shadow_are_the_99th_and_1st_percentiles() -> None:
    img = np.random.default_rng(7).integers(20, 230, (64, 64, 1)).astype(np.uint8)
    found = image_features(img, _settings())
    expected = np.percentile(img, [1, 99], method="inverted_cdf") / 255
    assert (found["shadow"], found["highlight"]) == pytest.approx(tuple(expected))


def _photo(rng: np.random.Generator) -> np.ndarray:
    """A photo-like 96x96 grey image: smooth blobs over the whole range, mean about 0.5."""
    field = cv2.GaussianBlur(rng.normal(0, 1, (96, 96)), (0, 0), 6)
    unit = np.clip(0.5 + 0.2 * field / field.std(), 0, 1)
    return np.round(unit * 255).astype(np.uint8)[..., None]


def _spots(base: float, spot: float, share: float, rng: np.random.Generator) -> np.ndarray:
    """``base`` with texture, and ``share`` of the pixels at ``spot``: stars, or ink."""
    unit = base + rng.normal(0, 0.02, (96, 96))
    unit[rng.random((96, 96)) < share] = spot
    return np.round(np.clip(unit, 0, 1) * 255).astype(np.uint8)[..., None]


@pytest.mark.parametrize(
    ("check", "exposed", "natural"),
    [
        ("dark", lambda p: p * 0.4, lambda r: _spots(0.12, 0.95, 0.03, r)),
        ("bright", lambda p: 255 - (255 - p) * 0.4, lambda r: _spots(0.88, 0.05, 0.05, r)),
    ],
    ids=["darkened-vs-night-with-stars", "over-exposed-vs-paper-with-ink"],
)
def test_only_the_exposure_change_is_flagged_not_the_naturally_dark_or_bright_scene(
    check: str,
    exposed: Callable[[np.ndarray], np.ndarray],
    natural: Callable[[np.random.Generator], np.ndarray],
) -> None:
    rng = np.random.default_rng(8)
    photos = [_photo(rng) for _ in range(30)]
    changed = np.round(exposed(photos[0].astype(np.float64))).astype(np.uint8)
    table = _table([*photos, changed, natural(rng)], _settings())
    sign = -1 if check == "dark" else 1
    # the mean alone cannot tell them apart: the natural scene is as dark / bright
    assert sign * (table["brightness"].iloc[31] - table["brightness"].iloc[30]) >= 0
    assert _flagged(check, table) == [30]


def test_blurry_and_dark_judge_an_image_against_its_own_class() -> None:
    """Class b is naturally smooth and dark; a blurred, darkened copy of one of its images sits
    near the whole dataset's median, yet far below its own class: only the class reference
    finds it (and flags no image of b for being b)."""
    from tests.checks.test_known_answers import facts, samples

    rng = np.random.default_rng(2)
    n = 61
    label = ["a"] * 30 + ["b"] * 31
    sharp = np.r_[np.exp(rng.normal(0, 0.2, 30)), np.exp(rng.normal(-4.6, 0.2, 30)), 0.0007]
    level = np.r_[rng.normal(0.6, 0.03, 30), rng.normal(0.3, 0.015, 30), 0.12]
    table = samples(
        n,
        label=label,
        sharpness=list(sharp),
        brightness=list(level),
        highlight=list(np.clip(level + 0.3, 0, 1)),
    )
    for check in ("blurry", "dark"):
        found = CHECKS[check].run(table, facts(), CleanParams())
        assert table.loc[found.index[found["flagged"]], "image"].tolist() == ["img060.png"], check
        pooled = CHECKS[check].run(table, facts(task="segmentation"), CleanParams())
        assert not pooled["flagged"].any(), check  # the dataset-wide reference misses it
