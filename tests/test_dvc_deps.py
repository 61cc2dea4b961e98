"""Every stage in dvc.yaml lists the code it runs, so a change to it re-runs the stage.

A stage's code is ``stages/<stage>.py`` and every project module it imports at module level,
transitively (``datapipe.tasks`` dispatches to task code with imports inside its methods;
those targets are imported at module level by the stages that call them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("datapipe", "stages")


def _module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _imports(path: Path) -> set[str]:
    """Project modules ``path`` imports at module level (a package's ``__init__`` included)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES and _module_file(name) is not None:
                parts = name.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {n for n in found if _module_file(n) is not None}


def closure(module: str) -> set[Path]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        file = _module_file(name)
        assert file is not None, name
        todo.extend(_imports(file) - seen)
    files = {_module_file(n) for n in seen}
    return {f.relative_to(ROOT) for f in files if f is not None and f.name != "__init__.py"} | {
        f.relative_to(ROOT) for f in files if f is not None and f.parent.name not in PACKAGES
    }


def _stages() -> dict[str, list[str]]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: [str(d).split(":")[0] for d in s["do"]["deps"]] for name, s in spec.items()}


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_deps_cover_the_code_it_imports(stage: str) -> None:
    deps = [Path(d) for d in _stages()[stage] if not d.startswith(("$", "runs"))]
    uncovered = sorted(
        str(f)
        for f in closure(f"stages.{stage}")
        if not any(f == d or d in f.parents for d in deps)
    )
    assert not uncovered, f"dvc.yaml stage {stage} misses deps: {uncovered}"


def test_closure_follows_imports() -> None:
    """The closure itself: the score stage reaches the training loop through scoring.oof."""
    files = closure("stages.score")
    assert Path("datapipe/loop.py") in files
    assert Path("datapipe/tasks/segmentation.py") in files
    assert Path("datapipe/report/html.py") not in files
