"""The comparison with the previous run: key numbers, the history file, the stage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from datapipe.report.history import (
    append_history,
    comparison,
    is_new,
    key_numbers,
    previous_run,
    read_history,
)
from datapipe.report.inputs import load_inputs
from stages import report as report_stage
from tests.report.conftest import Page, SyntheticRun


def test_key_numbers_flatten_metrics_one_level(cls_run: SyntheticRun) -> None:
    numbers = key_numbers(load_inputs(cls_run.files, name=cls_run.name))
    assert numbers["samples"] == 40
    assert numbers["clean.flagged_samples"] == 6
    assert numbers["clean.by_check.dark"] == 6
    assert numbers["score.oof_accuracy"] == 0.9
    assert numbers["label_issues.rows"] == 5


def test_previous_run_is_the_last_entry_that_differs() -> None:
    history = [{"time": "t1", "numbers": {"a": 1.0}}, {"time": "t2", "numbers": {"a": 2.0}}]
    assert previous_run(history, {"a": 3.0})["time"] == "t2"
    assert previous_run(history, {"a": 2.0})["time"] == "t1"  # a rerun compares further back
    assert previous_run([], {"a": 1.0}) is None
    assert is_new(history, {"a": 3.0}) and not is_new(history, {"a": 2.0})


def test_history_round_trip_skips_broken_lines(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    append_history(path, time="t1", numbers={"a": 1.0})
    with path.open("a") as f:
        f.write("not json\n")
    append_history(path, time="t2", numbers={"a": 2.0, "b": 1.0})
    assert [e["time"] for e in read_history(path)] == ["t1", "t2"]


def test_comparison_lists_changed_numbers_with_their_change() -> None:
    previous = {"time": "t1", "numbers": {"a": 1.0, "b": 5.0, "gone": 2.0}}
    section = comparison(previous, {"a": 1.5, "b": 5.0, "new": 3.0})
    rows = re.findall(r"<tr><td>([a-z]+)</td>(.*?)</tr>", section.body)
    assert [name for name, _ in rows] == ["a", "new", "gone"]
    assert '<td class="num">0.5</td>' in rows[0][1]
    assert "1 numbers unchanged" in section.body


def _params(tmp_path: Path, run: SyntheticRun) -> Path:
    path = tmp_path / "params.yaml"
    datasets = {run.name: {"root": str(run.root), "task": run.task}}
    path.write_text(yaml.safe_dump({"datasets": datasets, "report": {"max_cards": 3}}))
    return path


def test_stage_writes_the_page_and_compares_with_the_previous_run(
    tmp_path: Path, cls_run: SyntheticRun
) -> None:
    argv = ["--dataset", cls_run.name, "--params", str(_params(tmp_path, cls_run)),
            "--runs", str(cls_run.run.parent)]  # fmt: skip
    assert report_stage.main(argv) == 0
    html = (cls_run.run / "reports" / "report.html").read_text()
    assert Page(html).count("issue-card", "data-issue") == 3  # report.max_cards from params
    assert "no previous run to compare with" in html
    assert report_stage.main(argv) == 0  # nothing changed: no new history line
    assert len(read_history(cls_run.files.history)) == 1
    score = cls_run.run / "metrics" / "score.json"
    score.write_text(json.dumps({"label_issues": 5, "oof_accuracy": 0.95}))
    assert report_stage.main(argv) == 0
    html = (cls_run.run / "reports" / "report.html").read_text()
    assert re.search(r"<td>score.oof_accuracy</td><td class=\"num\">0.9</td>"
                     r"<td class=\"num\">0.95</td><td class=\"num\">0.05</td>", html)  # fmt: skip
    assert len(read_history(cls_run.files.history)) == 2
