"""The score stage's orchestration on small synthetic sets: outputs, fallbacks and errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from datapipe.config import DatasetParams, FitParams, ScoreParams
from datapipe.errors import DatapipeError
from datapipe.score import HARD_EXAMPLE_REPORT, LABEL_ISSUE_REPORT, score

CLASSES = ["dark", "mid", "bright"]
FAST = FitParams(model="small_cnn", image_size=8, epochs=3, batch_size=8, lr=0.05)


def _dataset(root: Path, counts: list[int], *, folds: int = 3) -> tuple[pd.DataFrame, dict]:
    """Grey 8x8 PNGs whose brightness gives the class; folds round-robin per class."""
    rng = np.random.default_rng(0)
    rows = []
    for c, n in enumerate(counts):
        for i in range(n):
            name = f"{CLASSES[c]}_{i}.png"
            pixels = np.clip(40 + 80 * c + rng.normal(0, 8, (8, 8)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / name), pixels)
            rows.append({
                "sample_id": f"{c:02d}{i:06d}", "image": name, "label": CLASSES[c],
                "label_index": c, "split": "train", "fold": i % folds, "excluded": False,
                "height": 8, "width": 8,
            })  # fmt: skip
    stats = {"classes": CLASSES, "mean": [0.5], "std": [0.3], "bit_depth": {"uint8": 8}}
    return pd.DataFrame(rows), stats


def _score(root: Path, manifest: pd.DataFrame, stats: dict, *, folds: int = 3, **fit: object):
    dataset = DatasetParams(root=str(root), task="classification", folds=folds)
    params = ScoreParams(classification=FAST.model_copy(update=fit))
    issues = pd.DataFrame({"sample_id": [], "check": []})
    return score(manifest, stats, issues, dataset, params, workers=0, device=torch.device("cpu"))


def test_classification_outputs_and_a_flipped_label(tmp_path: Path) -> None:
    manifest, stats = _dataset(tmp_path, [12, 12, 12])
    manifest.loc[3, ["label", "label_index"]] = ["bright", 2]  # a dark image labelled bright
    manifest.loc[20, "excluded"] = True
    result = _score(tmp_path, manifest, stats, epochs=8)
    assert result is not None
    scores = result.scores
    assert len(scores) == 36 and scores["scored"].sum() == 35
    assert np.isnan(scores.loc[20, "label_quality"])
    assert scores.loc[3, "label_quality"] == scores["label_quality"].min()
    assert scores.loc[3, "suggested_label"] == "dark" and scores.loc[3, "is_label_issue"]
    assert list(result.label_issues.columns) == list(LABEL_ISSUE_REPORT)
    assert result.label_issues.iloc[0]["sample_id"] == manifest.loc[3, "sample_id"]
    assert list(result.hard_examples.columns) == list(HARD_EXAMPLE_REPORT)
    m = result.metrics
    assert m["scored"] == 35 and m["oof_accuracy"] >= 0.9
    assert m["label_issues_per_class"]["bright"] >= 1
    np.testing.assert_allclose(scores.filter(like="prob_").dropna().sum(axis=1), 1.0, rtol=1e-5)
    assert len(result.confusion_rows) == 35


def test_single_class_is_an_error(tmp_path: Path) -> None:
    manifest, stats = _dataset(tmp_path, [12])
    with pytest.raises(DatapipeError, match="at least 2 classes"):
        _score(tmp_path, manifest, {**stats, "classes": ["dark"]})


def test_too_few_samples_for_the_folds_is_an_error(tmp_path: Path) -> None:
    manifest, stats = _dataset(tmp_path, [2, 2, 1])
    with pytest.raises(DatapipeError, match="3 folds need at least 6"):
        _score(tmp_path, manifest, stats)


def test_a_class_with_fewer_samples_than_folds_is_scored_but_never_flagged(tmp_path: Path) -> None:
    manifest, stats = _dataset(tmp_path, [12, 12, 2])
    result = _score(tmp_path, manifest, stats)
    assert result is not None
    assert result.metrics["rare_classes"] == ["bright"]
    rare = result.scores[result.scores["given_label"] == "bright"]
    assert len(rare) == 2 and not rare["is_label_issue"].any()
    assert (rare["reasons"] == "rare_class").all()


def test_a_class_with_every_sample_excluded_still_scores_the_rest(tmp_path: Path) -> None:
    manifest, stats = _dataset(tmp_path, [12, 12, 6])
    manifest.loc[manifest["label"] == "bright", "excluded"] = True
    result = _score(tmp_path, manifest, stats)
    assert result is not None
    assert result.metrics["scored"] == 24
    assert result.metrics["label_issues_per_class"]["bright"] == 0
    assert result.scores.loc[result.scores["scored"], "prob_bright"].notna().all()


def test_a_diverging_loss_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    manifest, stats = _dataset(tmp_path, [12, 12, 12])
    with pytest.raises(DatapipeError, match=r"fold 0: epoch 0: .*lower score\.classification\.lr"):
        _score(tmp_path, manifest, stats, lr=1e12, epochs=2)


@pytest.mark.slow
def test_sample_set_label_flips_found_with_the_sample_recipe() -> None:
    """The issue's bar on shapes_cls with params.yaml's recipe: planted label flips found
    with precision >= 0.8 and recall >= 0.9 (a planted conflicting-label duplicate counts as
    a true issue: its label contradicts its twin's)."""
    from datapipe.clean import clean
    from datapipe.config import load_params
    from datapipe.ingest import ingest
    from tests.conftest import REPO, SAMPLE_DATA

    params = load_params(REPO / "params.yaml")
    dataset = params.dataset("shapes_cls").model_copy(
        update={"root": str(SAMPLE_DATA / "shapes_cls")}
    )
    ingested = ingest(dataset, name="t", workers=2)
    cleaned = clean(ingested.manifest, ingested.stats, dataset, params.clean, workers=2, name="t")
    result = score(
        cleaned.manifest, ingested.stats, cleaned.issues, dataset, params.score,
        workers=2, device=torch.device("cpu"),
    )  # fmt: skip
    assert result is not None
    planted = pd.read_csv(SAMPLE_DATA / "shapes_cls" / "planted.csv")
    scores = result.scores[result.scores["scored"]]
    truth = scores["image"].isin(
        planted.loc[planted["problem"].isin(["label_flip", "conflicting_label_duplicate"]), "image"]
    )
    flagged = scores["is_label_issue"].astype(bool)
    precision = (flagged & truth).sum() / flagged.sum()
    recall = (flagged & truth).sum() / truth.sum()
    assert truth.sum() >= 40
    assert precision >= 0.8 and recall >= 0.9, (precision, recall)


def test_the_cpu_fast_paths_follow_the_task_module_and_cpu_bf16() -> None:
    from datapipe import tasks
    from datapipe.score import _settings

    def settings(task: str, cpu_bf16: str, device: str = "cpu"):
        return _settings(FAST, torch.device(device), ScoreParams(cpu_bf16=cpu_bf16),
                         fast=tasks.get(task).cpu_fast_paths, ignore=-100,
                         class_counts=np.ones(2), key="score.x")  # fmt: skip

    on = settings("classification", "on")
    assert on.channels_last is True and on.cpu_amp
    assert not settings("classification", "off").cpu_amp
    assert settings("classification", "off").channels_last is True
    seg = settings("segmentation", "on")
    assert seg.channels_last is None and not seg.cpu_amp  # not measured faster: CUDA only
    assert not settings("classification", "on", "meta").cpu_amp  # bf16 autocast is CPU only
