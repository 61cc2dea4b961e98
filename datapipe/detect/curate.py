"""Per-object curation: what happens to each given box before the final detector trains.
Nothing is deleted: a dropped box is a row with ``action = drop``.

Precedence, highest first (as for images, ``datapipe.curate``):

1. clean's object errors (``action = exclude``): an entry that does not parse, a degenerate
   or outside box, an instance mask that does not decode;
2. the object review sheet ``reviews/<dataset>_objects.csv`` (``source = review``), keyed by
   ``sample_id`` + ``object_id``: ``keep`` / ``drop`` / ``relabel`` (``label``) / ``rebox``
   (``box`` = ``[x0, y0, x1, y1]`` pixels); ``add`` with an empty ``object_id`` adds a box the
   annotators missed (the one way a box is added);
3. the policy (``curate.boxes``), for flagged boxes in ``curate.splits`` only: ``fix``
   relabels a wrong-class box to its confident suggestion and replaces a mislocated box with
   the suggested one (a flagged box without a suggestion is kept), ``drop`` drops every
   flagged box, ``keep`` leaves them;
4. a box of an image that is dropped or excluded is ``drop``; everything else is ``keep``.

The test split stays as given (the policy does not change it; reviews still apply).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from datapipe.errors import DatapipeError

#: curated_objects.parquet: one row per given box (and per box a review adds)
CURATED_OBJECT_COLUMNS = (
    "sample_id", "image", "object_id", "split", "given_class", "action", "final_class",
    "x0", "y0", "x1", "y1", "source", "reason", "note", "instance_mask",
)  # fmt: skip
OBJECT_ACTIONS = ("keep", "relabel", "rebox", "add", "drop", "exclude")
#: the actions whose boxes the final detector trains on
TRAINING_OBJECT_ACTIONS = ("keep", "relabel", "rebox", "add")
OBJECT_DECISIONS = ("keep", "drop", "relabel", "rebox", "add")
OBJECT_REVIEW_COLUMNS = ("sample_id", "object_id", "decision", "label", "box", "note")
#: clean's object checks whose box cannot be trained on as given
EXCLUDING_OBJECT_CHECKS = ("annotation_problem", "box_degenerate", "box_outside", "mask_invalid")


def curate_objects(
    objects: pd.DataFrame,
    images: pd.DataFrame,
    *,
    box_issues: pd.DataFrame,
    data_issues: pd.DataFrame,
    classes: Sequence[str],
    policy: Any,
    review: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per object (:data:`CURATED_OBJECT_COLUMNS`). ``objects`` is objects.parquet,
    ``images`` the curated image table (``sample_id``, ``split``, ``action``), ``box_issues``
    the score stage's label_issues.csv, ``data_issues`` clean's, ``review`` an object sheet
    checked by :func:`validate_object_review`. Long by design: the precedence above, in order."""
    split = images.set_index("sample_id")["split"]
    image_action = images.set_index("sample_id")["action"]
    out = pd.DataFrame({
        "sample_id": objects["sample_id"].astype(str), "image": objects["image"].astype(str),
        "object_id": objects["object_id"].astype(str),
        "given_class": objects["class"].astype(str),
        **{c: objects[c].to_numpy(np.float64) for c in ("x0", "y0", "x1", "y1")},
        "instance_mask": objects.get("instance_mask", pd.Series("", objects.index))
        .fillna("").astype(str).to_numpy(object),
    })  # fmt: skip
    out["split"] = out["sample_id"].map(split).fillna("").to_numpy(object)
    final = out["given_class"].to_numpy(object).copy()
    box = out[["x0", "y0", "x1", "y1"]].to_numpy(np.float64).copy()
    action = np.full(len(out), "keep", object)
    source = np.full(len(out), "auto", object)
    reason = np.full(len(out), "", object)
    note = np.full(len(out), "", object)
    key = pd.Index(out["sample_id"] + "/" + out["object_id"])

    text = ["object_id", "issue", "suggested_class", "suggested_box"]  # NaN from CSV cells -> ""
    box_issues = box_issues.assign(**{c: box_issues[c].fillna("").astype(str) for c in text})
    flagged = box_issues[box_issues["object_id"] != ""]
    at = key.get_indexer(_keys(flagged))
    flagged, at = flagged[at >= 0], at[at >= 0]
    reason[at] = flagged["issue"].astype(str).to_numpy(object)
    in_scope = out["split"].isin(policy.splits).to_numpy(bool)
    for i, issue in zip(at.tolist(), flagged.to_dict("records"), strict=True):
        if not in_scope[i] or policy.boxes == "keep":
            continue
        if policy.boxes == "drop":
            action[i] = "drop"
        elif issue["issue"] == "wrong_class" and issue.get("suggested_class"):
            action[i], final[i] = "relabel", issue["suggested_class"]
        elif issue["issue"] == "mislocated" and issue.get("suggested_box"):
            action[i], box[i] = "rebox", parse_box(issue["suggested_box"])

    added = []
    for r in review.to_dict("records") if review is not None else []:
        if r["decision"] == "add":
            added.append(_added_row(r, split))
            continue
        i = int(key.get_indexer(pd.Index([f"{r['sample_id']}/{r['object_id']}"]))[0])
        action[i], source[i], note[i] = r["decision"], "review", r["note"]
        if r["decision"] == "relabel":
            final[i] = r["label"]
        elif r["decision"] == "rebox":
            box[i] = parse_box(r["box"])
        elif r["decision"] == "keep":
            final[i], box[i] = out["given_class"].iat[i], out[["x0", "y0", "x1", "y1"]].iloc[i]

    errors = data_issues[data_issues["check"].isin(EXCLUDING_OBJECT_CHECKS)]
    bad = key.get_indexer(_keys(errors))
    bad_checks = errors["check"].to_numpy(object)[bad >= 0]
    bad = bad[bad >= 0]
    action[bad], source[bad], reason[bad] = "exclude", "clean", bad_checks
    gone = out["sample_id"].map(image_action).isin(["drop", "exclude"]).to_numpy(bool)
    action[gone & (action != "exclude")] = "drop"
    source[gone & (source == "auto")] = "image"

    out["action"], out["source"], out["reason"], out["note"] = action, source, reason, note
    out["final_class"] = final
    out[["x0", "y0", "x1", "y1"]] = box
    if added:
        out = pd.concat([out, pd.DataFrame(added)], ignore_index=True)
    out.loc[out["action"].isin(["drop", "exclude"]), "final_class"] = ""
    return out[list(CURATED_OBJECT_COLUMNS)]


def _keys(table: pd.DataFrame) -> pd.Index:
    """``sample_id/object_id`` of each row (the object key)."""
    return pd.Index(table["sample_id"].astype(str) + "/" + table["object_id"].astype(str))


def _added_row(r: dict[Any, Any], split: pd.Series) -> dict[str, Any]:
    x0, y0, x1, y1 = parse_box(r["box"])
    return {"sample_id": r["sample_id"], "image": "", "object_id": f"review:{r['row']}",
            "split": split.get(r["sample_id"], ""), "given_class": "", "action": "add",
            "final_class": r["label"], "x0": x0, "y0": y0, "x1": x1, "y1": y1,
            "source": "review", "reason": "", "note": r["note"], "instance_mask": ""}  # fmt: skip


def parse_box(text: Any) -> tuple[float, float, float, float]:
    """``"[x0, y0, x1, y1]"`` (or a sequence) -> four floats with x1 > x0 and y1 > y0;
    :class:`ValueError` saying what it got otherwise."""
    values = json.loads(text) if isinstance(text, str) else list(text)
    if len(values) != 4:
        raise ValueError(f"expected a box [x0, y0, x1, y1]; got {text!r}")
    x0, y0, x1, y1 = (float(v) for v in values)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"expected x1 > x0 and y1 > y0; got {text!r}")
    return x0, y0, x1, y1


def validate_object_review(
    review: pd.DataFrame,
    *,
    objects: pd.DataFrame,
    sample_ids: Sequence[str],
    classes: Sequence[str],
    name: str = "review",
) -> pd.DataFrame:
    """Check an object review sheet; returns its decided rows (:data:`OBJECT_REVIEW_COLUMNS`
    plus ``row``). Errors name the file and the row as a spreadsheet shows it."""
    missing = [c for c in ("sample_id", "object_id", "decision") if c not in review]
    if missing:
        raise DatapipeError(
            f"{name}: missing column(s) {missing}; expected {list(OBJECT_REVIEW_COLUMNS)}"
        )
    review = review.copy()
    for column in OBJECT_REVIEW_COLUMNS:
        review[column] = review.get(column, pd.Series("", review.index)).fillna("").astype(str)
        review[column] = review[column].str.strip()
    review["decision"] = review["decision"].str.lower()
    review["row"] = np.arange(2, len(review) + 2)
    known = set(objects["sample_id"].astype(str) + "/" + objects["object_id"].astype(str))
    images, names = set(sample_ids), set(classes)
    seen: dict[str, int] = {}
    for r in review.to_dict("records"):
        where, decision = f"{name} row {r['row']}", r["decision"]
        if not decision:
            continue
        if decision not in OBJECT_DECISIONS:
            raise DatapipeError(f"{where}: decision {decision!r}; expected one of "
                                f"{OBJECT_DECISIONS}")  # fmt: skip
        if r["sample_id"] not in images:
            raise DatapipeError(f"{where}: unknown sample_id {r['sample_id']!r}")
        if decision == "add" and r["object_id"]:
            raise DatapipeError(f"{where}: add makes a new box; leave object_id empty")
        pair = f"{r['sample_id']}/{r['object_id']}"
        if decision != "add":
            if pair not in known:
                raise DatapipeError(f"{where}: no object {r['object_id']!r} in {r['sample_id']}")
            if pair in seen:
                raise DatapipeError(f"{where}: object already decided on row {seen[pair]}")
            seen[pair] = r["row"]
        if decision in ("relabel", "add") and r["label"] not in names:
            raise DatapipeError(f"{where}: unknown class {r['label']!r}; classes are "
                                f"{sorted(names)}")  # fmt: skip
        if decision in ("rebox", "add"):
            try:
                parse_box(r["box"])
            except (ValueError, TypeError) as exc:
                raise DatapipeError(f"{where}: box: {exc}") from None
    decided = review[review["decision"] != ""]
    return decided[[*OBJECT_REVIEW_COLUMNS, "row"]].reset_index(drop=True)


def object_metrics(curated: pd.DataFrame) -> dict[str, Any]:
    """Counts per object action and how many boxes the final detector trains on."""
    actions = curated["action"].value_counts()
    return {
        "objects": len(curated),
        **{f"objects_{a}": int(actions.get(a, 0)) for a in OBJECT_ACTIONS},
        "objects_reviewed": int((curated["source"] == "review").sum()),
        "training_objects": int(
            (curated["action"].isin(TRAINING_OBJECT_ACTIONS) & (curated["split"] == "train")).sum()
        ),
    }
