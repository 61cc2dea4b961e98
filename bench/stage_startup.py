"""Fixed start-up cost of the ingest and clean stages: a 10-image dataset, whole processes.

    .venv/bin/python bench/stage_startup.py [--rounds 5] [--images 10]

Builds a two-class folder dataset of ``--images`` 64² PNGs and a ``params.yaml`` in a temporary
folder, then runs ``python -m stages.ingest --dataset tiny`` and ``python -m stages.clean
--dataset tiny`` there as subprocesses, ``--rounds`` times, interleaved. With so few images the
work is nothing: what is measured is what every run pays (interpreter, imports, params, the
worker pool, writing the outputs). Printed per stage: wall seconds and CPU seconds (user + sys
of the stage and the children it waited for), the stage process's peak RSS (``wait4``), and the
peak summed RSS of its whole process tree (forkserver and pool workers too, sampled every 10 ms
with psutil; shared pages counted once per process, so an upper bound). One more run per stage
reports which heavy modules the stage process imported. Goal: under 1.5 s and 250 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "albumentations", "cleanlab", "dvclive", "matplotlib")
STAGES = ("ingest", "clean")
GOAL_S, GOAL_MB = 1.5, 250.0
#: Runs a stage module as ``python -m`` would, then prints the heavy modules it imported.
_PROBE = (
    "import runpy, sys; sys.argv = ['stages.{stage}', '--dataset', 'tiny']\n"
    "try:\n    runpy.run_module('stages.{stage}', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "print('HEAVY', sorted(set({heavy}) & set(sys.modules)))\n"
)


def make_dataset(root: Path, images: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / "data" / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 256, (64, 64, 3), np.uint8))
    (root / "params.yaml").write_text(
        "datasets:\n  tiny:\n    root: data\n    task: classification\n    folds: 2\n"
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _tree_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    """Sample the RSS of ``pid`` and its descendants every 10 ms until ``stop``: ``peak[0]``
    becomes the largest sum (MB), ``peak[1]`` the largest single process."""
    import psutil

    try:
        proc = psutil.Process(pid)
        while not stop.is_set():
            sizes = [0]
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    sizes.append(p.memory_info().rss)
            peak[0] = max(peak[0], sum(sizes) / 2**20)
            peak[1] = max(peak[1], max(sizes) / 2**20)
            time.sleep(0.01)
    except psutil.Error:
        pass


def run_stage(stage: str, cwd: Path) -> dict[str, float]:
    """One stage run: wall s, CPU s, the stage process's peak RSS MB, the tree's peak RSS MB."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"stages.{stage}", "--dataset", "tiny"],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stop, peak = threading.Event(), [0.0, 0.0]
    watcher = threading.Thread(target=_tree_rss, args=(proc.pid, stop, peak), daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stop.set()
    watcher.join()
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"stages.{stage} failed ({proc.returncode}):\n{err}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss / 1024,
        "tree": peak[0],
    }


def heavy_imports(stage: str, cwd: Path) -> str:
    code = _PROBE.format(stage=stage, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=_env(), capture_output=True, text=True
    )
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY")]
    return line[-1].removeprefix("HEAVY ") if line else f"probe failed: {out.stderr[-300:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dataset(root, args.images)
        run_stage("ingest", root)  # warm the page cache; clean needs ingest's outputs
        found: dict[str, list[dict[str, float]]] = {s: [] for s in STAGES}
        for _ in range(args.rounds):
            for stage in STAGES:
                found[stage].append(run_stage(stage, root))
        heavy = {s: heavy_imports(s, root) for s in STAGES}
    print(
        f"\n{args.images} images, {args.rounds} rounds, median (max); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(
        "| stage | wall s | CPU s | peak RSS MB (stage) | peak RSS MB (tree) | heavy modules "
        "imported | goal < 1.5 s, < 250 MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for stage in STAGES:
        runs = found[stage]

        def cell(key: str, fmt: str, runs: list[dict[str, float]] = runs) -> str:
            values = [r[key] for r in runs]
            return f"{statistics.median(values):{fmt}} ({max(values):{fmt}})"

        wall = statistics.median(r["wall"] for r in runs)
        rss = statistics.median(r["rss"] for r in runs)
        met = "met" if wall < GOAL_S and rss < GOAL_MB else "not met"
        print(
            f"| {stage} | {cell('wall', '.2f')} | {cell('cpu', '.2f')} | {cell('rss', '.0f')} | "
            f"{cell('tree', '.0f')} | {heavy[stage] or 'none'} | {met} |"
        )


if __name__ == "__main__":
    main()
