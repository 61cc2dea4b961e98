"""DVC's own workflow on a committed copy of the project: `dvc exp run -S` twice, then
`dvc exp show` compares both runs' metrics, and `dvc metrics show` parses every file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dvc_harness import CODE, ONE_THREAD, SAMPLE_DATA, copy_repo, dvc, output, run

GIT_ID = ["-c", "user.name=datapipe-test", "-c", "user.email=test@example.invalid"]
CLEAN = "runs/shapes_cls/metrics/clean.json"


def _experiments(shown: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every experiment revision's ``data`` in ``dvc exp show --json`` output."""
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for rev in experiment.get("revs", []):
                yield rev["data"]


def _metrics(data: dict[str, Any], path: str) -> dict[str, Any]:
    return ((data.get("metrics") or {}).get(path) or {}).get("data") or {}


@pytest.mark.slow
def test_two_experiments_are_compared_by_dvc_exp_show(tmp_path: Path) -> None:
    work = copy_repo(tmp_path / "repo", names=(*CODE, *SAMPLE_DATA, ".gitignore"))
    for args in (["git", "add", "-A"], ["git", *GIT_ID, "commit", "-q", "-m", "project"]):
        assert run(args, work).returncode == 0  # exp show reads dvc.yaml from the commits
    for z in ("1.5", "3.0"):  # ingest + clean of one dataset: the cheap end of the pipeline
        result = dvc(
            work, "exp", "run", "clean@shapes_cls", "-S", f"clean.z_threshold={z}", env=ONE_THREAD
        )
        assert result.returncode == 0, output(result)
        assert "is empty" not in output(result)

    shown = dvc(work, "exp", "show", "--json")
    assert shown.returncode == 0, output(shown)
    runs = {
        str(data["params"]["params.yaml"]["data"]["clean"]["z_threshold"]): _metrics(data, CLEAN)
        for data in _experiments(json.loads(shown.stdout))
    }
    assert set(runs) == {"1.5", "3.0"}
    for values in runs.values():
        assert {"excluded", "flagged_samples", "duplicate_groups", "leakage_moves"} <= set(values)
    assert runs["1.5"]["flagged_samples"] > runs["3.0"]["flagged_samples"]

    # the stages run so far (later ones' files do not exist yet: DVC says it failed to load)
    metrics = dvc(work, "metrics", "show", "--json", CLEAN)
    assert metrics.returncode == 0, output(metrics)
    assert "failed to load" not in output(metrics).lower()
    [workspace] = json.loads(metrics.stdout).values()  # one revision: the workspace ("")
    shown_files = workspace["data"]
    assert shown_files[CLEAN]["data"] == runs["3.0"]  # the last run is the workspace
