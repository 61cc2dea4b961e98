"""Label-noise detection on real images: datapipe's flags against cleanlab on a linear model.

    .venv/bin/python bench/label_noise.py [--levels 0.1 0.2 0.4] [--size 16] [--epochs 4]
                                          [--seed 0] [--rules] [--save DIR] [--quick]
    .venv/bin/python bench/label_noise.py --rescore DIR [DIR ...]

scikit-learn's bundled handwritten digits (1797 images, 8x8, 10 classes) are written out as
8-bit PNG files (0..16 scaled to 0..255). Given labels are made noisy with a seed:

* symmetric: each label flips with probability p to a uniformly random other class;
* class-conditional: cleanlab's ``generate_noise_matrix_from_trace`` (trace ``K * (1 - p)``,
  a valid matrix for the class prior) and ``generate_noisy_labels``.

Ours: the PNG files decoded by the score stage's loader (``datapipe.scoring.data.make_source``,
upsampled to ``--size``),
5 stratified folds, ``datapipe.scoring.oof.out_of_fold`` with the ``small_cnn``, then
``datapipe.label_issues.classification_label_issues`` with the run's AUM. Baseline: scikit-learn
``LogisticRegression`` on the pixels scaled to [0, 1], out-of-fold ``predict_proba`` over the
same kind of folds, ``cleanlab.filter.find_label_issues`` with its defaults. Flags are scored
against the set of labels that were really flipped. One torch and one BLAS thread: on a shared
2-core machine more threads ran 4-50x slower.

``--rules`` adds the evidence behind the rule in ``datapipe.label_issues``: the F1 of every
candidate flag rule and the average precision of every candidate ``label_quality`` ranking, on
the same probabilities and AUM. ``--save DIR`` keeps each setting's probabilities and training
dynamics (``.npz``); ``--rescore`` prints the rule tables over saved runs (other recipes, seeds).
Prints Markdown tables for the README.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from cleanlab.benchmarking.noise_generation import (
    generate_noise_matrix_from_trace,
    generate_noisy_labels,
)
from cleanlab.count import num_label_issues
from cleanlab.filter import find_label_issues
from scipy.stats import rankdata
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datapipe.data import ImageSpec, SampleSpec
from datapipe.label_issues import classification_label_issues
from datapipe.models import build_classifier
from datapipe.scoring.data import InMemory, make_source
from datapipe.scoring.oof import TrainSettings, out_of_fold

K = 10
FOLDS = 5


@dataclass(frozen=True)
class Digits:
    paths: list[str]  # relative to root
    pixels: np.ndarray  # (N, 64) float in [0, 1], what the baseline sees
    labels: np.ndarray  # (N,) true labels


def write_digits(root: Path) -> Digits:
    """Every digit as an 8-bit grey PNG under ``root/<true class>/``."""
    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)  # (N, 8, 8), 0..16 -> 0..255
    paths = []
    for i, (img, label) in enumerate(zip(images, data.target, strict=True)):
        rel = f"{label}/{i:04d}.png"
        (root / rel).parent.mkdir(exist_ok=True)
        if not cv2.imwrite(str(root / rel), img):
            raise OSError(f"could not write {root / rel}")
        paths.append(rel)
    pixels = images.reshape(len(images), -1).astype(np.float64) / 255
    return Digits(paths, pixels, data.target.astype(np.int64))


def symmetric_noise(labels: np.ndarray, p: float, *, seed: int) -> np.ndarray:
    """Each label flips with probability ``p`` to a uniformly random other class."""
    rng = np.random.default_rng(seed)
    flip = rng.random(len(labels)) < p
    shift = rng.integers(1, K, len(labels))
    return np.where(flip, (labels + shift) % K, labels)


def class_conditional_noise(labels: np.ndarray, p: float, *, seed: int) -> np.ndarray:
    """cleanlab's generator: a valid noise matrix with trace ``K * (1 - p)``, then flips."""
    py = np.bincount(labels, minlength=K) / len(labels)
    matrix = generate_noise_matrix_from_trace(K, K * (1 - p), py=py, seed=seed)
    if matrix is None:
        raise RuntimeError(f"cleanlab found no valid noise matrix for p={p}")
    # generate_noisy_labels draws from numpy's global generator; keep the run reproducible.
    state = np.random.get_state()  # noqa: NPY002 (cleanlab's helper needs it)
    np.random.seed(seed)  # noqa: NPY002
    try:
        return np.asarray(generate_noisy_labels(labels, matrix)).astype(np.int64)
    finally:
        np.random.set_state(state)  # noqa: NPY002


NOISE = {"symmetric": symmetric_noise, "class-conditional": class_conditional_noise}


def prf(flags: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 of boolean ``flags`` against boolean ``truth``."""
    hit = float((flags & truth).sum())
    precision = hit / max(1, flags.sum())
    recall = hit / max(1, truth.sum())
    f1 = 2 * precision * recall / (precision + recall) if hit else 0.0
    return precision, recall, f1


def folds_for(labels: np.ndarray, seed: int) -> np.ndarray:
    folds = np.empty(len(labels), np.int64)
    splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        folds[held] = k
    return folds


def baseline(pixels: np.ndarray, noisy: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab defaults on out-of-fold logistic-regression probabilities: flags, probs."""
    cv = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    model = LogisticRegression(max_iter=5000)
    # One BLAS thread: on a shared 2-core machine OpenBLAS's 2 threads made each fit ~50x slower.
    with threadpool_limits(1):
        probs = cross_val_predict(model, pixels, noisy, cv=cv, method="predict_proba")
    return find_label_issues(noisy, probs, n_jobs=1), probs


def ours(
    images: torch.Tensor, noisy: np.ndarray, settings: TrainSettings, size: int
) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities (``probs``) and training dynamics (``aum``, ...)."""
    result = out_of_fold(
        images,
        noisy,
        folds_for(noisy, settings.seed),
        np.ones(len(noisy), bool),
        num_classes=K,
        make_model=lambda: build_classifier(
            "small_cnn", in_channels=1, num_classes=K, image_size=size
        ),
        settings=settings,
        desc="oof",
    )
    if result.probs is None or result.dynamics is None:
        raise RuntimeError("out_of_fold returned no classification probabilities")
    return {"probs": result.probs, **result.dynamics.summary()}


def load(root: Path, digits: Digits, size: int) -> torch.Tensor:
    """Decode the PNG files with datapipe's loader, normalised with the set's own mean/std."""
    unit = digits.pixels  # the same values the files hold, in [0, 1]
    spec = ImageSpec(
        root=root,
        scaling={"uint8": 8},
        percentiles=(0.5, 99.5),
        mean=[float(unit.mean())],
        std=[float(unit.std())],
        size=size,
    )
    items = [(path, None) for path in digits.paths]
    source = make_source(
        items, SampleSpec(spec), np.zeros(len(items), np.int64), workers=1, max_bytes=2**31,
        desc="decode",
    )  # fmt: skip
    assert isinstance(source, InMemory)  # 1797 small images always fit the budget
    return source.images


def candidates(noisy: np.ndarray, probs: np.ndarray, aum: np.ndarray) -> dict[str, np.ndarray]:
    """Flag rules that were candidates for ``classification_label_issues``, by name."""
    n = len(noisy)
    probs = probs.astype(np.float64)
    sc = probs[np.arange(n), noisy]
    disagrees = probs.argmax(1) != noisy
    cl = {
        f: find_label_issues(noisy, probs, filter_by=f, n_jobs=1)
        for f in ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning")
    }
    n_hat = num_label_issues(noisy, probs, estimation_method="off_diagonal_calibrated")
    lowest_n = np.zeros(n, bool)
    lowest_n[np.argsort(_rank_average(sc, aum), kind="stable")[:n_hat]] = True
    class_mean = np.array([sc[noisy == k].mean() for k in range(K)])
    return {
        "cleanlab prune_by_noise_rate (baseline's rule)": cl["prune_by_noise_rate"],
        "cleanlab prune_by_class": cl["prune_by_class"],
        "cleanlab both": cl["both"],
        "confident_learning or (disagrees, p(argmax) >= 0.5)": cl["confident_learning"]
        | (disagrees & (probs.max(1) >= 0.5)),
        "self-confidence < its class mean": sc < class_mean[noisy],
        "AUM < 0": aum < 0,
        "prune_by_noise_rate or AUM < 0": cl["prune_by_noise_rate"] | (aum < 0),
        "prune_by_noise_rate and AUM < 0": cl["prune_by_noise_rate"] & (aum < 0),
        "disagrees and AUM < 0": disagrees & (aum < 0),
        "n-hat lowest rank-average(self-confidence, AUM)": lowest_n,
    }


def _rank_average(*scores: np.ndarray) -> np.ndarray:
    return np.mean([rankdata(s) / len(s) for s in scores], axis=0)


def rankings(noisy: np.ndarray, run: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-sample scores (lower = more likely wrong) that were candidates for label_quality."""
    sc = run["probs"][np.arange(len(noisy)), noisy].astype(np.float64)
    table = classification_label_issues(noisy, run["probs"], aum=run["aum"])
    return {
        "self-confidence (cleanlab's default)": sc,
        "AUM": run["aum"],
        "cartography confidence": run["confidence"],
        "rank-average(self-confidence, AUM)": _rank_average(sc, run["aum"]),
        "datapipe label_quality: mean(self-confidence, sigmoid(AUM))": table[
            "label_quality"
        ].to_numpy(),
    }


def rule_table(runs: dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]) -> None:
    """F1 of each candidate rule and average precision of each ranking, per setting."""
    names = list(runs)
    f1: dict[str, list[float]] = {}
    ap: dict[str, list[float]] = {}
    for noisy, true, run in runs.values():
        truth = noisy != true
        found = candidates(noisy, run["probs"], run["aum"])
        found["datapipe: disagrees and low_aum (chosen)"] = classification_label_issues(
            noisy, run["probs"], aum=run["aum"]
        )["is_label_issue"].to_numpy()
        for name, flags in found.items():
            f1.setdefault(name, []).append(prf(flags, truth)[2])
        for name, score in rankings(noisy, run).items():
            ap.setdefault(name, []).append(average_precision_score(truth, -score))
    for title, table in (("flag rule: F1", f1), ("label_quality ranking: average precision", ap)):
        print(f"\n| {title} | " + " | ".join(names) + " | mean | min |")
        print("|---" * (len(names) + 3) + "|")
        for name, values in sorted(table.items(), key=lambda kv: -np.mean(kv[1])):
            cells = " | ".join(f"{v:.3f}" for v in values)
            print(f"| {name} | {cells} | {np.mean(values):.3f} | {min(values):.3f} |")


def rescore(dirs: list[Path]) -> None:
    """The rule table over runs saved with ``--save`` (one column per file)."""
    runs = {}
    for d in dirs:
        for path in sorted(d.glob("*.npz")):
            z = dict(np.load(path))
            runs[f"{d.name}/{path.stem}"] = (z.pop("noisy"), z.pop("true"), z)
    rule_table(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=float, nargs="*", default=[0.1, 0.2, 0.4])
    parser.add_argument("--noise", nargs="*", choices=list(NOISE), default=list(NOISE))
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="one level, 2 epochs: a smoke run")
    parser.add_argument("--save", type=Path, help="keep probabilities and dynamics here")
    parser.add_argument("--rules", action="store_true", help="also compare candidate rules")
    parser.add_argument(
        "--rescore", type=Path, nargs="+", help="only the rule table, from --save folders"
    )
    args = parser.parse_args()
    if args.rescore:
        rescore(args.rescore)
        return
    if args.quick:
        args.levels, args.noise, args.epochs = [0.2], ["symmetric"], 2
    settings = TrainSettings.of(
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        weight_decay=args.weight_decay,
        flip=False,  # a mirrored digit is another symbol
        seed=args.seed,
    )
    # One thread: with other work on a shared 2-core machine, 2 threads trained 4-6x slower.
    torch.set_num_threads(args.threads)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    print(
        f"\nsklearn digits (1797 PNG, 8x8 -> {args.size}x{args.size}), small_cnn, "
        f"{args.epochs} epochs, batch {args.batch}, lr {args.lr}, wd {args.weight_decay}, "
        f"{FOLDS} folds, seed {args.seed}\n"
    )
    print(
        "| noise | p | flipped | ours P / R / F1 | baseline P / R / F1 | "
        "ours OOF acc | LR OOF acc | ours s | baseline s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        digits = write_digits(root)
        images = load(root, digits, args.size)
        for noise in args.noise:
            for p in args.levels:
                noisy = NOISE[noise](digits.labels, p, seed=args.seed)
                truth = noisy != digits.labels
                start = time.perf_counter()
                base_flags, base_probs = baseline(digits.pixels, noisy, args.seed)
                base_s = time.perf_counter() - start
                start = time.perf_counter()
                run = ours(images, noisy, settings, args.size)
                table = classification_label_issues(noisy, run["probs"], aum=run["aum"])
                flags = table["is_label_issue"].to_numpy()
                ours_s = time.perf_counter() - start
                acc = (run["probs"].argmax(1) == digits.labels).mean()
                base_acc = (base_probs.argmax(1) == digits.labels).mean()
                o, b = prf(flags, truth), prf(base_flags, truth)
                print(
                    f"| {noise} | {p:.0%} | {truth.sum()} | "
                    f"{o[0]:.2f} / {o[1]:.2f} / **{o[2]:.2f}** | "
                    f"{b[0]:.2f} / {b[1]:.2f} / {b[2]:.2f} | {acc:.3f} | {base_acc:.3f} | "
                    f"{ours_s:.0f} | {base_s:.1f} |",
                    flush=True,
                )
                runs[f"{noise} {p:.0%}"] = (noisy, digits.labels, run)
                if args.save:
                    np.savez(
                        args.save / f"{noise}-{p:g}.npz",
                        noisy=noisy,
                        true=digits.labels,
                        base_probs=base_probs,
                        **run,
                    )

    if args.rules:
        rule_table(runs)


if __name__ == "__main__":
    main()
