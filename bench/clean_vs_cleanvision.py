"""Ingest + clean against CleanVision on the same folder of real photo crops: CPU, memory, finds.

    .venv/bin/python bench/clean_vs_cleanvision.py [--crops 1000] [--rounds 3] [--seed 0]

CleanVision is not a dependency: ``.venv/bin/pip install cleanvision`` for this bench only (it
exits with a message when CleanVision is absent).

The folder: ``--crops`` crops (64-256 px) of the 14 everyday photos of ``skimage.data``, as
``bench/clean_calibration.py`` cuts them, one class folder per source photo, written as 8-bit
RGB PNG; planted among them (each from a fresh crop): 20 darkened, 20 brightened, 20 blurred,
10 blank and 10 near-constant copies (calibration's recipes), 10 exact copies (the same file
under another name) and 10 near copies (5 brightened by 10%, 5 downscaled to 90%).

Both sides run as fresh processes, as a user runs them, in interleaved rounds: ours are
``python -m stages.ingest`` and ``python -m stages.clean`` (the real stages, ``workers: auto``)
in a temporary project, CleanVision is ``Imagelab(data_path=...).find_issues()`` (its default
``n_jobs``). CPU seconds are user + sys of the whole process tree: this process is a child
subreaper, so the fork server and the pool workers of ours and CleanVision's pool are reaped
here and counted. Peak memory, sampled every 10 ms: the largest single process's RSS and the
largest summed RSS of the tree (an upper bound: shared pages are counted per process).
Goal: ours <= 1.0x CleanVision's CPU while finding what it finds.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.clean_calibration import PHOTOS, PLANTS, _crop, _sources
from bench.stage_startup import _tree_rss

REPO = Path(__file__).resolve().parents[1]
Rng = np.random.Generator

_CLEANVISION = """
import sys
from cleanvision import Imagelab
lab = Imagelab(data_path=sys.argv[1], verbose=False)
lab.find_issues(verbose=False)
if len(sys.argv) > 2:
    lab.issues.to_csv(sys.argv[2])
"""

#: issue kind -> (CleanVision's issue type, our checks); what each side counts as that kind
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dark": ("dark", ("dark",)),
    "light / bright": ("light", ("bright",)),
    "blurry": ("blurry", ("blurry",)),
    "low information (blank, near-constant)": ("low_information", ("low_information", "blank")),
    "exact duplicates": ("exact_duplicates", ("exact_duplicate",)),
    "near duplicates": ("near_duplicates", ("near_duplicate",)),
    "odd size / aspect ratio": ("odd_aspect_ratio", ("odd_size",)),
    "odd size (CleanVision)": ("odd_size", ()),
    "grayscale": ("grayscale", ()),
    "saturated (ours)": ("", ("saturated",)),
}
#: planted kind -> the issue kind (row of :data:`KINDS`) that should find it
PLANTED_AS = {
    "dark": "dark",
    "bright": "light / bright",
    "blurred": "blurry",
    "blank": "low information (blank, near-constant)",
    "near_constant": "low information (blank, near-constant)",
    "exact": "exact duplicates",
    "near": "near duplicates",
}


def _near(img: np.ndarray, rng: Rng, i: int) -> np.ndarray:
    if i % 2 == 0:
        return np.clip(np.round(img * 1.1), 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    return cv2.resize(img, (round(0.9 * w), round(0.9 * h)), interpolation=cv2.INTER_AREA)


def build_folder(root: Path, crops: int, seed: int) -> dict[str, str]:
    """Write the photo folder under ``root``; returns planted file (relative) -> kind."""
    sources = _sources()
    rng = np.random.default_rng(seed)
    planted: dict[str, str] = {}

    def write(source: str, name: str, img: np.ndarray) -> str:
        rel = f"{source}/{name}.png"
        (root / source).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img[..., ::-1])
        return rel

    names = (PHOTOS * crops)[:crops]
    written = [write(s, f"crop_{i:04d}", _crop(sources[s], rng)) for i, s in enumerate(names)]
    for kind, (make, count, _) in PLANTS.items():
        if kind == "saturated":  # CleanVision has no such check; ours is tested elsewhere
            continue
        for i in range(count):
            source = PHOTOS[int(rng.integers(len(PHOTOS)))]
            img, _ = make(_crop(sources[source], rng), rng)
            planted[write(source, f"{kind}_{i:02d}", img)] = kind
    for i in range(10):
        original = written[int(rng.integers(len(written)))]
        copy = original.replace("crop_", f"exact_{i:02d}_of_")
        shutil.copyfile(root / original, root / copy)
        planted[copy] = "exact"
        source = PHOTOS[int(rng.integers(len(PHOTOS)))]
        img = _crop(sources[source], rng)
        write(source, f"near_{i:02d}_a", img)
        planted[write(source, f"near_{i:02d}_b", _near(img, rng, i))] = "near"
    return planted


def _subreaper() -> None:
    """Become the reaper of orphaned descendants (Linux), so their CPU time reaches us."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _reap_all(timeout: float = 10.0) -> None:
    """Wait for every descendant left (fork servers, resource trackers) to exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


def run_tree(commands: list[list[str]], cwd: Path) -> dict[str, float]:
    """Run ``commands`` one after another; CPU s of all their descendants, wall s, peaks MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    tree_peak = single_peak = 0.0
    for command in commands:
        proc = subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        stop, peak = threading.Event(), [0.0, 0.0]
        watcher = threading.Thread(target=_tree_rss, args=(proc.pid, stop, peak), daemon=True)
        watcher.start()
        _, err = proc.communicate()
        stop.set()
        watcher.join()
        if proc.returncode != 0:
            raise RuntimeError(f"{command} failed ({proc.returncode}):\n{err.decode()[-2000:]}")
        tree_peak, single_peak = max(tree_peak, peak[0]), max(single_peak, peak[1])
        _reap_all()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "wall": wall,
        "rss": single_peak,
        "tree": tree_peak,
    }


def ours(project: Path) -> list[list[str]]:
    return [
        [sys.executable, "-m", f"stages.{stage}", "--dataset", "photos"]
        for stage in ("ingest", "clean")
    ]


def cleanvision(folder: Path, out: Path | None = None) -> list[list[str]]:
    return [[sys.executable, "-c", _CLEANVISION, str(folder), *([str(out)] if out else [])]]


def _finds(
    project: Path, folder: Path, planted: dict[str, str], cv_csv: Path
) -> list[tuple[str, ...]]:
    """Per issue kind: planted count; per side 'planted found / all flagged'; and how many of
    CleanVision's flags ours flags too. Ours counts every severity (an exact duplicate's kept
    copy is an ``info`` row, as CleanVision flags both copies)."""
    issues = pd.read_csv(project / "runs" / "photos" / "reports" / "data_issues.csv")
    cv = pd.read_csv(cv_csv, index_col=0)
    cv.index = [str(Path(p).relative_to(folder.resolve())) for p in cv.index]
    rows = []
    for kind, (cv_type, checks) in KINDS.items():
        targets = {f for f, k in planted.items() if PLANTED_AS[k] == kind}
        ours_flagged = set(issues.loc[issues["check"].isin(checks), "image"]) if checks else None
        column = f"is_{cv_type}_issue"
        cv_flagged = set(cv.index[cv[column]]) if cv_type and column in cv else None

        def cell(flagged: set[str] | None, targets: set[str] = targets) -> str:
            if flagged is None:
                return "–"
            if not targets:
                return f"{len(flagged)}"
            return f"{len(flagged & targets)} / {len(flagged)}"

        both, only = "–", "–"
        if cv_flagged is not None and ours_flagged is not None:
            hit = targets & cv_flagged
            both = f"{len(cv_flagged & ours_flagged)} / {len(cv_flagged)}"
            both += f" (planted {len(hit & ours_flagged)} / {len(hit)})" if targets else ""
            sources = Counter(f.split("/")[0] for f in cv_flagged - ours_flagged - targets)
            only = ", ".join(f"{s} {n}" for s, n in sources.most_common()) or "–"
        count = str(len(targets)) if targets else "–"
        rows.append((kind, count, cell(cv_flagged), cell(ours_flagged), both, only))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if importlib.util.find_spec("cleanvision") is None:
        print("CleanVision is not installed: `.venv/bin/pip install cleanvision` to run this bench")
        return
    _subreaper()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        folder = project / "photos"
        planted = build_folder(folder, args.crops, args.seed)
        (project / "params.yaml").write_text(
            "datasets:\n  photos:\n    root: photos\n    task: classification\n"
        )
        n = sum(1 for _ in folder.rglob("*.png"))
        sides: dict[str, Callable[[], list[list[str]]]] = {
            "ours": lambda: ours(project),
            "cleanvision": lambda: cleanvision(folder),
        }
        run_tree(ours(project), project)  # warm-up: page cache, .pyc files
        run_tree(cleanvision(folder, project / "cleanvision.csv"), project)
        found: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
        for r in range(args.rounds):
            for key in list(sides)[:: 1 if r % 2 == 0 else -1]:
                found[key].append(run_tree(sides[key](), project))
        finds = _finds(project, folder, planted, project / "cleanvision.csv")
    ratios = [o["cpu"] / c["cpu"] for o, c in zip(found["ours"], found["cleanvision"], strict=True)]
    print(
        f"\n{n} PNG files, {args.rounds} interleaved rounds, medians; {os.cpu_count()} cores "
        f"(shared: load average {os.getloadavg()[0]:.1f})\n"
    )
    print("| side | CPU s | wall s | peak RSS MB (largest process) | peak RSS MB (tree) |")
    print("|---|---|---|---|---|")
    for key, label in (("ours", "ingest + clean"), ("cleanvision", "CleanVision")):
        med = {k: statistics.median(r[k] for r in found[key]) for k in found[key][0]}
        print(
            f"| {label} | {med['cpu']:.1f} | {med['wall']:.1f} | {med['rss']:.0f} | "
            f"{med['tree']:.0f} |"
        )
    print(
        f"\nours / CleanVision CPU: {statistics.median(ratios):.2f}x "
        f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}); goal <= 1.0x\n"
    )
    print(
        "| issue kind | planted | CleanVision: planted found / flagged | ours: planted found / "
        "flagged | CleanVision's flags ours flags too | unplanted CleanVision-only flags, by "
        "source photo |"
    )
    print("|---|---|---|---|---|---|")
    for row in finds:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
