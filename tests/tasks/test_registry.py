"""The task registry: complete modules only, one literal, and no task names outside tasks/."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from datapipe import tasks
from datapipe.runs import RunStats
from datapipe.tasks import TASKS, Task, TaskModule, register
from datapipe.tasks.classification import Classification

ROOT = Path(__file__).resolve().parents[2]


def test_the_literal_and_the_registry_name_the_same_tasks() -> None:
    assert (
        set(get_args(Task))
        == set(TASKS)
        == {
            "classification",
            "segmentation",
            "detection",
            "instance_segmentation",
        }
    )
    assert all(TASKS[name].name == name for name in TASKS)


def test_a_module_missing_a_method_is_refused_at_registration() -> None:
    class NoMetrics(TaskModule):
        name = "no_metrics"
        layouts = ("folders",)
        models = ("auto",)
        image_labels = True
        dense = False
        headline = "accuracy"
        label_issue_action = "relabel"

        def recipe_problems(self, recipe):  # type: ignore[no-untyped-def]
            return []

    with pytest.raises(TypeError, match=r"NoMetrics does not implement.*'metrics'"):
        register(NoMetrics)


def test_a_module_missing_an_attribute_is_refused_at_registration() -> None:
    class NoHeadline(TaskModule):  # every method, one class attribute short
        name = "no_headline"
        layouts = ("folders",)
        models = ("auto",)
        image_labels = True
        dense = False
        label_issue_action = "relabel"

    for method in sorted(NoHeadline.__abstractmethods__):
        setattr(NoHeadline, method, getattr(Classification, method))
    NoHeadline.__abstractmethods__ = frozenset()
    assert NoHeadline.missing() == ["headline"]
    with pytest.raises(TypeError, match=r"NoHeadline does not implement \['headline'\]"):
        register(NoHeadline)


def test_get_names_the_known_tasks_for_an_unknown_one() -> None:
    with pytest.raises(KeyError, match=r"unknown task 'keypoints'; known: \['classification'"):
        tasks.get("keypoints")
    assert tasks.get(TASKS["segmentation"]) is TASKS["segmentation"]


def test_every_layout_belongs_to_its_tasks_and_only_object_tasks_share() -> None:
    for name, module in TASKS.items():
        for layout in module.layouts:
            owners = tasks.of_layout(layout)
            assert module in owners
            assert len(owners) == 1 or all(t.objects for t in owners), (layout, name)
    assert [t.name for t in tasks.of_layout("coco")] == ["detection", "instance_segmentation"]
    with pytest.raises(KeyError, match="unknown layout 'zarr'"):
        tasks.of_layout("zarr")


def test_class_counts_per_task() -> None:
    labels = np.array([0, 2, 2, -1])
    names = ["a", "b", "c"]
    stats = RunStats(task="segmentation", channels=1, mean=[0.5], std=[0.2], classes=names,
                     pixel_counts={"a": 7, "c": 3})  # fmt: skip
    assert TASKS["classification"].class_counts(labels, stats, names).tolist() == [1.0, 0.0, 2.0]
    assert TASKS["segmentation"].class_counts(labels, stats, names).tolist() == [7.0, 0.0, 3.0]


def _task_name_literals(path: Path) -> list[int]:
    """Lines of ``path`` where a task name is compared (``==``, ``in``, a ``match`` case) or
    keys a mapping: code asking which task it is. A data field that happens to share the
    name (COCO's ``"segmentation"`` polygons) is not such a use."""
    names = set(TASKS)
    tree = ast.parse(path.read_text())
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def asks(node: ast.AST) -> bool:
        parent = parents.get(id(node))
        if isinstance(parent, ast.Tuple | ast.List | ast.Set):  # x in ("a", "b")
            node, parent = parent, parents.get(id(parent))
        if isinstance(parent, ast.Compare | ast.MatchValue):
            return True
        return isinstance(parent, ast.Dict) and any(k is node for k in parent.keys)

    return sorted(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in names and asks(node)
    )


def test_no_code_outside_tasks_names_a_task() -> None:
    """Outside datapipe/tasks/, code asks the task's module, never compares its name."""
    found = {
        str(path.relative_to(ROOT)): lines
        for folder in ("datapipe", "stages")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "tasks" not in path.relative_to(ROOT).parts and (lines := _task_name_literals(path))
    }
    assert found == {}


def test_the_literal_finder_finds_comparisons_and_keys_only(tmp_path: Path) -> None:
    code = tmp_path / "m.py"
    code.write_text(
        '"""about segmentation"""\nx = {"a": 1}\nif x == "segmentation":\n    pass\n'
        'y = x in ("classification", "z")\nREADME = {"segmentation": 1}\n'
        'polygons = x.get("segmentation")\nmatch x:\n    case "classification":\n        pass\n'
    )
    assert _task_name_literals(code) == [3, 5, 6, 9]


def test_stage_modules_stay_thin() -> None:
    """A stage reads its inputs, calls the library, writes its outputs: at most 60 lines."""
    long = {
        p.name: n
        for p in sorted((ROOT / "stages").glob("*.py"))
        if p.name != "common.py" and (n := len(p.read_text().splitlines())) > 60
    }
    assert long == {}


def test_long_functions_say_why() -> None:
    """No function over 60 lines without a reason in its docstring ("long ...")."""
    unexplained = []
    for path in sorted((ROOT / "datapipe").rglob("*.py")) + sorted((ROOT / "stages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                doc = (ast.get_docstring(node) or "").lower()
                if length > 60 and "long" not in doc:
                    unexplained.append(f"{path.relative_to(ROOT)}:{node.name} ({length} lines)")
    assert unexplained == []
