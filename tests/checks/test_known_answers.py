"""A known-answer case for every registered check, and a test that none is missing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from datapipe.checks import CHECKS, DatasetFacts
from datapipe.checks.duplicates import add_duplicate_groups, perceptual_pairs
from datapipe.config import CleanParams

PARAMS = CleanParams()
RNG = np.random.default_rng(5)


def facts(**kw: Any) -> DatasetFacts:
    base: dict[str, Any] = {
        "task": "classification",
        "channels": 1,
        "dtype": "uint8",
        "dtype_share": {"uint8": 1.0},
        "class_values": [0, 1, 2],
        "ignore_index": 255,
    }
    return DatasetFacts(**{**base, **kw})


def samples(n: int, **columns: list[Any]) -> pd.DataFrame:
    """``n`` ordinary, distinct samples; ``columns`` override whole columns."""
    base: dict[str, list[Any]] = {
        "sample_id": [f"id{i:03d}" for i in range(n)],
        "image": [f"img{i:03d}.png" for i in range(n)],
        "label": ["a"] * n,
        "split": ["train"] * n,
        "height": [32] * n,
        "width": [32] * n,
        "channels": [1] * n,
        "dtype": ["uint8"] * n,
        "read_error": [None] * n,
        "decode_error": [None] * n,
        "pixel_hash": [f"h{i}" for i in range(n)],
        "phash": [int(v) for v in RNG.integers(0, 2**63, n)],
        "brightness": list(0.5 + RNG.normal(0, 0.02, n)),
        "highlight": list(0.9 + RNG.normal(0, 0.02, n)),
        "shadow": list(0.1 + RNG.normal(0, 0.02, n)),
        "contrast": [0.1] * n,
        "value_range": [0.8] * n,
        "entropy": [0.8] * n,
        "sharpness": list(0.01 * np.exp(RNG.normal(0, 0.2, n))),
        "saturated": [0.0] * n,
        "nonfinite": [0] * n,
        "mask_read_error": [None] * n,
        "mask_height": [32] * n,
        "mask_width": [32] * n,
        "mask_hash": [f"m{i}" for i in range(n)],
        "mask_bad_values": [[] for _ in range(n)],
        "mask_bad_pixels": [0] * n,
        "mask_foreground_pixels": [100] * n,
        "mask_ignored_pixels": [0] * n,
        "mask_pixels": [1024] * n,
    }
    base.update(columns)
    df = pd.DataFrame(base)
    df["phash"] = df["phash"].astype("UInt64")
    # the hash pairs stand in for verified pairs here (verification: tests/checks/test_duplicates)
    return add_duplicate_groups(df, perceptual_pairs(df, max_distance=PARAMS.near_duplicate_bits))


def _set(col: list[Any], **at: Any) -> list[Any]:
    out = list(col)
    for index, value in at.items():
        out[int(index.removeprefix("i"))] = value
    return out


def _flip_bits(h: int, *bits: int) -> int:
    for b in bits:
        h ^= 1 << b
    return h


N = 20
PH = [int(v) for v in RNG.integers(0, 2**63, N)]
#: robust z of the one odd value among N - 1 equal ones (MAD 0: 1.2533 x mean abs. deviation)
_MAD0_Z = N / 1.2533

#: i12: a 0.4x darkened copy (mean and highlight 0.4x); i13: a night shot as dark, with bright
#: stars; i14: over-exposed (distance to white 0.4x); i15: white paper as bright, with black ink
_EXPOSED = {
    "brightness": _set(list(0.5 + RNG.normal(0, 0.02, N)), i12=0.2, i13=0.2, i14=0.8, i15=0.8),
    "highlight": _set(list(0.9 + RNG.normal(0, 0.02, N)), i12=0.36, i13=0.95, i14=0.96, i15=0.9),
    "shadow": _set(list(0.1 + RNG.normal(0, 0.02, N)), i12=0.04, i13=0.0, i14=0.64, i15=0.05),
}

# check -> (samples, facts, {image: (score, detail fragment, severity or None)} of flagged rows)
Case = tuple[pd.DataFrame, DatasetFacts, dict[str, tuple[float, str, str | None]]]
CASES: dict[str, Callable[[], Case]] = {
    "unreadable": lambda: (
        samples(
            N,
            read_error=_set([None] * N, i3="truncated PNG: no IEND chunk"),
            decode_error=_set([None] * N, i5="corrupt TIFF: x"),
        ),
        facts(),
        {"img003.png": (0.0, "truncated PNG", None), "img005.png": (0.0, "corrupt TIFF", None)},
    ),
    "mask_unreadable": lambda: (
        samples(N, mask_read_error=_set([None] * N, i2="no mask masks/img002.* for this image")),
        facts(task="segmentation"),
        {"img002.png": (0.0, "no mask", None)},
    ),
    "channels_mismatch": lambda: (
        samples(N, channels=_set([3] * N, i4=1)),
        facts(channels=3),
        {"img004.png": (0.0, "1 channels; the dataset has 3", None)},
    ),
    "dtype_mismatch": lambda: (
        samples(N, dtype=_set(["uint16"] * N, i1="uint8")),
        facts(dtype="uint16", dtype_share={"uint16": 0.95, "uint8": 0.05}),
        {"img001.png": (1 - 0.5 ** (0.05 / 0.2), "uint8 pixels, like 5%", None)},
    ),
    "size_mismatch": lambda: (
        samples(N, mask_width=_set([32] * N, i7=16)),
        facts(task="segmentation"),
        {"img007.png": (0.0, "image 32x32, mask 16x32", None)},
    ),
    "mask_values": lambda: (
        samples(N, mask_bad_values=_set([[]] * N, i6=[7]), mask_bad_pixels=_set([0] * N, i6=64)),
        facts(task="segmentation"),
        {"img006.png": (1 - 64 / 1024, "values [7] in 64 pixels", None)},
    ),
    "nonfinite": lambda: (
        samples(N, nonfinite=_set([0] * N, i8=10)),
        facts(),
        {"img008.png": (1 - 10 / 1024, "10 NaN/inf", None)},
    ),
    "empty_mask": lambda: (
        samples(N, mask_foreground_pixels=_set([100] * N, i9=0)),
        facts(task="segmentation"),
        {"img009.png": (0.0, "no foreground", None)},
    ),
    "blank": lambda: (
        samples(N, value_range=_set([0.8] * N, i0=0.0), entropy=_set([0.8] * N, i0=0.0)),
        facts(),
        {"img000.png": (0.0, "every pixel is", None)},
    ),
    "low_information": lambda: (
        samples(N, entropy=_set([0.8] * N, i11=0.05)),
        facts(),
        {"img011.png": (0.5 ** (_MAD0_Z / PARAMS.z_threshold), "entropy 0.05", None)},
    ),
    "dark": lambda: (
        samples(N, **_EXPOSED),
        facts(),
        {"img012.png": (None, "mean 0.200, 99th percentile 0.360", None)},
    ),  # type: ignore[dict-item]
    "bright": lambda: (
        samples(N, **_EXPOSED),
        facts(),
        {"img014.png": (None, "mean 0.800, 1st percentile 0.640", None)},
    ),  # type: ignore[dict-item]
    "saturated": lambda: (
        samples(N, saturated=_set([0.0] * N, i14=0.2)),
        facts(),
        {"img014.png": (0.5 ** (_MAD0_Z / PARAMS.z_threshold), "20.0% of pixels", None)},
    ),
    "blurry": lambda: (
        samples(N, sharpness=_set(list(0.01 * np.exp(RNG.normal(0, 0.2, N))), i15=1e-6)),
        facts(),
        {"img015.png": (None, "Laplacian variance 1e-06", None)},
    ),  # type: ignore[dict-item]
    "odd_size": lambda: (
        samples(
            N, width=_set([32] * N, i16=128, i17=64, i18=80), height=_set([32] * N, i17=64, i18=80)
        ),
        facts(),  # 32x128: aspect 4 (factor 2 -> flagged); 64x64: area x4 = at threshold (kept)
        {
            "img016.png": (0.5**2, "128x32", None),
            "img018.png": (0.5 ** (np.log(6.25) / np.log(4)), "80x80", None),
        },
    ),
    "exact_duplicate": lambda: (
        samples(
            N,
            pixel_hash=_set([f"h{i}" for i in range(N)], i3="same", i9="same"),
            phash=_set(PH, i9=PH[3]),
        ),
        facts(),
        {
            "img003.png": (1.0, "kept: first of 2", "info"),
            "img009.png": (0.0, "same pixels as img003.png", "warning"),
        },
    ),
    "near_duplicate": lambda: (
        samples(
            N,
            phash=_set(PH, i4=_flip_bits(PH[2], 0, 17, 40)),
            dtype=_set(["uint8"] * N, i4="uint16"),
        ),
        facts(),
        {
            "img002.png": (
                1 - 0.5 ** (3 / PARAMS.near_duplicate_bits),
                "looks like img004.png (3 of 64",
                None,
            ),
            "img004.png": (
                1 - 0.5 ** (3 / PARAMS.near_duplicate_bits),
                "another bit depth (uint16 vs uint8)",
                None,
            ),
        },
    ),
    "conflicting_labels": lambda: (
        samples(
            N,
            pixel_hash=_set([f"h{i}" for i in range(N)], i1="same", i2="same"),
            phash=_set(PH, i2=PH[1]),
            label=_set(["a"] * N, i2="b"),
        ),
        facts(),
        {
            "img001.png": (0.0, "labelled a x1, b x1", None),
            "img002.png": (0.0, "labelled a x1, b x1", None),
        },
    ),
    "split_leakage": lambda: (
        samples(
            N,
            pixel_hash=_set([f"h{i}" for i in range(N)], i1="same", i2="same", i5="same"),
            phash=_set(PH, i2=PH[1], i5=PH[1]),
            split=_set(
                ["train"] * N,
                i1="test",
                i2="test",
                i5="val",
                i6="val",
                i7="val",
                i8="val",
                i10="val",
                i11="val",
            ),  # moving 1 of 6 val: within the bound
        ),
        facts(),
        {
            "img001.png": (0.0, "group kept in test", None),
            "img002.png": (0.0, "group kept in test", None),
            "img005.png": (0.0, "moved val -> test", None),
        },
    ),
}


def test_every_registered_check_has_a_known_answer_case() -> None:
    assert set(CASES) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_known_answer(name: str) -> None:
    table, dataset, expected = CASES[name]()
    found = CHECKS[name].run(table, dataset, PARAMS)
    flagged = found[found["flagged"]]
    images = table.loc[flagged.index, "image"]
    assert set(images) == set(expected)
    assert ((found["score"] >= 0) & (found["score"] <= 1)).all()
    for idx, image in images.items():
        score, fragment, severity = expected[image]
        if score is not None:
            assert flagged.loc[idx, "score"] == pytest.approx(score, abs=1e-6)
        else:
            assert flagged.loc[idx, "score"] < 0.5
        assert fragment in flagged.loc[idx, "detail"]
        if severity is not None:
            assert flagged.loc[idx, "severity"] == severity
    unflagged = found[~found["flagged"]]
    assert (unflagged["score"] >= 0.5).all() or name in {"exact_duplicate"}
