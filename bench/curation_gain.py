"""Proof of value: what curation and the training tricks buy on noisy labels.

    .venv/bin/python bench/curation_gain.py               # ~13 min on the shared 2 cores
    .venv/bin/python bench/curation_gain.py --ablate-all  # ~27 min: ablations everywhere
    .venv/bin/python bench/curation_gain.py --quick       # ~1.5 min smoke run
    options: [--seeds 3] [--levels 0.2 0.4] [--epochs 12] [--size 8] [--no-shapes]
             [--seg (shapes_seg too, ~7 min more)] [--no-ablations] [--threads 1]

Three models per setting, trained on the same images and tested on the same clean labels:

* (a) **baseline**: the given (noisy) labels, plain cross-entropy, no curation, no tricks;
  augmentation only what the data allows for free (flips on shapes; none on digits, where a
  mirrored digit is another symbol);
* (b) **full pipeline**: out-of-fold scoring (``datapipe.score.score``), curation with the
  default policy (``datapipe.curate.curate``: relabel flagged samples whose suggested class has
  OOF probability >= 0.8, down-weight the other flagged ones to max(0.1, label_quality);
  segmentation: down-weight every flagged mask), then training with the curated weights, a
  root-pacing curriculum on the curated difficulty, an EMA of the weights, more augmentation,
  and label smoothing + mixup (classification) or a Dice term (segmentation);
* (c) **oracle**: the true labels, recipe (b) without curation (its curriculum ranks by
  1 - OOF p(true label)); segmentation has no clean masks, so its oracle drops the planted
  corrupted ones.

``gap closed = (b - a) / (c - a)`` on test accuracy (mIoU for segmentation). Settings:
scikit-learn's bundled digits (1797 8x8 images written as PNG files, one stratified 70/30
train/test split) with symmetric noise on the training labels at each ``--levels``; and
``sample_data/shapes_cls`` (ingest and clean in-process, 8% planted flips), graded on its test
split against ``planted.csv``'s true labels (``--seg``: ``shapes_seg`` too, its test split
without the planted corrupted masks). Test labels are always the true ones. Only the train
split is scored (no test label trains a scoring model) and trained on; the val split is unused.
Clean's exclusions (unreadable, blank, exact duplicates) hold in every arm.

Ablations remove one ingredient of (b) at a time (default: on the first digits level;
``--ablate-all``: every setting). Each row gives the paired difference to (b) per seed; an
ingredient whose removal *raises* the score in every seed is marked **hurts**, one whose removal
lowers it in every seed *helps*. Seeds vary the noise draw (hence the scoring models' data) and
the training run on digits; on the sample sets (planted noise) only the training run. One torch
thread, as in ``bench/label_noise.py``. Prints Markdown tables for the README.
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.label_noise import folds_for, symmetric_noise, write_digits
from datapipe.clean import clean
from datapipe.config import (
    CurateParams,
    CurriculumParams,
    DatasetParams,
    FitParams,
    LossParams,
    MixParams,
    Params,
    ScoreParams,
    TrainTaskParams,
    load_params,
)
from datapipe.curate import curate
from datapipe.data import AugmentedSet, manifest_items, sample_spec
from datapipe.ingest import ingest
from datapipe.score import score
from datapipe.training import (
    RunSettings,
    build_model,
    evaluate,
    main_metric,
    scalar_metrics,
    train_inputs,
    train_model,
)

CPU = RunSettings(torch.device("cpu"), amp=False, workers=0)
NO_ISSUES = pd.DataFrame({"sample_id": pd.Series(dtype=str), "check": pd.Series(dtype=str)})
DIGIT_AFFINE = [
    {"Affine": {"scale": [0.9, 1.1], "translate_percent": [-0.1, 0.1], "rotate": [-10, 10],
                "p": 0.5}},
]  # fmt: skip
FLIPS = [{"HorizontalFlip": {"p": 0.5}}, {"VerticalFlip": {"p": 0.5}}]
#: planted problems of shapes_seg whose mask is wrong but which clean does not exclude
BAD_MASKS = ("mask_eroded", "mask_shifted", "mask_wrong_class", "conflicting_label_duplicate")


@dataclass
class Setting:
    """One data set with its noise: what every arm trains and tests on.

    ``manifest``: the train rows a scoring run sees (``label_index`` = given label);
    ``wrong`` ``(N,)`` bool: the given label / mask is wrong; ``true`` ``(N,)`` the true class
    indices (classification); ``test``: image (and mask) of the test rows, ``true_index``.
    """

    name: str
    dataset: DatasetParams
    stats: dict[str, Any]
    manifest: pd.DataFrame
    wrong: np.ndarray
    true: np.ndarray | None
    test: pd.DataFrame
    score_params: ScoreParams
    base: TrainTaskParams  # recipe (a)
    full: TrainTaskParams  # recipe (b) and (c)
    issues: pd.DataFrame = field(default_factory=lambda: NO_ISSUES)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.stats["classes"]]

    @property
    def task(self) -> str:
        return self.dataset.task


# --- settings -------------------------------------------------------------------------------


def full_recipe(base: TrainTaskParams, augment: list, *, task: str) -> TrainTaskParams:
    """Recipe (b): the base recipe with every trick switched on."""
    loss = (
        LossParams(label_smoothing=0.1)
        if task == "classification"
        else LossParams(terms={"loss_ce": 1.0, "loss_dice": 1.0})
    )
    return base.model_copy(
        update={
            "augment": augment,
            "loss": loss,
            "mix": MixParams(mixup_alpha=0.2) if task == "classification" else base.mix,
            "ema": 0.98,
            "curriculum": CurriculumParams(pacing="root", start=0.5),
            "sample_weights": True,
        }
    )


def digits_setting(root: Path, p: float, *, seed: int, size: int, epochs: int) -> Setting:
    """Digits as PNG files under ``root``: a stratified 70/30 split (seed 0, the same test
    images for every level and seed), symmetric noise ``p`` on the train labels (``seed``)."""
    digits = write_digits(root)
    index = np.arange(len(digits.paths))
    train, test = train_test_split(index, test_size=0.3, stratify=digits.labels, random_state=0)
    true = digits.labels[train]
    noisy = symmetric_noise(true, p, seed=seed)
    paths = np.asarray(digits.paths, dtype=object)
    manifest = pd.DataFrame({
        "sample_id": [f"d{i:04d}" for i in train], "image": paths[train], "split": "train",
        "fold": folds_for(noisy, seed), "excluded": False, "label_index": noisy,
    })  # fmt: skip
    unit = digits.pixels
    stats = {"channels": 1, "classes": [str(k) for k in range(10)], "mean": [float(unit.mean())],
             "std": [float(unit.std())], "bit_depth": {"uint8": 8}}  # fmt: skip
    # the scoring recipe of bench/label_noise.py (4 epochs: short, so noise is not memorised)
    fit = FitParams(model="small_cnn", image_size=size, epochs=4, batch_size=64, flip=False)
    base = TrainTaskParams(model="small_cnn", image_size=size, epochs=epochs, batch_size=64,
                           lr=0.05, augment=[], sample_weights=False, seed=seed)  # fmt: skip
    return Setting(
        name=f"digits {p:.0%}",
        dataset=DatasetParams(root=root, task="classification"),
        stats=stats,
        manifest=manifest,
        wrong=noisy != true,
        true=true,
        test=pd.DataFrame({"image": paths[test], "true_index": digits.labels[test]}),
        score_params=ScoreParams(classification=fit, device="cpu", amp=False),
        base=base,
        full=full_recipe(base, DIGIT_AFFINE, task="classification"),
    )


def sample_setting(params: Params, name: str) -> Setting:
    """A sample set as params.yaml describes it, ingested and cleaned in-process, with its
    recipes from params.yaml: (a) flips only, plain CE; (b) the sample augmentation + tricks."""
    dataset = params.dataset(name)
    ingested = ingest(dataset, name=name, workers=1)
    cleaned = clean(ingested.manifest, ingested.stats, dataset, params.clean, workers=1,
                    name=name)  # fmt: skip
    manifest, stats = cleaned.manifest, ingested.stats
    planted = _planted(Path(dataset.root) / "planted.csv")
    segmentation = dataset.task == "segmentation"
    if segmentation:
        true = None
        problems = [planted.get(image, ("", ""))[0] for image in manifest["image"]]
        wrong = np.isin(problems, BAD_MASKS)
        testable = ~wrong
    else:
        true = _true_labels(planted, manifest, [str(c) for c in stats["classes"]])
        wrong = manifest["label_index"].fillna(-1).to_numpy(np.int64) != true
        testable = true >= 0  # a blank image has no true class
    train = (manifest["split"] == "train").to_numpy()
    test = (manifest["split"] == "test").to_numpy() & ~manifest["excluded"].to_numpy(bool)
    test &= testable
    columns = ["image", "mask"] if segmentation else ["image"]
    recipe = getattr(params.train, dataset.task)
    flips = FLIPS[:1] if segmentation else FLIPS
    base = recipe.model_copy(update={"augment": flips, "loss": LossParams(),
                                     "sample_weights": False})  # fmt: skip
    return Setting(
        name=f"{name} (planted)",
        dataset=dataset,
        stats=stats,
        manifest=manifest[train].reset_index(drop=True),
        wrong=wrong[train],
        true=None if true is None else true[train],
        test=manifest.loc[test, columns].assign(true_index=0 if true is None else true[test]),
        score_params=params.score.model_copy(update={"device": "cpu", "amp": False}),
        base=base,
        full=full_recipe(base, recipe.augment, task=dataset.task),
        issues=cleaned.issues,
    )


def _planted(path: Path) -> dict[str, tuple[str, str]]:
    """image -> (problem, true label) from a sample set's ``planted.csv``."""
    with path.open(newline="") as fh:
        return {row["image"]: (row["problem"], row["true_label"]) for row in csv.DictReader(fh)}


def _true_labels(
    planted: dict[str, tuple[str, str]], manifest: pd.DataFrame, classes: list[str]
) -> np.ndarray:
    """True class index per manifest row: the given label unless ``planted.csv`` names a
    true label (flips, conflicting duplicates); -1 where there is none (blank, unreadable)."""
    lookup = {c: i for i, c in enumerate(classes)}
    true = manifest["label_index"].fillna(-1).to_numpy(np.int64).copy()
    for i, image in enumerate(manifest["image"]):
        if image in planted:
            true[i] = lookup.get(planted[image][1], -1) if planted[image][1] else -1
    return true


# --- curated tables -------------------------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    """The curated tables the arms train on, and what curation did."""

    given: pd.DataFrame  # no curation: given labels, weight 1, scored difficulty
    curated: pd.DataFrame  # the default policy
    downweight: pd.DataFrame  # policy: down-weight every flagged sample, relabel none
    dropped: pd.DataFrame  # policy: drop the flagged samples that are not relabelled
    oracle: pd.DataFrame  # true labels (segmentation: bad masks dropped), weight 1
    flags: dict[str, float]
    score_s: float


def tables(setting: Setting) -> Tables:
    start = time.perf_counter()
    result = score(
        setting.manifest, setting.stats, setting.issues, setting.dataset, setting.score_params,
        workers=0, device=torch.device("cpu"), name=setting.name,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert result is not None  # one process: rank 0
    scores = result.scores.assign(exclude_reason=setting.manifest["exclude_reason"].to_numpy()
                                  if "exclude_reason" in setting.manifest else "")  # fmt: skip

    def policy(**kw: Any) -> pd.DataFrame:
        return curate(scores, classes=setting.classes, task=setting.task,  # type: ignore[arg-type]
                      policy=CurateParams(**kw)).curated  # fmt: skip

    curated = policy()
    scored_difficulty = scores["difficulty"].to_numpy(np.float64)
    if setting.true is None:  # segmentation: no clean masks; the oracle drops the bad ones
        given = _uncurated(curated, None, setting.classes, difficulty=scored_difficulty)
        oracle = given.copy()
        oracle.loc[setting.wrong & (oracle["action"] == "keep").to_numpy(), "action"] = "drop"
        oracle.loc[oracle["action"] == "drop", "weight"] = 0.0
        downweight, dropped = curated, policy(label_issues="drop")
    else:
        probs = scores[[f"prob_{c}" for c in setting.classes]].to_numpy(np.float64)
        p_true = probs[np.arange(len(probs)), np.clip(setting.true, 0, None)]
        given = _uncurated(curated, setting.manifest["label_index"].to_numpy(np.float64),
                           setting.classes, difficulty=scored_difficulty)  # fmt: skip
        oracle = _uncurated(curated, setting.true, setting.classes, difficulty=1.0 - p_true)
        downweight, dropped = policy(label_issues="downweight"), policy(otherwise="drop")
    return Tables(given, curated, downweight, dropped, oracle, flag_stats(scores, curated, setting),
                  seconds)  # fmt: skip


def _uncurated(
    curated: pd.DataFrame, labels: np.ndarray | None, classes: list[str], *, difficulty: np.ndarray
) -> pd.DataFrame:
    """``curated`` with every usable row kept at weight 1 under ``labels`` (None: as given,
    segmentation) and the curriculum ranked by ``difficulty`` (NaN, unscored: the middle)."""
    out = curated.copy()
    out["difficulty"] = np.nan_to_num(difficulty, nan=0.5)
    usable = out["action"] != "exclude"
    out.loc[usable, "action"] = "keep"
    out.loc[usable, "weight"] = 1.0
    if labels is not None:
        index = np.where(usable, np.nan_to_num(labels, nan=-1), -1).astype(np.int64)
        out["final_label_index"] = index
        out["final_label"] = [classes[k] if k >= 0 else None for k in index]
    return out


def flag_stats(scores: pd.DataFrame, curated: pd.DataFrame, setting: Setting) -> dict[str, float]:
    """Flag precision / recall against the truly wrong labels, and the share of usable train
    rows (and of their training weight) still wrongly labelled after curation."""
    wrong = setting.wrong
    flagged = scores["is_label_issue"].fillna(False).to_numpy(bool)
    usable = curated["action"].isin(["keep", "relabel", "downweight"]).to_numpy()
    relabel = (curated["action"] == "relabel").to_numpy()
    if setting.true is None:
        left, right = usable & wrong, relabel
    else:
        final = curated["final_label_index"].to_numpy(np.int64)
        left, right = usable & (final != setting.true), relabel & (final == setting.true)
    weight = curated["weight"].to_numpy(np.float64)
    return {
        "wrong": wrong[usable].mean(),
        "precision": (flagged & wrong).sum() / max(1, flagged.sum()),
        "recall": (flagged & wrong & usable).sum() / max(1, (wrong & usable).sum()),
        "relabelled": relabel.sum(),
        "relabel_right": right.sum() / max(1, relabel.sum()),
        "downweighted": (curated["action"] == "downweight").sum(),
        "wrong_after": left[usable].mean(),
        "wrong_weight_after": weight[left].sum() / max(1e-9, weight[usable].sum()),
    }


# --- arms -----------------------------------------------------------------------------------

Change = Callable[[TrainTaskParams, TrainTaskParams], TrainTaskParams]


@dataclass(frozen=True)
class Arm:
    table: str  # a field of Tables
    recipe: Change  # (base, full) -> the arm's recipe
    tasks: tuple[str, ...] = ("classification", "segmentation")


def _without(**fields: str | None) -> Change:
    """Recipe (b) with ``fields`` set back: a name takes the base recipe's value, None None."""
    return lambda b, f: f.model_copy(
        update={k: getattr(b, v) if v else None for k, v in fields.items()}
    )


CLS, SEG = ("classification",), ("segmentation",)
MAIN = {
    "(a) baseline": Arm("given", lambda b, f: b),
    "(b) full pipeline": Arm("curated", lambda b, f: f),
    "(c) oracle": Arm("oracle", lambda b, f: f),
}
ABLATIONS = {
    "curation (tricks on the given labels)": Arm("given", lambda b, f: f),
    "scores altogether (tricks on the given labels, no curriculum)": Arm(
        "given", _without(curriculum="curriculum")
    ),
    "relabelling (down-weight every flag)": Arm("downweight", lambda b, f: f, CLS),
    "down-weighting (drop the flags not relabelled)": Arm("dropped", lambda b, f: f),
    "curation weights (relabel; rest weight 1)": Arm(
        "curated", _without(sample_weights="sample_weights"), CLS
    ),
    "curriculum": Arm("curated", _without(curriculum="curriculum")),
    "label smoothing": Arm("curated", _without(loss="loss"), CLS),
    "Dice loss term": Arm("curated", _without(loss="loss"), SEG),
    "mixup": Arm("curated", _without(mix="mix"), CLS),
    "EMA": Arm("curated", _without(ema=None)),
    "extra augmentation": Arm("curated", _without(augment="augment")),
}  # fmt: skip


def train_and_test(setting: Setting, table: pd.DataFrame, recipe: TrainTaskParams) -> float:
    """Test accuracy (mIoU) against the true labels of a model trained on ``table``'s train
    rows."""
    inputs = train_inputs(table[table["split"] == "train"], setting.stats, setting.dataset, recipe)
    torch.manual_seed(recipe.seed)
    model = build_model(inputs.task, recipe, in_channels=int(setting.stats["channels"]),
                        num_classes=len(setting.classes))  # fmt: skip
    result = train_model(model, inputs, recipe, CPU, desc=f"train {setting.name}")
    spec = sample_spec(setting.dataset, setting.stats, size=recipe.image_size)
    test = AugmentedSet(manifest_items(setting.test), spec, setting.test["true_index"].to_numpy())
    cm = evaluate(result.model, test, task=inputs.task, classes=setting.classes, batch_size=64,
                  run=CPU, ignore_index=setting.dataset.ignore_index)  # fmt: skip
    return scalar_metrics(cm, setting.classes, inputs.task)[main_metric(inputs.task)]


def run_arms(setting: Setting, found: Tables, arms: dict[str, Arm], seed: int) -> dict[str, float]:
    base = setting.base.model_copy(update={"seed": seed})
    full = setting.full.model_copy(update={"seed": seed})
    return {
        name: train_and_test(setting, getattr(found, arm.table), arm.recipe(base, full))
        for name, arm in arms.items()
        if setting.task in arm.tasks
    }


# --- tables ---------------------------------------------------------------------------------


def pm(values: list[float]) -> str:
    """Mean ± half the range, in percent."""
    v = 100 * np.asarray(values)
    return f"{v.mean():.1f} ± {(v.max() - v.min()) / 2:.1f}" if len(v) > 1 else f"{v[0]:.1f}"


def gap_closed(acc: dict[str, list[float]]) -> tuple[float, list[float]]:
    a, b, c = (np.asarray(acc[k]) for k in MAIN)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_seed = list((b - a) / (c - a))
    return (b.mean() - a.mean()) / (c.mean() - a.mean()), per_seed


Row = tuple[str, str, dict[str, list[float]], list[dict[str, float]]]


def print_main(rows: list[Row]) -> None:
    print("\n| setting | metric | (a) baseline | (b) full pipeline | (c) oracle "
          "| gap closed (b-a)/(c-a) | per seed |")  # fmt: skip
    print("|---" * 7 + "|")
    for name, metric, acc, _ in rows:
        closed, per_seed = gap_closed(acc)
        seeds = ", ".join(f"{x:.0%}" for x in per_seed)
        cells = " | ".join(pm(acc[k]) for k in MAIN)
        print(f"| {name} | {metric} | {cells} | **{closed:.0%}** | {seeds} |")
    print("\nWhat curation did to the training labels of (b) (mean over seeds):\n")
    print("| setting | wrong labels | flags precision / recall | relabelled (right) "
          "| down-weighted | wrong after curation (share of weight) |")  # fmt: skip
    print("|---" * 6 + "|")
    for name, _, _, flags in rows:
        f = {k: float(np.mean([x[k] for x in flags])) for k in flags[0]}
        right = f" ({f['relabel_right']:.0%})" if f["relabelled"] else ""
        print(
            f"| {name.split(',')[0]} | {f['wrong']:.1%} | {f['precision']:.2f} / "
            f"{f['recall']:.2f} | {f['relabelled']:.0f}{right} | "
            f"{f['downweighted']:.0f} | {f['wrong_after']:.1%} ({f['wrong_weight_after']:.1%}) |"
        )


def print_ablations(name: str, metric: str, acc: dict[str, list[float]]) -> None:
    full = np.asarray(acc["(b) full pipeline"])
    print(f"\n{name}: (b) without one ingredient (test {metric} %, paired Δ to (b) per seed)\n")
    print(f"| (b) without | test {metric} | Δ vs (b), points (per seed) | the ingredient |")
    print("|---|---|---|---|")
    print(f"| (nothing: full pipeline) | {pm(list(full))} | | |")
    for arm in (a for a in ABLATIONS if a in acc):
        delta = 100 * (np.asarray(acc[arm]) - full)
        seeds = ", ".join(f"{d:+.1f}" for d in delta)
        print(f"| {arm} | {pm(acc[arm])} | {delta.mean():+.1f} ({seeds}) | {verdict(delta)} |")


def verdict(delta: np.ndarray) -> str:
    """An ingredient hurts when removing it raised the score in every seed (3 at least)."""
    if len(delta) < 3:
        return "(needs 3 seeds)"
    if (delta > 0).all():
        return "**hurts**"
    return "helps" if (delta < 0).all() else "unclear"


# --- main -----------------------------------------------------------------------------------


def run_setting(
    name: str, make: Callable[[int], Setting], *, seeds: int, ablate: bool, rescore: bool
) -> tuple[Row, float, float]:
    """Every arm over ``seeds``; scoring once, or per seed when ``rescore`` (new noise)."""
    arms = MAIN | (ABLATIONS if ablate else {})
    acc: dict[str, list[float]] = {}
    flags, found, start, score_s = [], None, time.perf_counter(), 0.0
    for seed in range(seeds):
        setting = make(seed)
        if found is None or rescore:
            found = tables(setting)
            flags.append(found.flags)
            score_s += found.score_s
        for arm, value in run_arms(setting, found, arms, seed).items():
            acc.setdefault(arm, []).append(value)
        line = ", ".join(f"{k} {v[-1]:.3f}" for k, v in acc.items())
        print(f"{name} seed {seed}: {line}", file=sys.stderr, flush=True)
    metric = "mIoU" if setting.task == "segmentation" else "accuracy"
    return (
        (f"{name}, {len(setting.test)} test images", metric, acc, flags),
        time.perf_counter() - start,
        score_s,
    )


def _digits(seed: int, *, root: Path, p: float, size: int, epochs: int) -> Setting:
    return digits_setting(root, p, seed=seed, size=size, epochs=epochs)


def _same(setting: Setting, seed: int) -> Setting:
    return setting  # planted noise: one setting for every seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=float, nargs="*", default=[0.2, 0.4])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--size", type=int, default=8, help="digits px (8 = native)")
    parser.add_argument("--epochs", type=int, default=12, help="digits training epochs")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="sample sets and their recipes")  # fmt: skip
    parser.add_argument("--no-shapes", action="store_true", help="skip shapes_cls")
    parser.add_argument("--seg", action="store_true", help="add shapes_seg (slow on a CPU)")
    parser.add_argument("--ablate-all", action="store_true", help="ablations on every setting")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true",
                        help="digits 20%% only, 1 seed, 6 epochs (~2 min)")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.levels, args.seeds, args.epochs = [0.2], 1, 6
        args.no_shapes, args.seg, args.ablate_all = True, False, False
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows, ablations, timing = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        jobs: list[tuple[str, Callable[[int], Setting], bool, bool]] = []
        for i, p in enumerate(args.levels):
            root = Path(tmp) / f"digits{i}"
            root.mkdir()
            digits = functools.partial(_digits, root=root, p=p, size=args.size, epochs=args.epochs)
            jobs.append((f"digits {p:.0%}", digits, args.ablate_all or i == 0, True))
        params = load_params(args.params)
        samples = ([] if args.no_shapes else ["shapes_cls"]) + (["shapes_seg"] if args.seg else [])
        for name in samples:
            sample = sample_setting(params, name)
            jobs.append((sample.name, functools.partial(_same, sample), args.ablate_all, False))
        for name, make, ablate, rescore in jobs:
            row, seconds, score_s = run_setting(name, make, seeds=args.seeds,
                                                ablate=ablate and not args.no_ablations,
                                                rescore=rescore)  # fmt: skip
            rows.append(row)
            if len(row[2]) > len(MAIN):
                ablations.append(row)
            timing.append(f"{name} {seconds:.0f} s (scoring {score_s:.0f} s)")
    print(
        f"\nsmall_cnn; digits {args.size} px, {args.epochs} epochs; sample sets: params.yaml "
        f"recipes; {args.seeds} seed(s); test score % (mean ± half the range over seeds)"
    )
    print_main(rows)
    for name, metric, acc, _ in ablations:
        print_ablations(name, metric, acc)
    print(f"\nwall time {time.perf_counter() - start:.0f} s: " + "; ".join(timing))


if __name__ == "__main__":
    main()
