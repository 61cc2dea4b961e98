"""The committed dvc.lock matches the code, params and sample data it records: otherwise a
fresh `make repro` re-runs stages that nothing changed for, and rewrites the lock.

Regenerate it with `make repro` (then commit dvc.lock)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.dvc_harness import CODE, REPO, SAMPLE_DATA, copy_repo, dvc, output


def stale_entries(status: dict[str, list[str | dict[str, dict[str, str]]]]) -> list[str]:
    """``stage: path state`` for every dependency outside runs/ that ``dvc status --json``
    finds changed since dvc.lock, and ``stage: why`` for a stage changed as a whole (its
    command, or not in the lock). Pipeline outputs (runs/) may be missing: a clean checkout
    has none."""
    found = []
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):
                found.append(f"{stage}: {entry}")
                continue
            for path, state in entry.get("changed deps", {}).items():
                if not path.startswith("runs/"):
                    found.append(f"{stage}: {path} {state}")
    return found


def test_stale_entries_ignore_missing_pipeline_outputs_only() -> None:
    status = {
        "clean@a": [
            {"changed deps": {"runs/a/manifest.parquet": "deleted", "datapipe/io": "modified"}},
            {"changed outs": {"runs/a/clean_manifest.parquet": "not in cache"}},
        ],
        "new@a": ["changed command"],
    }
    assert stale_entries(status) == ["clean@a: datapipe/io modified", "new@a: changed command"]


def test_dvc_lock_matches_the_working_tree(tmp_path: Path) -> None:
    if not (REPO / "dvc.lock").is_file():
        pytest.skip("no dvc.lock in the checkout: run `make repro` to create it, then commit it")
    work = copy_repo(tmp_path / "repo", names=(*CODE, *SAMPLE_DATA, "dvc.lock"))
    shutil.rmtree(work / ".dvc" / "cache", ignore_errors=True)
    result = dvc(work, "status", "--json")
    assert result.returncode == 0, output(result)
    stale = stale_entries(json.loads(result.stdout or "{}"))
    assert not stale, "dvc.lock is stale (run `make repro`, commit dvc.lock):\n" + "\n".join(stale)
