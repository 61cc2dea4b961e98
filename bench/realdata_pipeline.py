"""Real data through the whole pipeline: `dvc repro` of ingest, clean and score in a temporary
copy of the repository, on the corpora of tests/realdata_corpora.py (issue 12, section 4).

    .venv/bin/python bench/realdata_pipeline.py            # ~1.5 min on 2 quiet cores
    .venv/bin/python bench/realdata_pipeline.py --quick    # ~4 min, what the test runs: its sizes,
                                                           # only digits_png8 scored
    options: [--ref HEAD (copy the code of a commit, not the working tree)] [--keep DIR]
             [--noise 0.2] [--seed 0] [--epochs 4] [--size 16] [--crops 40] [--planted 10]
             [--no-score-extra (score only digits_png8)]

Corpora: scikit-learn's digits (1,797 images, 20% symmetric label noise planted by moving
files between class folders) as native 8x8 8-bit PNG and as 32x32 16-bit TIFF (12-bit
values); crops of scikit-image's bundled photos (one class per photo) with planted exact
duplicates (TIFF / BMP re-saves), near duplicates (JPEG q85, 1-px shift, +25 brightness) and
dark, blurry and blank copies; ../shared/realdata nucseg_20x 16-bit images with their 8-bit
twins and 0/255 masks (``ignore_index: 254``, so 255 is a class) plus the 3-channel bbbc022
crop. Digits are scored with bench/label_noise.py's recipe (small_cnn, 16 px, 4 epochs, batch
64, lr 0.05, no flips); photos with small_cnn at 32 px, 8 epochs; nucseg with a U-Net at
128 px, 15 epochs, 3 folds.

Prints one Markdown table: dataset, samples, images flagged per check (non-info), planted
problems found, label-issue precision / recall / F1 (digits: against the planted flips;
others: flagged count), leakage moves, largest duplicate group, stage seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.dvc_harness import CODE, ONE_THREAD, REPO, copy_repo, dvc, output, set_params
from tests.realdata_corpora import (
    Corpus,
    build_digits,
    build_microscopy,
    build_photos,
    flags_by_check,
    grouped_with,
    label_issue_prf,
    largest_group,
    planted_found,
    write_planted,
)

REALDATA = REPO.parent / "shared" / "realdata"
_DONE = re.compile(r"^(\w+) (\S+): done in ([\d.]+)s", re.MULTILINE)


def digits_recipe(args: argparse.Namespace) -> dict[str, Any]:
    return {"model": "small_cnn", "image_size": args.size, "epochs": args.epochs,
            "batch_size": 64, "lr": 0.05, "weight_decay": 5e-4, "flip": False}  # fmt: skip


PHOTOS_RECIPE = {"model": "small_cnn", "image_size": 32, "epochs": 8, "batch_size": 32,
                 "lr": 0.05, "flip": True}  # fmt: skip
SEG_RECIPE = {"model": "unet", "image_size": 128, "epochs": 15, "batch_size": 4,
              "optimizer": "adamw", "lr": 0.003, "weight_decay": 0.01}  # fmt: skip


def repro(work: Path, target: str, seconds: dict[str, float]) -> None:
    """`dvc repro target`, adding each stage's own reported seconds to ``seconds``."""
    start = time.perf_counter()
    result = dvc(work, "repro", target, timeout=3600, env=ONE_THREAD)
    if result.returncode != 0:
        raise SystemExit(f"dvc repro {target} failed:\n{output(result)[-4000:]}")
    for stage, dataset, s in _DONE.findall(output(result)):
        seconds[f"{stage}@{dataset}"] = float(s)
    seconds[f"repro {target}"] = time.perf_counter() - start
    print(f"  dvc repro {target}: {seconds[f'repro {target}']:.0f} s", file=sys.stderr, flush=True)


def row(corpus: Corpus, runs: Path, seconds: dict[str, float]) -> dict[str, str]:
    clean = pd.read_parquet(runs / "clean_manifest.parquet")
    issues = pd.read_csv(runs / "reports" / "data_issues.csv")
    metrics = json.loads((runs / "metrics" / "clean.json").read_text())
    flags = ", ".join(f"{c} {n}" for c, n in flags_by_check(issues).items()) or "-"
    planted = corpus.planted
    if corpus.name.startswith("digits"):
        found = "-"
    elif corpus.name == "photos":
        hits = (
            planted_found(issues, planted).groupby("kind", sort=False)["found"].agg(["sum", "size"])
        )
        found = ", ".join(f"{k} {s}/{n}" for k, (s, n) in hits.iterrows())
    else:
        twins = planted[planted["kind"].str.startswith("twin")]
        dup = set(issues.loc[issues["check"].isin(["near_duplicate", "exact_duplicate"]), "image"])
        ok = grouped_with(clean, twins["image"], twins["twin"]) & twins["image"].isin(dup)
        odd = planted.loc[planted["kind"] == "channels", "image"]
        mismatch = set(issues.loc[issues["check"] == "channels_mismatch", "image"])
        found = (
            f"twins {int(ok.sum())}/{len(twins)}, channels {len(set(odd) & mismatch)}/{len(odd)}"
        )
    if (runs / "scores.parquet").is_file():
        scores = pd.read_parquet(runs / "scores.parquet")
        if corpus.name.startswith("digits"):
            m = label_issue_prf(scores, planted)
            issues_cell = (f"{m['precision']:.3f} / {m['recall']:.3f} / **{m['f1']:.3f}** "
                           f"({m['found']} of {m['flipped']} flips, {m['flagged']} flagged, "
                           f"{m['unscored']} unscored)")  # fmt: skip
        else:
            flagged = int(scores["is_label_issue"].fillna(False).astype(bool).sum())
            issues_cell = f"{flagged} flagged of {int(scores['scored'].sum())} scored"
    else:
        issues_cell = "not scored"
    stage_s = " + ".join(
        f"{seconds[k]:.0f}"
        for k in (f"{s}@{corpus.name}" for s in ("ingest", "clean", "score"))
        if k in seconds
    )
    return {
        "dataset": corpus.name,
        "samples": str(len(clean)),
        "flagged by check": flags,
        "planted found": found,
        "label issues P / R / F1": issues_cell,
        "leakage moves": str(metrics["leakage_moves"]),
        "largest group": str(largest_group(clean)),
        "ingest + clean + score s": stage_s or "-",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the test's sizes; score digits only")
    parser.add_argument("--ref", help="copy the code of this commit instead of the working tree")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4, help="digits scoring epochs")
    parser.add_argument("--size", type=int, default=16, help="digits scoring image size")
    parser.add_argument("--crops", type=int, default=40, help="crops per photo")
    parser.add_argument("--planted", type=int, default=10, help="planted photo copies per kind")
    parser.add_argument(
        "--no-score-extra", action="store_true", help="score only digits_png8 (as the test does)"
    )
    args = parser.parse_args()
    if args.quick:
        args.crops, args.planted, args.no_score_extra = 24, 6, True
    if not REALDATA.is_dir():
        raise SystemExit(f"real image data not found at {REALDATA}")
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        start = time.perf_counter()
        corpora = [
            build_digits(base / "data" / "digits_png8", variant="png8", noise=args.noise,
                         seed=args.seed),
            build_digits(base / "data" / "digits_tiff32", variant="tiff32", noise=args.noise,
                         seed=args.seed),
            build_photos(base / "data" / "photos", crops_per_photo=args.crops,
                         planted_per_kind=args.planted, seed=args.seed),
            build_microscopy(base / "data" / "nucseg", REALDATA),
        ]  # fmt: skip
        for corpus in corpora:
            write_planted(corpus, base / "planted")
        print(f"corpora written in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        work = copy_repo(base / "repo", names=CODE, ref=args.ref)
        datasets = {c.name: c.dataset for c in corpora}
        for name in ("digits_png8", "digits_tiff32"):
            datasets[name]["score"] = digits_recipe(args)
        datasets["photos"]["score"] = PHOTOS_RECIPE
        datasets["nucseg"]["score"] = SEG_RECIPE
        set_params(
            work,
            {"datasets": datasets, "score": {"device": "cpu", "loader_workers": 0}},
            replace=("datasets",),
        )
        seconds: dict[str, float] = {}
        repro(work, "score@digits_png8", seconds)
        for name in ("digits_tiff32", "photos", "nucseg"):
            repro(work, f"{'clean' if args.no_score_extra else 'score'}@{name}", seconds)
        rows = [row(c, work / "runs" / c.name, seconds) for c in corpora]
    code = f"commit {args.ref}" if args.ref else "working tree"
    print(
        f"\nreal data through `dvc repro` ({code}); digits noise {args.noise:.0%} symmetric, "
        f"seed {args.seed}, scored with small_cnn {args.size} px, {args.epochs} epochs, 5 folds; "
        f"total {sum(v for k, v in seconds.items() if k.startswith('repro')):.0f} s\n"
    )
    print("| " + " | ".join(rows[0]) + " |")
    print("|---" * len(rows[0]) + "|")
    for r in rows:
        print("| " + " | ".join(r.values()) + " |")


if __name__ == "__main__":
    main()
