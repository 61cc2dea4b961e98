"""Calibration of the clean stage's intensity checks on real images with planted problems.

    .venv/bin/python bench/clean_calibration.py [--crops 1000] [--seed 0] [--exposure 200]

Corpora (everything offline; only the photos the scikit-image wheel ships, no download):

* ``photos``: ``--crops`` crops (64-256 px, aspect 3:4..4:3) of the 14 everyday photos of
  ``skimage.data`` (astronaut, brick, camera, chelsea, clock, coffee, coins, grass, gravel, page,
  rocket, text, the motorcycle stereo pair);
* ``science``: the same from its 6 scientific images (cell, hubble_deep_field,
  immunohistochemistry, microaneurysms, moon, retina);
* ``mixed``: all 20 sources in one dataset (heterogeneous on purpose: whole sources are darker,
  brighter or smoother than the rest);
* ``digits8`` / ``digits32`` / ``strokes28``: scikit-learn's 1,797 handwritten digits (8x8,
  values 0-16 stored as ``min(16 v, 255)`` in uint8), as they are, upscaled to 32x32 (bilinear),
  and MNIST-like: 28x28, black background, one bright clipped stroke.

Planted into the crop corpora, each a changed copy of a fresh crop: 20 darkened (x0.3-0.5, or
gamma 2-3), 20 brightened (the same on ``1 - x``), 20 blurred (Gaussian sigma 1.5-4), 10
saturated (gain that clips 20-50% of the pixels), 10 blank (one flat RGB colour, one of them
pure red), 10 near-constant (a flat grey with noise of 0.7 levels, or with 1% specks of another
grey). Dark, bright and blurred
copies start from a crop in the middle half of the dataset for the measure they change (an
under-exposed copy of a bright page crop is typical, not dark). The digit corpora get 10
near-constant images only: black with a few white specks (a flat grey with noise has the
entropy of a digit stroke).

Every image goes through the real measurement (``image_features``) and the real checks
(``datapipe.checks.intensity``); the old rules (before issue 12) are re-implemented below for
comparison. Printed per corpus and check: recall on the planted images it should find and the
false-flag rate on the unplanted ones, for the old rules and the new defaults, then a sweep of
each threshold.

Dark and bright get a section of their own: the rule before (the log mean alone, z 4) beside the
rule now (the log mean and the log 99th percentile, bright: 1st, both beyond ``brightness_z``),
and the 99th / 1st percentile alone; recall on the corpus's 20 copies and on ``--exposure`` more
dark and bright copies (added to the unplanted crops 20 at a time, so each is judged in a dataset
like the corpus), split by how they were made (scaled: the whole histogram moves; gamma: black
and white stay); a sweep of each rule's z; and the best recall any z reaches at 1 / 2 / 3% false
flags. The bench checks that its copy of the rule flags exactly what the check flags.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datapipe.checks import CHECKS, DatasetFacts
from datapipe.checks.base import robust_z
from datapipe.checks.features import FeatureSettings, image_features
from datapipe.checks.intensity import _EPS, _spread_z
from datapipe.config import CleanParams

PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass",
          "gravel", "page", "rocket", "text", "motorcycle_left", "motorcycle_right")  # fmt: skip
SCIENCE = ("cell", "hubble_deep_field", "immunohistochemistry", "microaneurysms", "moon", "retina")
#: check -> the planted kind it must find
TARGET = {"blank": "blank", "low_information": "near_constant", "dark": "dark",
          "bright": "bright", "saturated": "saturated", "blurry": "blurred"}  # fmt: skip
SETTINGS = FeatureSettings(
    root=Path(), scaling={"uint8": 8}, percentiles=(0.5, 99.5), max_pixels=1 << 28,
    class_values=[], ignore_index=255,
)  # fmt: skip
FACTS = DatasetFacts(
    task="classification", channels=3, dtype="uint8", dtype_share={"uint8": 1.0},
    class_values=[], ignore_index=255,
)  # fmt: skip
Rng = np.random.Generator


def _sources() -> dict[str, np.ndarray]:
    import skimage.data

    images = {n: getattr(skimage.data, n)() for n in PHOTOS + SCIENCE if "motorcycle" not in n}
    images["motorcycle_left"], images["motorcycle_right"], _ = skimage.data.stereo_motorcycle()
    return {n: x if x.ndim == 3 else np.repeat(x[..., None], 3, axis=2) for n, x in images.items()}


def _crop(img: np.ndarray, rng: Rng) -> np.ndarray:
    side, aspect = int(rng.integers(64, 257)), float(np.exp(rng.uniform(-0.29, 0.29)))
    h = min(img.shape[0], round(side / np.sqrt(aspect)))
    w = min(img.shape[1], round(side * np.sqrt(aspect)))
    y, x = int(rng.integers(0, img.shape[0] - h + 1)), int(rng.integers(0, img.shape[1] - w + 1))
    return np.ascontiguousarray(img[y : y + h, x : x + w])


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


# Each planting returns the changed copy and how it was made: "scale" / "gamma" for the
# exposure changes (recall is reported per way), the kind's own name for the others.
Plant = tuple[np.ndarray, str]


def _dark(img: np.ndarray, rng: Rng) -> Plant:
    """Scaled by 0.3-0.5 (the whole histogram, highlights too) or gamma 2-3 (black and white
    stay where they are: a tone curve, not an exposure change)."""
    x = img / 255.0
    if rng.random() < 0.5:
        return _u8(x * rng.uniform(0.3, 0.5)), "scale"
    return _u8(x ** rng.uniform(2, 3)), "gamma"


def _bright(img: np.ndarray, rng: Rng) -> Plant:
    dark, how = _dark(255 - img, rng)
    return 255 - dark, how


def _blurred(img: np.ndarray, rng: Rng) -> Plant:
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(1.5, 4.0)), "blurred"


def _saturated(img: np.ndarray, rng: Rng) -> Plant:
    top = max(1.0, float(np.quantile(img.max(axis=2), 1 - rng.uniform(0.2, 0.5))))
    return _u8(np.minimum(img / top, 1.0)), "saturated"


def _blank(img: np.ndarray, rng: Rng) -> Plant:
    colour = rng.integers(0, 256, 3).astype(np.uint8)
    return np.broadcast_to(colour, img.shape).copy(), "blank"


def _near_constant(img: np.ndarray, rng: Rng) -> Plant:
    """A flat grey with sensor noise (0.7 levels), or with 1% specks of another grey."""
    grey = np.full(img.shape[:2], rng.uniform(0.1, 0.9) * 255)
    if rng.random() < 0.5:
        grey += rng.normal(0, 0.7, grey.shape)
    else:
        grey[rng.random(grey.shape) < 0.01] = rng.uniform(0, 255)
    flat = np.clip(np.round(grey), 0, 255).astype(np.uint8)[..., None]
    return np.repeat(flat, img.shape[2], 2), "near_constant"


def _specks(shape: tuple[int, ...], rng: Rng) -> np.ndarray:
    """A black canvas with a few bright specks (at least one)."""
    out = np.zeros(shape, np.uint8)
    out[rng.random(shape) < 0.02] = 255
    out[tuple(int(rng.integers(0, n)) for n in shape)] = 255
    return out


#: kind -> (how it is made, how many, the measure whose middle half the source crop is from)
PLANTS: dict[str, tuple[Callable[[np.ndarray, Rng], Plant], int, str | None]] = {
    "dark": (_dark, 20, "brightness"), "bright": (_bright, 20, "brightness"),
    "blurred": (_blurred, 20, "sharpness"), "saturated": (_saturated, 10, None),
    "blank": (_blank, 10, None), "near_constant": (_near_constant, 10, None),
}  # fmt: skip


def _measure(img: np.ndarray, kind: str, source: str, how: str = "") -> dict[str, object]:
    out = image_features(img, SETTINGS)
    out.update(kind=kind, source=source, how=how or kind)
    out.update(old_value_range=float(img.max()) - float(img.min()))
    return out


def _plant(
    kind: str, count: int, sources: dict[str, np.ndarray], names: tuple[str, ...],
    normal: pd.DataFrame, rng: Rng,
) -> list[dict[str, object]]:  # fmt: skip
    """``count`` planted copies of ``kind`` (:data:`PLANTS`), each from a fresh crop."""
    make, _, measure = PLANTS[kind]
    lo, hi = normal[measure].quantile([0.25, 0.75]) if measure else (-np.inf, np.inf)
    rows: list[dict[str, object]] = []
    while len(rows) < count:
        source = names[int(rng.integers(len(names)))]
        crop = _crop(sources[source], rng)
        if measure and not lo <= float(image_features(crop, SETTINGS)[measure]) <= hi:  # type: ignore[arg-type]
            continue
        if kind == "blank" and not rows:
            rows.append(_measure(np.full_like(crop, (255, 0, 0)), kind, "pure red"))
        else:
            img, how = make(crop, rng)
            rows.append(_measure(img, kind, source, how))
    return rows


def crop_corpus(
    sources: dict[str, np.ndarray], names: tuple[str, ...], n: int, seed: int, *, exposure: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` unplanted crops of ``names`` (in turn) and the planted copies of :data:`PLANTS`;
    and, apart, ``exposure`` more dark and as many bright copies (see :func:`exposure_scores`).
    """
    rng = np.random.default_rng(seed)
    rows = [_measure(_crop(sources[s], rng), "normal", s) for s in (names * n)[:n]]
    normal = pd.DataFrame(rows)
    for kind, (_, count, _) in PLANTS.items():
        rows += _plant(kind, count, sources, names, normal, rng)
    extra = [
        r for k in ("dark", "bright") for r in _plant(k, exposure, sources, names, normal, rng)
    ]
    return _table(rows), _table(extra) if extra else NO_COPIES


#: no extra copies (the digit corpora, ``--exposure 0``)
NO_COPIES = pd.DataFrame({"kind": pd.Series(dtype=str), "how": pd.Series(dtype=str)})


def digit_corpus(size: int, seed: int, *, strokes: bool = False) -> pd.DataFrame:
    """Digits at ``size`` px; ``strokes``: MNIST-like (cubic upscale, then black below 60% and
    clipped above 80%: about 73% background, 17% of pixels at 255), else bilinear."""
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    rng = np.random.default_rng(seed)
    digits = np.minimum(load_digits().images * 16, 255).astype(np.uint8)
    if size != 8:
        how = cv2.INTER_CUBIC if strokes else cv2.INTER_LINEAR
        digits = np.stack([cv2.resize(d, (size, size), interpolation=how) for d in digits])
    if strokes:
        digits = _u8((digits / 255.0 - 0.6) * 5)
    rows = [_measure(d[..., None], "normal", "digits") for d in digits]
    rows += [_measure(_specks((size, size, 1), rng), "near_constant", "specks") for _ in range(10)]
    return _table(rows)


def _table(rows: list[dict[str, object]]) -> pd.DataFrame:
    df = pd.DataFrame(rows).drop(columns="phash")
    df["read_error"] = None
    df["decode_error"] = None
    return df


# --- the rules -------------------------------------------------------------------------------


def old_flags(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """The rules and defaults before issue 12 (z 4, shift 0.05, entropy 0.2, clipped 5%)."""
    median = df["brightness"].median()
    z = robust_z(df["brightness"])
    sharp = -robust_z(np.log10(df["sharpness"] + 1e-12))
    return {
        "blank": (df["old_value_range"] <= 0).to_numpy(),
        "low_information": ((df["entropy"] < 0.2) & (df["old_value_range"] > 0)).to_numpy(),
        "dark": ((-z > 4) & (median - df["brightness"] > 0.05)).to_numpy(),
        "bright": ((z > 4) & (df["brightness"] - median > 0.05)).to_numpy(),
        "saturated": (df["saturated"] > 0.05).to_numpy(),
        "blurry": ((sharp > 4) & (df["old_value_range"] > 0)).to_numpy(),
    }


def new_flags(df: pd.DataFrame, params: CleanParams) -> dict[str, np.ndarray]:
    out = {}
    for name in TARGET:
        found = CHECKS[name].run(df, FACTS, params)
        out[name] = found["flagged"].reindex(df.index, fill_value=False).to_numpy()
    return out


def auroc(df: pd.DataFrame, params: CleanParams, name: str) -> float:
    """How well the check's score ranks its planted kind below the unplanted images."""
    from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]

    keep = df["kind"].isin(["normal", TARGET[name]]).to_numpy()
    if (df["kind"] == TARGET[name]).sum() == 0:
        return float("nan")
    score = CHECKS[name].run(df, FACTS, params)["score"].reindex(df.index, fill_value=1.0)
    return float(roc_auc_score(df["kind"][keep] == TARGET[name], -score.to_numpy()[keep]))


def rates(df: pd.DataFrame, flags: dict[str, np.ndarray], name: str) -> tuple[float, float, int]:
    normal = (df["kind"] == "normal").to_numpy()
    planted = (df["kind"] == TARGET[name]).to_numpy()
    recall = float(flags[name][planted].mean()) if planted.any() else float("nan")
    return recall, float(flags[name][normal].mean()), int(flags[name][normal].sum())


def _fmt(recall: float, false: float, n: int) -> str:
    r = "   -" if np.isnan(recall) else f"{recall:4.2f}"
    return f"recall {r}  false flags {false:6.2%} ({n:3d})"


Z_STEPS = [2.0, 2.5, 3.0, 3.5, 4.0, 5.0]
#: (check, the CleanParams field swept, its values)
SWEEPS: list[tuple[str, str, list[float]]] = [  # dark / bright: see exposure_report
    ("blurry", "z_threshold", Z_STEPS),
    ("low_information", "z_threshold", Z_STEPS),
    ("low_information", "low_entropy", [0.2, 0.3, 0.4, 0.5, 0.6]),
    ("saturated", "z_threshold", Z_STEPS),
    ("saturated", "saturated_fraction", [0.05, 0.1, 0.15, 0.2, 0.25]),
]


def report(name: str, df: pd.DataFrame, extra: pd.DataFrame, params: CleanParams) -> None:
    normal = int((df["kind"] == "normal").sum())
    planted = df["kind"].value_counts().drop("normal").to_dict()
    print(f"\n## {name}: {normal} unplanted, planted {planted}")
    old, new = old_flags(df), new_flags(df, params)
    print(f"{'check':16s} {'old rule':38s} {'new default':38s} AUROC of the new score")
    for check in TARGET:
        print(
            f"{check:16s} {_fmt(*rates(df, old, check)):38s} {_fmt(*rates(df, new, check)):38s} "
            f"{auroc(df, params, check):.3f}"
        )
    blank = (df["kind"] == "blank").to_numpy()
    if blank.any():
        print(f"planted blank also flagged blurry: old {old['blurry'][blank].sum()}, "
              f"new {new['blurry'][blank].sum()} of {blank.sum()}")  # fmt: skip
    for check, key, values in SWEEPS:
        cells = []
        for value in values:
            flags = new_flags(df, params.model_copy(update={key: value}))
            recall, false, _ = rates(df, flags, check)
            cells.append(f"{value:g}: {'-' if np.isnan(recall) else f'{recall:.2f}'}/{false:.1%}")
        print(f"  sweep {check} {key} (recall/false): " + "  ".join(cells))
    for check in ("dark", "bright"):  # the bench's copy of the rule is the check's
        same = exposure_z(df, check, "both", params) > params.brightness_z
        assert (same == new[check]).all(), f"{check}: the bench's rule differs from the check's"
    exposure_report(df, extra, params)


# --- dark / bright: the mean alone (before) and the mean with the histogram's far end (now) ----

#: the dark / bright rule before the histogram's ends were measured, and its default
BEFORE_RULE, BEFORE_Z = "mean", 4.0
#: rule -> the z it thresholds, from the z of the log mean and of the log far end
EXPOSURE_RULES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mean": lambda mean, end: mean,  # before: the mean alone
    "end": lambda mean, end: end,  # the 99th (bright: 1st) percentile alone
    "both": np.minimum,  # now: the mean and the end both beyond brightness_z
}
CAPS = (0.01, 0.02, 0.03)
BATCH = 20


def exposure_z(df: pd.DataFrame, check: str, rule: str, params: CleanParams) -> np.ndarray:
    """How many robust z's darker (``dark``) / brighter than the dataset each image is under
    ``rule``: on the log mean and the log 99th percentile (bright: log distance to white of the
    mean and of the 1st percentile); -inf where the mean is within ``min_brightness_shift`` of
    the median or the image is constant."""
    sign = -1.0 if check == "dark" else 1.0
    mean, end = df["brightness"], df["highlight" if check == "dark" else "shadow"]
    zs = [-_spread_z(np.log2((v if sign < 0 else 1.0 - v) + _EPS)).to_numpy() for v in (mean, end)]
    shifted = (mean - mean.median()) * sign > params.min_brightness_shift
    far = shifted & (df["value_range"] > 0)  # constant images are "blank" instead
    return np.where(far.to_numpy(), EXPOSURE_RULES[rule](*zs), -np.inf)


def exposure_scores(
    df: pd.DataFrame, extra: pd.DataFrame, check: str, rule: str, params: CleanParams
) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """The z of the unplanted images (in ``df``, with its planted copies) and of every copy of
    ``extra``, added to the unplanted images :data:`BATCH` at a time (so each is judged in a
    dataset like ``df``); and how each copy was made."""
    normal = (df["kind"] == "normal").to_numpy()
    copies = extra[extra["kind"] == TARGET[check]]
    found = []
    for start in range(0, len(copies), BATCH):
        batch = pd.concat([df[normal], copies.iloc[start : start + BATCH]], ignore_index=True)
        found.append(exposure_z(batch, check, rule, params)[normal.sum() :])
    planted = np.concatenate(found) if found else np.empty(0)
    return exposure_z(df, check, rule, params)[normal], planted, copies["how"]


def _recall(flags: np.ndarray, how: pd.Series) -> str:
    if not len(flags):
        return "-"
    ways = "/".join(f"{flags[(how == w).to_numpy()].mean():.2f}" for w in ("scale", "gamma"))
    return f"{flags.mean():.2f} ({ways})"


def exposure_report(df: pd.DataFrame, extra: pd.DataFrame, params: CleanParams) -> None:
    """Dark and bright under the rule before and now, on ``df``'s own planted copies and on the
    more numerous ``extra`` ones (recall per way: all (scale/gamma)); a sweep of both rules; and
    the best recall any threshold reaches at :data:`CAPS` false flags, per rule."""
    n_extra = {c: int((extra["kind"] == c).sum()) for c in ("dark", "bright")}
    print(f"dark / bright: {BEFORE_RULE} z > {BEFORE_Z:g} (before) vs both z > "
          f"{params.brightness_z:g} (now); recall on the planted | on {n_extra} more "
          "(scale/gamma)")  # fmt: skip
    for check in ("dark", "bright"):
        planted = (df["kind"] == TARGET[check]).to_numpy()
        normal = (df["kind"] == "normal").to_numpy()
        for rule, z in ((BEFORE_RULE, BEFORE_Z), ("both", params.brightness_z)):
            flags = exposure_z(df, check, rule, params) > z
            _, more, how = exposure_scores(df, extra, check, rule, params)
            base = f"{flags[planted].mean():.2f}" if planted.any() else "-"
            print(f"  {check:6s} {rule:4s} z {z:g}: recall {base} | {_recall(more > z, how):16s} "
                  f"false flags {flags[normal].mean():.2%} ({flags[normal].sum()})")  # fmt: skip
        for rule in EXPOSURE_RULES:
            unplanted, more, how = exposure_scores(df, extra, check, rule, params)
            cells = [f"{z:g}: {_recall(more > z, how)}/{(unplanted > z).mean():.1%}"
                     for z in Z_STEPS]  # fmt: skip
            print(f"    sweep {check} {rule} (recall/false): " + "  ".join(cells))
            if len(more):
                best = []
                for cap in CAPS:  # the lowest z that keeps false flags within the cap
                    top = np.sort(unplanted)[::-1]
                    z = top[min(int(cap * len(top)), len(top) - 1)]
                    best.append(f"<= {cap:.0%}: {_recall(more > z, how)} at z {z:.1f}")
                print(f"      best {check} {rule}: " + "  ".join(best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--exposure", type=int, default=200, help="more dark and bright copies, judged apart"
    )
    args = parser.parse_args()
    sources = _sources()
    params = CleanParams()
    crops = {"photos": PHOTOS, "science": SCIENCE, "mixed": PHOTOS + SCIENCE}
    corpora = {
        name: crop_corpus(sources, names, args.crops, args.seed + i, exposure=args.exposure)
        for i, (name, names) in enumerate(crops.items())
    }
    for i, (name, size) in enumerate((("digits8", 8), ("digits32", 32), ("strokes28", 28)), 3):
        corpora[name] = (digit_corpus(size, args.seed + i, strokes=size == 28), NO_COPIES)
    keys = {"z_threshold", "brightness_z", "min_brightness_shift", "low_entropy",
            "saturated_fraction"}  # fmt: skip
    print(f"defaults: {params.model_dump(include=keys)}")
    for name, (df, extra) in corpora.items():
        report(name, df, extra, params)


if __name__ == "__main__":
    main()
