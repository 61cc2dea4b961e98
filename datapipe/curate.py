"""Curation: what happens to each sample before training, from the scores, a policy and an
optional human review. Nothing is deleted: a dropped sample is a row with ``action = drop``.

Precedence, highest first:

1. clean's integrity exclusions (``action = exclude``): unreadable or broken samples stay out,
   whatever a review says;
2. the review file (``source = review``): ``keep`` / ``drop`` / ``relabel`` per sample;
3. the policy for flagged label issues (``source = auto``), only in ``policy.splits``;
4. everything else is kept with weight 1.

Actions and weights: ``keep`` 1, ``relabel`` 1 (with ``final_label`` the new class),
``downweight`` max(``min_weight``, ``label_quality``), ``drop`` and ``exclude`` 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from datapipe import tasks
from datapipe.config import CurateParams
from datapipe.errors import DatapipeError
from datapipe.tasks import TaskModule

Action = Literal["keep", "drop", "relabel", "downweight", "exclude"]
ACTIONS: tuple[Action, ...] = ("keep", "relabel", "downweight", "drop", "exclude")
#: the actions whose samples train (with their weight)
TRAINING_ACTIONS: tuple[Action, ...] = ("keep", "relabel", "downweight")
DECISIONS = ("keep", "drop", "relabel")
CURATED_COLUMNS = (
    "sample_id", "image", "split", "fold", "given_label", "action", "final_label",
    "final_label_index", "weight", "difficulty", "label_quality", "source", "reason", "note",
)  # fmt: skip
REVIEW_COLUMNS = ("sample_id", "decision", "label", "note")
REVIEW_SHEET = (
    "sample_id", "decision", "label", "note", "image", "given_label", "suggested_label",
    "label_quality", "reasons", "auto_action",
)  # fmt: skip


@dataclass(frozen=True)
class CurateResult:
    curated: pd.DataFrame  # CURATED_COLUMNS (+ mask for segmentation), one row per sample
    summary: pd.DataFrame  # per class: a count per action
    metrics: dict[str, Any]
    objects: pd.DataFrame | None = None  # object tasks: one row per box (detect.curate)

    def describe(self, name: str) -> str:
        m = self.metrics
        return (
            f"{name}: keep {m['keep']}, relabel {m['relabel']}, downweight {m['downweight']}, "
            f"drop {m['drop']}, exclude {m['exclude']} ({m['reviewed']} reviewed)"
        )


def curate(
    scores: pd.DataFrame,
    *,
    classes: Sequence[str],
    task: str | TaskModule,
    policy: CurateParams,
    review: pd.DataFrame | None = None,
    review_name: str = "review",
) -> CurateResult:
    """Decide an action, final label and weight for every row of ``scores``.

    ``scores`` is the score stage's table (every manifest row, with ``excluded``, ``scored``,
    ``is_label_issue``, ``label_quality``, ``difficulty``, ``suggested_label`` and, for
    classification, ``prob_<class>``); ``review`` the reviewer's sheet (see
    :func:`validate_review`).

    Long by design: the precedence rules above, applied in order in one place.
    """
    task = tasks.get(task)
    label_action = _resolve_policy(policy, task)
    out = scores[[c for c in ("sample_id", "image", "mask", "split", "fold") if c in scores]]
    out = out.copy()
    given = scores["given_label"] if "given_label" in scores else pd.Series([None] * len(scores))
    out["given_label"] = given.to_numpy(object)
    out["label_quality"] = scores["label_quality"].to_numpy(np.float64)
    out["difficulty"] = scores["difficulty"].to_numpy(np.float64)
    action = np.full(len(scores), "keep", object)
    final = out["given_label"].to_numpy(object).copy()
    source = np.full(len(scores), "auto", object)
    reason = np.full(len(scores), "", object)
    note = np.full(len(scores), "", object)

    flagged = scores["is_label_issue"].fillna(False).to_numpy(bool)
    in_scope = scores["split"].isin(policy.splits).to_numpy(bool)
    auto = flagged & in_scope
    reason[flagged] = scores["reasons"].fillna("").to_numpy(object)[flagged]
    action[auto] = label_action
    if label_action == "relabel":
        suggestion = _confident_suggestion(scores, classes, policy.relabel_min_prob)
        relabel = auto & suggestion.notna().to_numpy(bool)
        final[relabel] = suggestion.to_numpy(object)[relabel]
        action[auto & ~relabel] = policy.otherwise
    if review is not None and len(review):
        rows = pd.Index(scores["sample_id"]).get_indexer(review["sample_id"])
        decided = review["decision"].to_numpy(object)
        action[rows] = decided
        source[rows] = "review"
        note[rows] = review["note"].fillna("").astype(str).to_numpy(object)
        relabelled = decided == "relabel"
        final[rows[relabelled]] = review["label"].to_numpy(object)[relabelled]
        kept = decided == "keep"
        final[rows[kept]] = out["given_label"].to_numpy(object)[rows[kept]]
    excluded = scores["excluded"].fillna(False).to_numpy(bool)
    action[excluded] = "exclude"
    source[excluded] = "clean"
    if "exclude_reason" in scores:
        reason[excluded] = scores["exclude_reason"].fillna("").to_numpy(object)[excluded]

    out["action"] = action
    final[np.isin(action, ["drop", "exclude"])] = None
    out["final_label"] = final
    out["final_label_index"] = _indices(out["final_label"], classes, task)
    out["weight"] = _weights(action, out["label_quality"].to_numpy(), policy.min_weight)
    out["difficulty"] = _difficulty(scores, out, classes, task)
    out["source"], out["reason"], out["note"] = source, reason, note
    out = out[[c for c in CURATED_COLUMNS if c in out] + (["mask"] if "mask" in out else [])]
    return CurateResult(out, curation_summary(out, classes, task), _metrics(out, review_name))


def curate_run(
    scores: pd.DataFrame,
    clean_manifest: pd.DataFrame,
    *,
    classes: Sequence[str],
    task: str | TaskModule,
    policy: CurateParams,
    review_path: Path,
    objects: pd.DataFrame | None = None,
    box_issues: pd.DataFrame | None = None,
    data_issues: pd.DataFrame | None = None,
) -> CurateResult:
    """The curate stage's work: clean's exclusion reasons joined to the scores, the review
    sheet at ``review_path`` validated when there is one, then :func:`curate`; for object
    tasks the boxes too (``objects``, the score stage's ``box_issues`` and clean's
    ``data_issues``; the object sheet beside the image sheet, ``<dataset>_objects.csv``)."""
    scores = scores.merge(
        clean_manifest[["sample_id", "exclude_reason"]], on="sample_id", how="left"
    )
    from datapipe.review import read_sheet  # review builds on this module

    review = None
    if review_path.exists():
        review = validate_review(
            read_sheet(review_path), sample_ids=scores["sample_id"].tolist(), classes=classes,
            task=task, name=str(review_path),
        )  # fmt: skip
    result = curate(
        scores, classes=classes, task=task, policy=policy, review=review,
        review_name=str(review_path) if review is not None else "",
    )  # fmt: skip
    if not tasks.get(task).objects or objects is None:
        return result
    from datapipe.detect.curate import curate_objects, object_metrics, validate_object_review

    sheet = object_review_path(review_path)
    object_review = None
    if sheet.exists():
        object_review = validate_object_review(
            read_sheet(sheet), objects=objects, sample_ids=scores["sample_id"].tolist(),
            classes=classes, name=str(sheet),
        )  # fmt: skip
    curated = curate_objects(
        objects, result.curated, box_issues=box_issues if box_issues is not None
        else pd.DataFrame(columns=["sample_id", "object_id", "issue"]),
        data_issues=data_issues if data_issues is not None
        else pd.DataFrame(columns=["sample_id", "object_id", "check"]),
        classes=classes, policy=policy, review=object_review,
    )  # fmt: skip
    metrics = result.metrics | object_metrics(curated)
    return CurateResult(result.curated, result.summary, metrics, curated)


def empty_curated_objects() -> pd.DataFrame:
    """curated_objects.parquet of a task without objects: the columns, no rows."""
    from datapipe.detect.curate import CURATED_OBJECT_COLUMNS

    return pd.DataFrame({c: pd.Series(dtype=object) for c in CURATED_OBJECT_COLUMNS})


def object_review_path(review_path: Path) -> Path:
    """The object sheet beside an image review sheet: ``reviews/<dataset>_objects.csv``."""
    return review_path.with_name(f"{review_path.stem}_objects.csv")


def _resolve_policy(policy: CurateParams, task: TaskModule) -> str:
    if policy.label_issues == "auto":
        return task.label_issue_action
    if policy.label_issues == "relabel" and not task.image_labels:
        raise DatapipeError(
            f"curate.label_issues: relabel needs a suggested class, which a {task.name} mask "
            "does not have; use drop, downweight or keep (or fix masks by hand and review)"
        )
    return policy.label_issues


def _confident_suggestion(
    scores: pd.DataFrame, classes: Sequence[str], min_prob: float
) -> pd.Series:
    """The suggested label where its OOF probability reaches ``min_prob``, else NA."""
    suggested = scores["suggested_label"]
    prob = pd.Series(np.nan, index=scores.index)
    for name in classes:
        column = f"prob_{name}"
        if column in scores:
            hit = suggested == name
            prob[hit] = scores.loc[hit, column]
    ok = suggested.notna() & (suggested != scores["given_label"]) & (prob >= min_prob)
    return suggested.where(ok)


def _indices(labels: pd.Series, classes: Sequence[str], task: TaskModule) -> np.ndarray:
    if not task.image_labels:
        return np.full(len(labels), -1, np.int64)
    lookup = {name: i for i, name in enumerate(classes)}
    return np.array([lookup.get(x, -1) if isinstance(x, str) else -1 for x in labels], np.int64)


def _weights(action: np.ndarray, quality: np.ndarray, min_weight: float) -> np.ndarray:
    weight = np.ones(len(action))
    down = action == "downweight"
    weight[down] = np.maximum(min_weight, np.nan_to_num(quality[down], nan=min_weight))
    weight[np.isin(action, ["drop", "exclude"])] = 0.0
    return np.clip(weight, 0.0, 1.0)


def _difficulty(
    scores: pd.DataFrame, out: pd.DataFrame, classes: Sequence[str], task: TaskModule
) -> np.ndarray:
    """1 - p(final label) for image labels (a relabelled sample is easy for its new label);
    the score stage's difficulty otherwise (masks)."""
    difficulty = out["difficulty"].to_numpy(np.float64).copy()
    if task.image_labels:
        for name in classes:
            column = f"prob_{name}"
            hit = ((out["final_label"] == name) & (out["action"] == "relabel")).to_numpy(bool)
            if column in scores and hit.any():
                difficulty[hit] = 1.0 - scores[column].to_numpy(np.float64)[hit]
    return difficulty


def curation_summary(
    curated: pd.DataFrame, classes: Sequence[str], task: str | TaskModule
) -> pd.DataFrame:
    """One row per class (the given label; one ``all`` row for masks) with a count per
    action, plus ``relabelled_in`` (samples relabelled into the class) and ``total``."""
    key = (
        curated["given_label"] if tasks.get(task).image_labels else pd.Series("all", curated.index)
    )
    counts = pd.crosstab(key.fillna("(none)"), curated["action"])
    counts = counts.reindex(columns=list(ACTIONS), fill_value=0)
    order = [c for c in classes if c in counts.index]
    order += [c for c in counts.index if c not in order]
    counts = counts.reindex(order)
    relabelled = curated.loc[curated["action"] == "relabel", "final_label"].value_counts()
    counts["relabelled_in"] = relabelled.reindex(counts.index, fill_value=0).to_numpy()
    counts["total"] = counts[list(ACTIONS)].sum(axis=1)
    counts.index.name = "class"
    return counts.reset_index()


def _metrics(curated: pd.DataFrame, review_name: str) -> dict[str, Any]:
    actions = curated["action"].value_counts()
    return {
        "samples": len(curated),
        **{f"{a}": int(actions.get(a, 0)) for a in ACTIONS},
        "reviewed": int((curated["source"] == "review").sum()),
        "review_file": review_name,
        "training_weight": float(curated.loc[curated["split"] == "train", "weight"].sum()),
    }


def validate_review(
    review: pd.DataFrame,
    *,
    sample_ids: Sequence[str],
    classes: Sequence[str],
    task: str | TaskModule,
    name: str = "review",
) -> pd.DataFrame:
    """Check a reviewer's sheet and return its decided rows (``REVIEW_COLUMNS``).

    Rows with an empty ``decision`` are ignored (the automated decision stands). Errors name
    the file and the row as a spreadsheet shows it (header = row 1).
    """
    missing = [c for c in ("sample_id", "decision") if c not in review]
    if missing:
        raise DatapipeError(f"{name}: missing column(s) {missing}; expected {list(REVIEW_COLUMNS)}")
    review = review.copy()
    for column in ("label", "note"):
        if column not in review:
            review[column] = ""
    review["decision"] = review["decision"].fillna("").astype(str).str.strip().str.lower()
    review["label"] = review["label"].fillna("").astype(str).str.strip()
    review["sample_id"] = review["sample_id"].fillna("").astype(str).str.strip()
    known, names = set(sample_ids), set(classes)
    seen: dict[str, int] = {}
    rows = zip(review["sample_id"], review["decision"], review["label"], strict=True)
    for position, (sample_id, decision, label) in enumerate(rows, start=2):
        where = f"{name} row {position}"
        if not decision:
            continue
        if decision not in DECISIONS:
            raise DatapipeError(f"{where}: decision {decision!r}; expected one of {DECISIONS}")
        if sample_id not in known:
            raise DatapipeError(f"{where}: unknown sample_id {sample_id!r}")
        if sample_id in seen:
            raise DatapipeError(
                f"{where}: sample_id {sample_id!r} already decided on row {seen[sample_id]}"
            )
        seen[sample_id] = position
        if decision == "relabel":
            if not tasks.get(task).image_labels:
                raise DatapipeError(
                    f"{where}: relabel is for image labels; fix the mask by hand and keep it"
                )
            if label not in names:
                raise DatapipeError(
                    f"{where}: unknown class {label!r}; classes are {sorted(names)}"
                )
    decided = review[review["decision"] != ""]
    return decided[list(REVIEW_COLUMNS)].reset_index(drop=True)


def review_sheet(
    label_issues: pd.DataFrame, curated: pd.DataFrame | None, existing: pd.DataFrame | None
) -> pd.DataFrame:
    """A sheet of the flagged samples, worst first, for a reviewer to fill ``decision`` in.

    ``label`` is pre-filled with the suggestion, so relabelling is one word. Rows already in
    ``existing`` keep the reviewer's ``decision``, ``label`` and ``note`` (exporting again
    never loses work); rows only in ``existing`` stay at the end.
    """
    sheet = pd.DataFrame({
        "sample_id": label_issues["sample_id"].astype(str),
        "decision": "",
        "label": label_issues.get("suggested_label", pd.Series("", label_issues.index)).fillna(""),
        "note": "",
    })  # fmt: skip
    for column in ("image", "given_label", "suggested_label", "label_quality", "reasons"):
        sheet[column] = label_issues[column].to_numpy() if column in label_issues else ""
    sheet["auto_action"] = ""
    if curated is not None:
        auto = curated.set_index("sample_id")["action"]
        sheet["auto_action"] = sheet["sample_id"].map(auto).fillna("").to_numpy()
    if existing is not None and len(existing):
        prior = existing.astype({"sample_id": str}).set_index("sample_id")
        for column in ("decision", "label", "note"):
            if column in prior:
                kept = sheet["sample_id"].map(prior[column].fillna("").astype(str))
                has = sheet["sample_id"].isin(prior.index)
                sheet.loc[has, column] = kept[has]
        extra = prior.loc[~prior.index.isin(sheet["sample_id"])].reset_index()
        sheet = pd.concat([sheet, extra.reindex(columns=list(REVIEW_SHEET), fill_value="")])
    return sheet[list(REVIEW_SHEET)].reset_index(drop=True)
