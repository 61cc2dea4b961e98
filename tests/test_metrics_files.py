"""What the stages write for DVC: metrics/<stage>.json holds a few finite numbers (DVC parses
nothing else: a list made `dvc metrics show` warn on every run), reports/<stage>_metrics.json
holds everything, and the report reads the latter."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from datapipe.config import CurateParams
from datapipe.curate import curate
from datapipe.report.inputs import load_inputs
from datapipe.runs import RunFiles
from stages import clean, evaluate, score, train
from stages import curate as curate_stage
from stages.common import write_metrics
from tests.test_curate import CLASSES as CURATE_CLASSES
from tests.test_curate import _scores as curate_scores
from tests.test_score import _dataset, _score

SCORE_LIKE = {
    "task": "classification",
    "scored": 35,
    "oof_accuracy": 0.9,
    "fold_accuracy": {"0": 0.8, "1": 1.0},
    "label_issues": 3,
    "estimated_noise_rate": float("nan"),
    "rare_classes": ["bright"],
    "has_tta": True,
}


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_metrics_file_holds_the_finite_headline_numbers_and_the_detail_file_all(
    tmp_path: Path,
) -> None:
    headline = ("oof_accuracy", "oof_miou", "label_issues", "estimated_noise_rate", "task",
                "rare_classes", "has_tta")  # fmt: skip
    metrics, detail = write_metrics(tmp_path, "score", SCORE_LIKE, headline=headline)
    assert metrics == tmp_path / "metrics" / "score.json"
    # oof_miou absent (other task), NaN / text / list / bool dropped: numbers only
    assert _read(metrics) == {"oof_accuracy": 0.9, "label_issues": 3}
    assert detail == tmp_path / "reports" / "score_metrics.json"
    assert _read(detail)["rare_classes"] == ["bright"] and len(_read(detail)) == len(SCORE_LIKE)


def test_every_stage_headline_is_a_few_keys() -> None:
    # the union over the tasks; a run writes the keys its task produces (2 to 4 of them)
    for stage in (clean, score, curate_stage, train, evaluate):
        assert 2 <= len(stage.HEADLINE) <= 8, stage.__name__


def test_score_metrics_file_is_numbers_without_rare_classes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    manifest, stats = _dataset(data, [12, 12, 2])
    result = _score(data, manifest, stats)
    assert result is not None and result.metrics["rare_classes"] == ["bright"]
    metrics, _ = write_metrics(tmp_path, "score", result.metrics, headline=score.HEADLINE)
    values = _read(metrics)
    assert list(values) == ["oof_accuracy", "label_issues", "estimated_noise_rate"]
    assert values["oof_accuracy"] == result.metrics["oof_accuracy"]


def test_curate_metrics_file_holds_every_headline_count(tmp_path: Path) -> None:
    policy = CurateParams(label_issues="relabel", otherwise="downweight")
    result = curate(curate_scores(), classes=CURATE_CLASSES, task="classification", policy=policy)
    metrics, _ = write_metrics(tmp_path, "curate", result.metrics, headline=curate_stage.HEADLINE)
    assert _read(metrics) == {"relabel": 2, "downweight": 1, "drop": 0, "reviewed": 0}


def test_the_report_reads_the_detail_file_where_there_is_one(tmp_path: Path) -> None:
    files = RunFiles.under(tmp_path)
    pd.DataFrame({"sample_id": ["a"], "image": ["a.png"], "split": ["train"]}).to_parquet(
        files.clean_manifest
    )
    files.stats.write_text(
        json.dumps(
            {"task": "classification", "classes": ["x"], "channels": 1, "mean": [0.5], "std": [0.2]}
        )
    )
    write_metrics(tmp_path, "score", SCORE_LIKE, headline=score.HEADLINE)
    (tmp_path / "metrics" / "eval.json").write_text('{"accuracy": 0.5}')  # no detail: itself
    inputs = load_inputs(files, name="d")
    assert inputs.metrics["score"]["rare_classes"] == ["bright"]
    assert inputs.metrics["eval"] == {"accuracy": 0.5}
    assert "metrics/clean" in inputs.missing and "metrics/score" not in inputs.missing
