"""End to end: `dvc repro` of the whole pipeline in a temporary copy of the repository."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.dvc_harness import copy_repo, dvc, run


@pytest.mark.slow
def test_dvc_repro_runs_every_stage_for_both_sample_sets(tmp_path: Path) -> None:
    work = copy_repo(tmp_path / "repo")
    # the stages' wiring is under test here, not the models: train them for one epoch
    settings = yaml.safe_load((work / "params.yaml").read_text())
    for task in ("classification", "segmentation", "detection"):
        settings["score"][task]["epochs"] = 1
        settings["train"][task]["epochs"] = 1
    (work / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))

    first = dvc(work, "repro")
    assert first.returncode == 0, first.stderr + first.stdout
    for name, planted_unreadable in (("shapes_cls", 4), ("shapes_seg", 2)):
        manifest = pd.read_parquet(work / "runs" / name / "manifest.parquet")
        assert manifest["read_error"].notna().sum() == planted_unreadable
        assert (work / "runs" / name / "stats.json").is_file()
        issues = pd.read_csv(work / "runs" / name / "reports" / "data_issues.csv")
        assert (issues["check"] == "unreadable").sum() == planted_unreadable
        clean = pd.read_parquet(work / "runs" / name / "clean_manifest.parquet")
        assert len(clean) == len(manifest) and clean["excluded"].sum() >= planted_unreadable
        scores = pd.read_parquet(work / "runs" / name / "scores.parquet")
        assert len(scores) == len(clean)
        assert (scores["scored"] == ~clean["excluded"]).all()
        assert scores.loc[scores["scored"], "label_quality"].between(0, 1).all()
        assert scores.loc[~scores["scored"], "label_quality"].isna().all()
        hard = pd.read_csv(work / "runs" / name / "reports" / "hard_examples.csv")
        assert set(hard["role"]) <= {"positive", "negative"} and len(hard) > 0
        assert (work / "runs" / name / "reports" / "label_issues.csv").is_file()
        confusion = pd.read_csv(work / "runs" / name / "plots" / "oof_confusion.csv")
        assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) > 0
        curated = pd.read_parquet(work / "runs" / name / "curated.parquet")
        assert curated["sample_id"].tolist() == scores["sample_id"].tolist()
        assert (curated.loc[clean["excluded"].to_numpy(), "action"] == "exclude").all()
        assert curated.loc[curated["action"].isin(["drop", "exclude"]), "weight"].eq(0).all()
        summary = pd.read_csv(work / "runs" / name / "reports" / "curation_summary.csv")
        assert summary["total"].sum() == len(curated)
        preview = work / "runs" / name / "reports" / "augment_preview.png"
        assert preview.stat().st_size > 10_000
        assert (work / "runs" / name / "model.pt").stat().st_size > 10_000
        evaluation = json.loads(
            (work / "runs" / name / "reports" / "eval_metrics.json").read_text()
        )
        assert (
            evaluation["test_samples"]
            == (
                (curated["split"] == "test")
                & curated["action"].isin(["keep", "relabel", "downweight"])
            ).sum()
        )
        assert (work / "runs" / name / "dvclive" / "plots" / "metrics" / "lr.tsv").is_file()
        page = (work / "runs" / name / "reports" / "report.html").read_text()
        assert page.count("issue-card label-issue") == min(
            200, len(pd.read_csv(work / "runs" / name / "reports" / "label_issues.csv"))
        )
    _check_detection_run(work / "runs" / "shapes_det")
    _check_detection_run(work / "runs" / "shapes_inst", masks=True)
    assert (work / "dvc.lock").is_file()

    second = dvc(work, "repro")
    assert second.returncode == 0
    assert "didn't change, skipping" in second.stdout

    # One dataset's own recipe re-runs that dataset's score (and what follows) and nothing else.
    settings["datasets"]["shapes_cls"]["score"] = {"image_size": 16}
    (work / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    third = dvc(work, "repro")
    assert third.returncode == 0, third.stderr + third.stdout
    ran = {line.split("'")[1] for line in third.stdout.splitlines() if "Running stage" in line}
    assert "score@shapes_cls" in ran
    assert not {"ingest@shapes_cls", "clean@shapes_cls"} & ran
    assert not {s for s in ran if s.endswith("@shapes_seg") and not s.startswith("resolve@")}
    metrics = dvc(work, "metrics", "show", "--json")
    assert metrics.returncode == 0 and '"excluded"' in metrics.stdout
    assert '"oof_accuracy"' in metrics.stdout and '"oof_miou"' in metrics.stdout
    assert "failed to load" not in (metrics.stderr + metrics.stdout).lower()  # numbers only

    # A reviewer's decision overrides the policy: export the sheet, decide, re-run.
    exported = run([sys.executable, "-m", "datapipe.cli", "review", "export",
                    "--dataset", "shapes_cls"], work)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    sheet_path = work / "reviews" / "shapes_cls.csv"
    sheet = pd.read_csv(sheet_path, dtype=str, keep_default_na=False)
    assert len(sheet) == len(pd.read_csv(work / "runs/shapes_cls/reports/label_issues.csv"))
    sheet.loc[0, "decision"] = "drop"
    sheet.to_csv(sheet_path, index=False)
    reviewed = dvc(work, "repro", "curate@shapes_cls")
    assert reviewed.returncode == 0, reviewed.stderr
    curated = pd.read_parquet(work / "runs/shapes_cls/curated.parquet").set_index("sample_id")
    assert curated.loc[sheet.loc[0, "sample_id"], ["action", "source"]].tolist() == [
        "drop", "review",
    ]  # fmt: skip
    sheet.loc[1, "decision"] = "relabel"
    sheet.loc[1, "label"] = "unicorn"
    sheet.to_csv(sheet_path, index=False)
    bad = dvc(work, "repro", "curate@shapes_cls")
    assert bad.returncode != 0 and "row 3: unknown class 'unicorn'" in bad.stderr + bad.stdout

    # A typo in params.yaml fails the stage with a message naming the key.
    params = work / "params.yaml"
    params.write_text(
        params.read_text().replace("task: segmentation", "task: segmentation\n    bit_dept: 12")
    )
    typo = dvc(work, "repro", "ingest")
    assert typo.returncode != 0
    assert "datasets.shapes_seg.bit_dept: unknown key" in typo.stderr + typo.stdout


def _check_detection_run(run: Path, *, masks: bool = False) -> None:
    """The object outputs of every stage on the sample detection set (one epoch: the wiring,
    not the model, is under test); with ``masks``, its instance segmentation."""
    objects = pd.read_parquet(run / "objects.parquet")
    coco = json.loads((run.parents[1] / "sample_data/shapes_det/annotations.json").read_text())
    assert len(objects) == len(coco["annotations"])
    issues = pd.read_csv(run / "reports" / "data_issues.csv", dtype={"object_id": str})
    for check in ("box_outside", "box_degenerate", "duplicate_box", "image_missing"):
        assert (issues["check"] == check).sum() >= 1, check
    scores = pd.read_parquet(run / "scores.parquet")
    assert scores.loc[scores["scored"], "label_quality"].between(0, 1).all()
    assert scores.loc[scores["scored"], "n_objects"].sum() > 0
    flagged = pd.read_csv(run / "reports" / "label_issues.csv", dtype={"object_id": str})
    assert set(flagged["issue"]) <= {"wrong_class", "mislocated", "missing", "mask_mismatch"}
    if masks:
        assert (issues["check"] == "mask_box_mismatch").sum() >= 1
    hard = pd.read_csv(run / "reports" / "hard_examples.csv", dtype={"object_id": str})
    assert set(hard["role"]) <= {"hard_positive", "easy_positive", "hard_negative"}
    curated = pd.read_parquet(run / "curated_objects.parquet")
    assert len(curated) >= len(objects)
    excluded = set(curated.loc[curated["action"] == "exclude", "object_id"])
    outside = issues.loc[issues["check"].isin(["box_outside", "box_degenerate"]), "object_id"]
    assert set(outside) <= excluded
    evaluation = json.loads((run / "reports" / "eval_metrics.json").read_text())
    for key in ("map", "map_50", "map_75", "mar_100", "mar_max", "map_per_class"):
        assert key in evaluation, key
    assert 0 <= evaluation["map_50"] <= 1 and evaluation["test_objects"] > 0
    if masks:  # mask AP / AR beside the box metrics
        assert 0 <= evaluation["mask_map_50"] <= 1 and "mask_mar_max" in evaluation
    page = (run / "reports" / "report.html").read_text()
    assert page.count("issue-card label-issue") == min(200, len(flagged))
    assert all(name in page for name in evaluation["map_per_class"])
