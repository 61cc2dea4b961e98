"""The comparison with the previous run.

``runs/`` is not in git and DVC deletes a stage's outputs before running it, so the report
keeps its own history next to them (``report_history.jsonl``, not a DVC output): one line of
key numbers per distinct state. A report whose numbers equal the last line's (only the report
code changed) appends nothing and compares with the line before, so "previous" is always the
last run that differed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from datapipe.report.charts import esc, note, table
from datapipe.report.inputs import METRIC_FILES, ReportInputs, is_number
from datapipe.report.sections import Section

Numbers = dict[str, float]


def key_numbers(inputs: ReportInputs) -> Numbers:
    """Every numeric metric of the run, flattened one level (``clean.by_check.blank``),
    rounded to 6 significant digits so reruns compare equal."""
    numbers: Numbers = {"samples": float(len(inputs.manifest))}
    if inputs.label_issues is not None:
        numbers["label_issues.rows"] = float(len(inputs.label_issues))
    for name in METRIC_FILES:
        for key, value in inputs.metrics.get(name, {}).items():
            if is_number(value):
                numbers[f"{name}.{key}"] = _round(value)
            elif isinstance(value, Mapping):
                for inner, v in value.items():
                    if is_number(v):
                        numbers[f"{name}.{key}.{inner}"] = _round(v)
    return numbers


def _round(value: float) -> float:
    return float(f"{float(value):.6g}")


def read_history(path: Path) -> list[dict[str, Any]]:
    """The history's entries, oldest first; unreadable lines are skipped."""
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("numbers"), dict):
            entries.append(entry)
    return entries


def previous_run(history: list[dict[str, Any]], numbers: Numbers) -> dict[str, Any] | None:
    """The latest entry whose numbers differ from ``numbers``."""
    for entry in reversed(history):
        if entry["numbers"] != numbers:
            return entry
    return None


def is_new(history: list[dict[str, Any]], numbers: Numbers) -> bool:
    """Whether ``numbers`` should be appended (they differ from the last entry)."""
    return not history or history[-1]["numbers"] != numbers


def append_history(path: Path, *, time: str, numbers: Numbers) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"time": time, "numbers": numbers}, sort_keys=True) + "\n")
    return path


def comparison(previous: dict[str, Any] | None, numbers: Numbers) -> Section:
    """The numbers that changed since ``previous``, with their change."""
    title = "Comparison with the previous run"
    if previous is None:
        return Section("comparison", title, note("no previous run to compare with", kind="na"))
    before: Mapping[str, Any] = previous["numbers"]
    keys = list(numbers) + [k for k in before if k not in numbers]
    rows = []
    for key in keys:
        old, new = before.get(key), numbers.get(key)
        if old == new:
            continue
        change = new - old if isinstance(old, int | float) and new is not None else None
        rows.append((key, old, new, change))
    head = note(f"previous run: {esc(previous.get('time', '?'))}", kind="info")
    if not rows:
        return Section("comparison", title, head + note("no number changed", kind="ok"))
    frame = pd.DataFrame(rows, columns=["number", "previous", "now", "change"])
    unchanged = len(keys) - len(rows)
    return Section(
        "comparison",
        title,
        head + table(frame, max_rows=1000) + note(f"{unchanged} numbers unchanged", kind="count"),
    )
