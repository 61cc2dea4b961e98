"""Segmentation duplicates conflict only when their masks disagree beyond objects moving."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from datapipe.checks.duplicates import mask_pair_agreement
from datapipe.clean import clean
from datapipe.config import CleanParams, DatasetParams
from datapipe.ingest import ingest


def _scene(size: int = 64, *, shift: int = 0, person: int = 2) -> np.ndarray:
    """Background 0, a road (1) along the bottom, a 'person' block (``person``) moved right by
    ``shift`` pixels, and an ignored (255) top row."""
    mask = np.zeros((size, size), np.uint8)
    mask[size * 3 // 4 :] = 1
    mask[20:44, 10 + shift : 26 + shift] = person
    mask[0] = 255
    return mask


@pytest.mark.parametrize(
    ("b", "low", "high"),
    [
        (_scene(), 1.0, 1.0),
        (_scene(shift=2), 0.97, 1.0),
        (_scene(person=3), 0.0, 0.7),
        (cv2.resize(_scene(), (128, 128), interpolation=cv2.INTER_NEAREST), 1.0, 1.0),
    ],
    ids=["identical", "moved-2px", "class-swapped", "other-size-same-labels"],
)
def test_mask_pair_agreement_known_answers(b: np.ndarray, low: float, high: float) -> None:
    agreement = mask_pair_agreement(_scene(), b, ignore_index=255)
    assert low <= agreement <= high


def test_a_swapped_class_scores_zero_for_both_classes() -> None:
    # classes 0, 1 agree fully; 2 and 3 not at all: (1 + 1 + 0 + 0) / 4
    agreement = mask_pair_agreement(_scene(), _scene(person=3), ignore_index=255)
    assert agreement == pytest.approx(0.5)


def test_ignored_pixels_count_for_neither() -> None:
    a, b = _scene(), _scene()
    b[1:5] = 255  # unlabelled in b only: left out, not a disagreement
    assert mask_pair_agreement(a, b, ignore_index=255) == 1.0


def _frames_dataset(root: Path) -> DatasetParams:
    """12 distinct pictures, plus: a 'video' of 3 near-identical frames of picture 0 whose
    person moved 2 px per frame, and an exact copy of picture 1 whose person became class 3."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()

    def write(name: str, image: np.ndarray, mask: np.ndarray) -> None:
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)

    pictures = []
    for k in range(12):
        coarse = rng.random((8, 8)).astype(np.float32)
        pictures.append(cv2.resize(coarse, (64, 64), interpolation=cv2.INTER_CUBIC) * 200 + 20)
        write(f"pic_{k:02d}", pictures[-1].astype(np.uint8), _scene(person=1 + k % 3))
    for f in (1, 2):
        frame = pictures[0] + rng.normal(0, 1.0, (64, 64))  # sensor noise between frames
        moved = _scene(shift=2 * f, person=1)
        write(f"pic_00_frame{f}", np.clip(frame, 0, 255).astype(np.uint8), moved)
    write("pic_01_copy", pictures[1].astype(np.uint8), _scene(person=3))
    return DatasetParams(root=root, task="segmentation")


def test_moving_frames_are_no_conflict_but_a_swapped_class_is(tmp_path: Path) -> None:
    dataset = _frames_dataset(tmp_path / "data")
    ingested = ingest(dataset, name="frames", workers=0)
    result = clean(
        ingested.manifest, ingested.stats, dataset, CleanParams(), workers=0, name="frames"
    )
    m = result.manifest.set_index("image")
    video = ["images/pic_00.png", "images/pic_00_frame1.png", "images/pic_00_frame2.png"]
    assert m.loc[video, "group"].nunique() == 1 and m.loc[video, "group"].notna().all()
    assert (m.loc[video, "mask_agreement"] >= 0.9).all()
    conflicting = result.issues[result.issues["check"] == "conflicting_labels"]
    assert sorted(conflicting["image"]) == ["images/pic_01.png", "images/pic_01_copy.png"]
    assert m.at["images/pic_01_copy.png", "mask_agreement"] == pytest.approx(0.5, abs=0.05)


def test_only_a_move_beyond_the_tolerance_costs_agreement(tmp_path: Path) -> None:
    # 64 px: borders that moved up to 2 px (3%) are forgiven; frame 2 moved 4 px from the first
    dataset = _frames_dataset(tmp_path / "data")
    ingested = ingest(dataset, name="frames", workers=0)
    result = clean(
        ingested.manifest, ingested.stats, dataset, CleanParams(mask_agreement=1.0), workers=0,
        name="frames",
    )  # fmt: skip
    agreement = result.manifest.set_index("image")["mask_agreement"]
    assert agreement["images/pic_00_frame1.png"] == 1.0
    assert 0.9 < agreement["images/pic_00_frame2.png"] < 1.0
    flagged = set(result.issues.loc[result.issues["check"] == "conflicting_labels", "image"])
    assert "images/pic_00_frame2.png" in flagged and "images/pic_00_frame1.png" not in flagged
