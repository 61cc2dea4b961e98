"""Run the pipeline through DVC in a temporary copy of the repository (tests and benchmarks).

work = copy_repo(tmp_path / "repo")                       # code, params, .dvc; a git repo
set_params(work, {"score": {"classification": {"epochs": 1}}})
result = dvc(work, "repro", "score@digits")
assert result.returncode == 0, output(result)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
#: what a run of the pipeline needs from the checkout
CODE = ("datapipe", "stages", "reviews", ".dvc", "dvc.yaml", "params.yaml", ".dvcignore")
SAMPLE_DATA = ("sample_data",)


def run(
    args: Sequence[str],
    cwd: Path,
    *,
    timeout: float = 600,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``args`` in ``cwd`` with this interpreter's environment first on PATH (the stages run
    ``python -m stages.<name>``), DVC analytics off, plus ``env``; never raises on a non-zero
    exit."""
    full = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        **(env or {}),
    }
    return subprocess.run(
        list(args), cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout, check=False
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    """stderr then stdout: what an assertion message should show."""
    return result.stderr + result.stdout


def copy_repo(
    work: Path, *, names: Sequence[str] = CODE + SAMPLE_DATA, ref: str | None = None
) -> Path:
    """A fresh git repository at ``work`` holding a copy of ``names`` from the checkout's
    working tree (or, with ``ref``, from that commit: a snapshot others' uncommitted edits do
    not reach), with one empty commit (DVC needs a git repository with a HEAD)."""
    work.mkdir(parents=True)
    if ref is not None:
        present = run(["git", "ls-tree", "--name-only", ref, *names], REPO).stdout.split()
        archive = subprocess.run(
            ["git", "archive", "--format=tar", ref, *present],
            cwd=REPO, capture_output=True, check=True,
        )  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive.stdout, check=True)
    for name in names if ref is None else ():
        src = REPO / name
        if src.is_dir():
            shutil.copytree(
                src, work / name, ignore=shutil.ignore_patterns("__pycache__", "cache", "tmp")
            )
        elif src.exists():
            shutil.copy2(src, work / name)
    git_id = ["-c", "user.name=datapipe-test", "-c", "user.email=test@example.invalid"]
    for args in (
        ["git", "init", "-q"],
        ["git", *git_id, "commit", "-q", "--allow-empty", "-m", "start"],
    ):
        result = run(args, work)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed in {work}: {output(result)}")
    return work


def read_params(work: Path) -> dict[str, Any]:
    return yaml.safe_load((work / "params.yaml").read_text())


def set_params(work: Path, updates: Mapping[str, Any], *, replace: Sequence[str] = ()) -> None:
    """Merge ``updates`` into ``work/params.yaml`` (nested mappings merge key by key); the
    top-level keys in ``replace`` are replaced whole instead (e.g. ``datasets``)."""
    params = read_params(work)
    for key, value in updates.items():
        if key in replace:
            params[key] = value
        else:
            params[key] = _merge(params.get(key), value)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _merge(old: Any, new: Any) -> Any:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = dict(old)
        for key, value in new.items():
            out[key] = _merge(old.get(key), value)
        return out
    return new


def dvc(
    work: Path, *args: str, timeout: float = 600, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``dvc <args>`` in ``work`` through this interpreter (``env`` added to the environment)."""
    return run([sys.executable, "-m", "dvc", *args], work, timeout=timeout, env=env)


#: one torch / BLAS thread per stage: on a shared 2-core machine two threads trained several
#: times slower (bench/label_noise.py)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
