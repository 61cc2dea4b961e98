"""The real-nuclei detection corpus of bench/realdata_detection.py (builder only, no training):
its COCO JSON reads back through datapipe.objects with every object, uint16 pixels, masks
that match their boxes, and plants where the bench says they are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.realdata_detection import PLANTS, build_nuclei
from datapipe.io.image import read_image
from datapipe.manifest import sample_id, split_by_hash
from datapipe.objects import decode_instance_mask, read_annotations
from tests.realdata_corpora import Corpus


@pytest.fixture(scope="module")
def corpus(realdata: Path, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_nuclei(tmp_path_factory.mktemp("nuclei") / "data", realdata / "nucseg_20x")


def test_every_written_annotation_reads_back_as_a_usable_object(corpus: Corpus) -> None:
    ann = read_annotations(corpus.root)
    coco = json.loads((corpus.root / "annotations.json").read_text())
    assert ann.layout == "coco" and ann.classes == ["small", "large"]
    assert len(ann.images) == 144 and not any(e.problem for e in ann.images)
    assert len(ann.objects) == len(coco["annotations"]) == corpus.dataset["_meta"]["objects"]
    assert (ann.objects["problem"] == "").all()


def test_crops_keep_their_uint16_pixels(corpus: Corpus) -> None:
    first = read_image(corpus.root / "images" / "bone_20x_2_000_000.tif")
    assert first.shape == (128, 128, 1) and first.dtype == np.uint16
    assert first.max() > 255  # 16-bit values, not an 8-bit copy


def test_unplanted_masks_fill_their_boxes_and_planted_ones_are_as_described(
    corpus: Corpus,
) -> None:
    coco = json.loads((corpus.root / "annotations.json").read_text())
    kinds = dict(zip(corpus.planted["object_id"], corpus.planted["kind"], strict=True))
    for a in coco["annotations"]:
        mask = decode_instance_mask(json.dumps(a["segmentation"]), 128, 128)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        tight = [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
        if kinds.get(str(a["id"])) == "oversized_box":
            assert a["bbox"][2] > tight[2] and a["bbox"][3] > tight[3]
        else:
            assert a["bbox"] == pytest.approx(tight), a["id"]
            assert a["area"] == mask.sum() >= 10
    ids = {str(a["id"]) for a in coco["annotations"]}
    missing = set(corpus.planted.loc[corpus.planted["kind"] == "missing_box", "object_id"])
    assert missing and not missing & ids


def test_each_kind_is_planted_on_images_of_their_own_outside_the_test_split(
    corpus: Corpus,
) -> None:
    planted = corpus.planted
    assert planted["kind"].value_counts().to_dict() == dict(PLANTS)
    assert planted["image"].is_unique
    which, _, names, _ = split_by_hash(
        [sample_id(i) for i in planted["image"]],
        fractions={"train": 0.7, "val": 0.15, "test": 0.15}, seed=0,
    )  # fmt: skip
    assert "test" not in {names[w] for w in which}
