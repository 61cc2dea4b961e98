"""The parts of the report that differ for object tasks (detection, instance segmentation):
objects per class, COCO metrics and per-class AP, per-object label issues, and the object
hard-example gallery. :mod:`datapipe.report.sections` asks the task module (``.objects``) and
calls these; each returns HTML for its section's body.

Inputs (see :mod:`datapipe.detect.score`): ``reports/label_issues.csv`` has one row per flagged
object (``issue``, ``given_class`` / ``given_box``, ``suggested_class`` / ``suggested_box``,
``box_score``; a missing box has no ``object_id``); ``reports/hard_examples.csv`` one row per
hard / easy positive object and per confident false alarm (``role``, ``kind``, ``difficulty``,
``iou``, ``score``; a ``predicted_box`` column, where the score stage writes one, is drawn
dashed on the false alarm's card); the COCO metrics are ``map``, ``map_50``, ... (``oof_``
first for the out-of-fold ones) with ``map_per_class`` ``{class: AP or None}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from datapipe.report.boxes import Marks, parse_box
from datapipe.report.cards import (
    Context,
    by_id,
    cards,
    curation_line,
    facets,
    file_name,
    filter_bar,
    is_given,
    records,
    shown_note,
    splits_of,
)
from datapipe.report.charts import (
    bars,
    box_legend,
    esc,
    key_values,
    metric_details,
    not_available,
    note,
    quality_histogram,
    table,
)
from datapipe.report.inputs import ReportInputs, is_number

#: COCO's summary numbers in its own order: (key, what people call it).
COCO_METRICS = (
    ("map", "AP (IoU .50:.95)"), ("map_50", "AP50"), ("map_75", "AP75"),
    ("map_small", "AP small (< 32² px)"), ("map_medium", "AP medium"),
    ("map_large", "AP large (> 96² px)"), ("mar_1", "AR, 1 detection per image"),
    ("mar_10", "AR, 10 detections"), ("mar_100", "AR, 100 detections"),
    ("mar_max", "AR, detections_per_img"), ("mar_small", "AR small"),
    ("mar_medium", "AR medium"), ("mar_large", "AR large"),
)  # fmt: skip
#: What each per-object label issue means (``issue`` in label_issues.csv).
ISSUE_TEXT = {
    "wrong_class": "the model finds this box with another class",
    "mislocated": "the model's best box of this class overlaps it poorly",
    "missing": "a confident prediction that no given box matches",
    "spurious": "a given box no prediction supports",
}
#: Where a confident false alarm fired (``kind`` of a hard negative).
NEGATIVE_TEXT = {
    "background": "on background",
    "wrong_class": "on an object of another class",
    "duplicate": "a second box on an object already found",
}
HARD_ROLES = ("hard_positive", "hard_negative")
ROLE_COUNTS = ("hard_positive", "easy_positive", "hard_negative")
UNDEFINED = "—"  # an AP COCO leaves undefined (no object of that class or size)
MANY_OBJECTS = 20  # the objects-per-image histogram's last bar: this many or more


def class_index(classes: Sequence[str], name: Any) -> int:
    """``name``'s place in ``classes`` (its colour), -1 when it is not one of them."""
    return list(classes).index(name) if isinstance(name, str) and name in classes else -1


# ---------------------------------------------------------------- overview


def class_split(inputs: ReportInputs) -> str:
    """Objects per class and split (stats.json), images with the class, and box sizes."""
    by_split = inputs.stats.object_counts_by_split
    if not by_split:
        return note("no objects in stats.json", kind="info")
    counts = pd.DataFrame(by_split).fillna(0).astype("int64")
    order = [s for s in ("train", "val", "test") if s in counts.columns]
    counts = counts[order + [c for c in counts.columns if c not in order]]
    counts["total"] = counts.sum(axis=1)
    wanted = [c for c in inputs.classes if c in counts.index]
    counts = counts.reindex(wanted + sorted(set(counts.index) - set(wanted)))
    objects = inputs.objects
    if objects is not None and not objects.empty:
        images = objects.groupby(objects["class"].astype(str))["sample_id"].nunique()
        counts["images"] = images.reindex(counts.index).fillna(0).astype("int64")
    counts.index.name = "objects of class"
    parts = [table(counts.reset_index()), box_legend(inputs.classes, marks=False)]
    if objects is not None and not objects.empty:
        parts.append(_box_sizes(objects, inputs.manifest["sample_id"].astype(str)))
    return "".join(parts)


def _box_sizes(objects: pd.DataFrame, sample_ids: pd.Series) -> str:
    """Boxes by COCO's area ranges (small < 32², medium < 96², large), and objects per
    image (of ``sample_ids``, so images without objects count too)."""
    width = (objects["x1"] - objects["x0"]).clip(lower=0)
    area = width * (objects["y1"] - objects["y0"]).clip(lower=0)
    sizes = pd.cut(area, [-1.0, 32.0**2, 96.0**2, np.inf], labels=["small", "medium", "large"])
    counts = objects.groupby(objects["sample_id"].astype(str)).size()
    counts = counts.reindex(sample_ids, fill_value=0).clip(upper=MANY_OBJECTS)
    per_image = counts.value_counts().sort_index()
    per_image.index = [f"{n}+" if n == MANY_OBJECTS else str(n) for n in per_image.index]
    return (
        '<div class="hists">'
        + bars(sizes.value_counts().reindex(["small", "medium", "large"], fill_value=0),
               title="box size (COCO area ranges)", sort=False)
        + bars(per_image, title="objects per image", sort=False)
        + "</div>"
    )  # fmt: skip


# ---------------------------------------------------------------- metrics


def coco_table(metrics: Mapping[str, Any], *, prefix: str = "") -> str:
    """COCO's summary numbers of ``metrics`` (keys ``prefix + map`` ...); a number COCO
    leaves undefined (no object of that size) shows as a dash. Instance masks' numbers
    (``mask_map`` ...) get a column of their own."""
    masks = any(f"{prefix}mask_{key}" in metrics for key, _ in COCO_METRICS)
    rows = []
    for key, label in COCO_METRICS:
        if f"{prefix}{key}" not in metrics and f"{prefix}mask_{key}" not in metrics:
            continue
        row = {"metric": label, "key": f"{prefix}{key}", "box": _value(metrics.get(prefix + key))}
        if masks:
            row["mask"] = _value(metrics.get(f"{prefix}mask_{key}"))
        rows.append(row)
    if not rows:
        return note("no COCO metrics in this file", kind="na")
    return table(pd.DataFrame(rows), cls="data coco")


def ap_table(
    per_class: Mapping[str, Any],
    classes: Sequence[str],
    *,
    columns: Mapping[str, Mapping[str, Any]] | None = None,
    name: str = "AP",
) -> str:
    """Every class with its AP (a dash where COCO leaves it undefined: no object of the
    class there), then each of ``columns`` (more numbers per class)."""
    known = list(classes) + sorted(set(map(str, per_class)) - set(classes))
    rows = []
    for cls in known:
        row: dict[str, Any] = {"class": cls, name: _value(per_class.get(cls))}
        for column, values in (columns or {}).items():
            row[column] = values.get(cls, 0)
        rows.append(row)
    return table(pd.DataFrame(rows), cls="data per-class-ap")


def _value(value: Any) -> Any:
    return float(value) if is_number(value) else UNDEFINED


def oof_metrics(inputs: ReportInputs) -> str:
    """The score stage's held-out COCO metrics and per-class AP, with each class's objects
    and hard examples."""
    score = inputs.metrics.get("score")
    if score is None:
        return not_available("scoring metrics", inputs.missing.get("metrics/score", ""))
    parts = ["<h3>Out-of-fold detection quality</h3>", note(
        "each image judged by a detector that never trained on it; low AP makes every "
        "flag below less certain", kind="info",
    ), coco_table(score, prefix="oof_")]  # fmt: skip
    per_class = score.get("oof_map_per_class")
    if isinstance(per_class, Mapping):
        columns: dict[str, Mapping[str, Any]] = {"objects": inputs.stats.object_counts}
        columns |= _role_counts(inputs.hard_examples)
        parts.append("<h4>AP per class (out of fold)</h4>")
        parts.append(ap_table(per_class, inputs.classes, columns=columns, name="OOF AP"))
    return "".join(parts)


def _role_counts(hard: pd.DataFrame | None) -> dict[str, Mapping[str, int]]:
    if hard is None or not {"class", "role"} <= set(hard.columns):
        return {}
    counts = pd.crosstab(hard["role"].astype(str), hard["class"].astype(str))
    return {
        role.replace("_", " ") + "s": {
            str(c): int(n) for c, n in counts.loc[role].to_dict().items()
        }
        for role in ROLE_COUNTS
        if role in counts.index
    }


def eval_metrics(inputs: ReportInputs) -> str:
    """The test split's COCO metrics, its per-class AP table, then the other numbers."""
    metrics = inputs.metrics["eval"]
    parts = [coco_table(metrics)]
    per_class = metrics.get("map_per_class")
    if isinstance(per_class, Mapping):
        test = inputs.stats.object_counts_by_split.get("test", {})
        columns: dict[str, Mapping[str, Any]] = {"objects in the test split": test}
        masks = metrics.get("mask_map_per_class")
        if isinstance(masks, Mapping):
            columns = {"mask AP": {str(k): _value(v) for k, v in masks.items()}} | columns
        parts.append("<h4>AP per class (test split)</h4>")
        parts.append(ap_table(per_class, inputs.classes, columns=columns))
        parts.append(note(f"{UNDEFINED}: no object of the class in the split, so COCO leaves "
                          "its AP undefined", kind="info"))  # fmt: skip
    coco = {f"{p}{k}" for p in ("", "mask_") for k, _ in COCO_METRICS}
    rest = {k: v for k, v in metrics.items() if k not in coco and not k.endswith("_per_class")}
    if rest:
        parts.append(key_values(rest))
    return "".join(parts)


# ---------------------------------------------------------------- label issues


def label_issue_parts(inputs: ReportInputs, ctx: Context) -> list[str]:
    """The label-issues section of an object task: held-out quality, then one card per
    flagged object, worst (lowest box score) first."""
    parts = [
        oof_metrics(inputs),
        metric_details(inputs.metrics.get("score"), "every scoring metric"),
    ]
    issues = inputs.label_issues
    if issues is None:
        parts.append(not_available("label issues", inputs.missing["label_issues"]))
        return parts
    issues = worst_first(issues)
    shown = issues.head(ctx.options.max_cards)
    manifest = by_id(inputs.manifest, shown["sample_id"])
    curated = by_id(inputs.curated, shown["sample_id"]) if inputs.curated is not None else {}
    actions = _object_actions(inputs.curated_objects, shown)
    items = []
    for r in records(shown):
        sid = str(r["sample_id"])
        action = actions.get((sid, str(r.get("object_id"))), {})
        sample = manifest.get(sid, {})
        items.append(_issue_card(r, sample, curated.get(sid, {}), action, inputs.classes, ctx))
    parts.append("<h3>Flagged objects</h3>")
    if not issues.empty:
        parts.append(table(_issue_summary(issues)))
    if inputs.scores is not None and "label_quality" in inputs.scores:
        parts.append(quality_histogram(inputs.scores["label_quality"]))
    images = issues["sample_id"].nunique()
    parts.append(
        shown_note(
            len(issues), len(shown), f"flagged objects in {images} images, lowest box score first"
        )
    )
    parts.append(note("; ".join(f"<b>{k}</b>: {v}" for k, v in ISSUE_TEXT.items()), kind="info"))
    if items:
        kinds = _issue_order(shown["issue"].astype(str))
        seen = {c for r in records(shown) for c in _about(r)}
        names = [c for c in inputs.classes if c in seen] + sorted(seen - set(inputs.classes))
        parts.append(box_legend(inputs.classes))
        parts.append(
            filter_bar(
                "label-cards",
                checks=kinds,
                classes=names,
                splits=splits_of(manifest.values()),
                check_label="issue",
            )
        )
        parts.append(cards(items, page_size=ctx.options.page_size, list_id="label-cards"))
    return parts


def worst_first(issues: pd.DataFrame) -> pd.DataFrame:
    """Label-issue rows by box score, then image label quality, lowest first (stable)."""
    keys = [c for c in ("box_score", "label_quality") if c in issues]
    if not keys:
        return issues
    ranked = issues.assign(**{f"_{k}": pd.to_numeric(issues[k], errors="coerce") for k in keys})
    ranked = ranked.sort_values([f"_{k}" for k in keys], kind="stable", na_position="last")
    return ranked.drop(columns=[f"_{k}" for k in keys])


def _issue_summary(issues: pd.DataFrame) -> pd.DataFrame:
    """Flagged objects per issue and class (a missing box counts under its suggested class)."""
    cls = issues["given_class"] if "given_class" in issues else pd.Series("", issues.index)
    if "suggested_class" in issues:
        cls = cls.where(cls.map(is_given), issues["suggested_class"])
    counts = pd.crosstab(issues["issue"].astype(str), cls.fillna("?").astype(str))
    counts = counts.reindex(_issue_order(counts.index))
    counts["total"] = counts.sum(axis=1)
    counts.index.name = "issue"
    return counts.reset_index()


def _issue_order(kinds: Any) -> list[str]:
    """The issue kinds in ``kinds``: the known ones in :data:`ISSUE_TEXT`'s order, then the rest."""
    seen = set(map(str, kinds))
    return [k for k in ISSUE_TEXT if k in seen] + sorted(seen - set(ISSUE_TEXT))


def _object_actions(
    curated: pd.DataFrame | None, shown: pd.DataFrame
) -> dict[tuple[str, str], dict[str, Any]]:
    """curated_objects.parquet's rows of the shown objects, by (sample_id, object_id)."""
    if curated is None or "object_id" not in shown:
        return {}
    wanted = curated[curated["sample_id"].isin(set(shown["sample_id"].astype(str)))]
    return {(str(r["sample_id"]), str(r["object_id"])): r for r in records(wanted)}


def _about(row: Mapping[str, Any]) -> list[str]:
    return [str(v) for v in (row.get("given_class"), row.get("suggested_class")) if is_given(v)]


def _issue_card(
    row: dict[str, Any],
    sample: dict[str, Any],
    curated: dict[str, Any],
    action: dict[str, Any],
    classes: Sequence[str],
    ctx: Context,
) -> str:
    sid, issue = str(row["sample_id"]), str(row.get("issue", ""))
    oid = str(row["object_id"]) if is_given(row.get("object_id")) else ""
    given = row.get("given_class") if is_given(row.get("given_class")) else None
    suggested_class = row.get("suggested_class") if is_given(row.get("suggested_class")) else None
    suggested = parse_box(row.get("suggested_box"))
    colour = class_index(classes, suggested_class or given)
    marks = Marks(flagged=(oid,) if oid else (),
                  suggested=((*suggested, colour),) if suggested else ())  # fmt: skip
    thumb = ctx.img(row["image"], view="objects", sample_id=sid, marks=marks, zoom=True,
                    caption=f"{issue} {'object ' + oid if oid else ''}".strip())  # fmt: skip
    if suggested_class is not None and suggested_class != given:
        labels = (f'<span class="given">{esc(given) or "no box"}</span> → '
                  f'<span class="suggested">{esc(suggested_class)}</span>')  # fmt: skip
    else:
        labels = f"<span>{esc(given) or 'no box'}</span>"
    box = _box_text(row.get("given_box"))
    if suggested:
        box = f"{box or 'no box'} → {_box_text(suggested)}"
    tags = facets(checks=[issue], classes=_about(row), splits=[sample.get("split")],
                  names=[row.get("image")])  # fmt: skip
    return (
        f'<div class="card issue-card label-issue object-issue" data-sample="{esc(sid)}" '
        f'data-object="{esc(oid)}"{tags}>{thumb}<div class="meta">{file_name(row["image"])}'
        f'<div><span class="issue-kind">{esc(issue)}</span>'
        f"{' · object ' + esc(oid) if oid else ''}</div>"
        f'<div class="labels">{labels}</div><div class="small box">{box}</div>'
        f"<div>box score {esc(row.get('box_score'))} · image quality "
        f"{esc(row.get('label_quality'))}</div>"
        f'<div class="small">{esc(ISSUE_TEXT.get(issue, ""))}</div>'
        f"{_object_action_line(action)}{curation_line(curated, what='image')}</div></div>"
    )


def _box_text(value: Any) -> str:
    box = parse_box(value)
    return "[" + ", ".join(f"{v:.1f}" for v in box) + "]" if box else ""


def _object_action_line(action: Mapping[str, Any]) -> str:
    kind = action.get("action")
    if not isinstance(kind, str) or not kind:
        return ""
    to = ""
    if kind == "relabel" and is_given(action.get("final_class")):
        to = f" → {esc(action['final_class'])}"
    elif kind == "rebox":
        to = " → " + _box_text([action.get(k) for k in ("x0", "y0", "x1", "y1")])
    elif is_given(action.get("reason")) and kind != "keep":
        to = f" ({esc(action['reason'])})"
    return f'<div class="small">object: <b>{esc(kind)}</b>{to}</div>'


# ---------------------------------------------------------------- hard examples


def gallery_body(inputs: ReportInputs, ctx: Context, hard: pd.DataFrame) -> str:
    """Per class, the hardest positives (objects the held-out model missed or boxed poorly,
    drawn thick) and hard negatives (its confident false alarms), hardest first."""
    rows = hard[hard["role"].astype(str).isin(HARD_ROLES)]
    head = _role_table(hard, inputs.classes)
    if rows.empty:
        return head + note("no hard examples", kind="ok")
    rows = rows.assign(**{"class": rows["class"].astype(str)})
    names = [c for c in inputs.classes if c in set(rows["class"])]
    names += sorted(set(rows["class"]) - set(names))
    per = min(ctx.options.gallery_per_class, max(1, ctx.options.max_cards // (2 * len(names))))
    if "difficulty" in rows:
        difficulty = pd.to_numeric(rows["difficulty"], errors="coerce")
        rows = rows.iloc[np.argsort(-difficulty.fillna(0).to_numpy(), kind="stable")]
    picks = dict(iter(rows.groupby(["class", "role"], sort=False)))
    shown = [r for p in picks.values() for r in records(p.head(per))]
    manifest = by_id(inputs.manifest, [r["sample_id"] for r in shown])
    blocks = []
    for name in names:
        lists = []
        for role in HARD_ROLES:
            picked = picks.get((name, role), rows.iloc[:0])
            items = [_gallery_card(r, manifest.get(str(r["sample_id"]), {}), inputs, ctx)
                     for r in records(picked.head(per))]  # fmt: skip
            label = f"{role.replace('_', ' ')}s: {len(picked)}"
            label += f" ({per} shown)" if len(picked) > per else ""
            lists.append(f"<h4>{esc(label)}</h4>{cards(items, page_size=ctx.options.page_size)}")
        blocks.append(f'<div class="gallery"><h3>{esc(name)}</h3>{"".join(lists)}</div>')
    explain = note(
        "hard positive: a given object the held-out detector missed or found only with a "
        "poor box (drawn thick); hard negative: a confident prediction no given box of its "
        "class explains", kind="info",
    )  # fmt: skip
    if "predicted_box" not in hard:
        explain += note("hard_examples.csv has no predicted_box column, so a false alarm's "
                        "card shows the image's given boxes only", kind="info")  # fmt: skip
    return head + explain + box_legend(inputs.classes) + "".join(blocks)


def _role_table(hard: pd.DataFrame, classes: Sequence[str]) -> str:
    """Per class: hard / easy positives and hard negatives by where they fired."""
    role = hard["role"].astype(str)
    kind = hard["kind"].astype("string").fillna("") if "kind" in hard else ""
    column = role.where(role != "hard_negative", "hard negative: " + kind)
    column = column.str.replace("_", " ").str.rstrip(": ")
    counts = pd.crosstab(hard["class"].astype(str), column)
    order = [c for c in counts.columns if not c.startswith("hard negative")]
    counts = counts[sorted(order) + sorted(set(counts.columns) - set(order))]
    wanted = [c for c in classes if c in counts.index]
    counts = counts.reindex(wanted + sorted(set(counts.index) - set(wanted)))
    counts.index.name = "class"
    return table(counts.reset_index())


def _gallery_card(
    row: dict[str, Any], sample: dict[str, Any], inputs: ReportInputs, ctx: Context
) -> str:
    sid, role = str(row["sample_id"]), str(row.get("role"))
    oid = str(row["object_id"]) if is_given(row.get("object_id")) else ""
    predicted = parse_box(row.get("predicted_box"))
    colour = class_index(inputs.classes, row.get("class"))
    marks = Marks(flagged=(oid,) if oid else (),
                  suggested=((*predicted, colour),) if predicted else ())  # fmt: skip
    thumb = ctx.img(row["image"], view="objects", sample_id=sid, marks=marks)
    score, iou = row.get("score"), row.get("iou")
    if role == "hard_negative":
        where = NEGATIVE_TEXT.get(str(row.get("kind")), str(row.get("kind") or ""))
        what = f"false alarm {esc(where)} · score {esc(score)} · IoU {esc(iou)}"
    elif not is_number(score) or not iou:
        what = f"object {esc(oid)} · missed"
    else:
        what = f"object {esc(oid)} · IoU {esc(iou)} · score {esc(score)}"
    side = "positive" if role == "hard_positive" else "negative"
    return (
        f'<div class="card gallery-card {side} {esc(role)}" data-sample="{esc(sid)}" '
        f'data-object="{esc(oid)}">{thumb}<div class="meta small">{file_name(row["image"])}'
        f"{what} · difficulty {esc(row.get('difficulty'))}</div></div>"
    )


# ---------------------------------------------------------------- curation


def object_curation(inputs: ReportInputs) -> str:
    """Per class, what curation does with the given objects (curated_objects.parquet)."""
    cur = inputs.curated_objects
    if cur is None:
        return not_available("object curation", inputs.missing.get("curated_objects", ""))
    if cur.empty:
        return note("no objects curated", kind="info")
    cls = cur["given_class"] if "given_class" in cur else pd.Series("", cur.index)
    cls = cls.where(cls.map(is_given), cur.get("final_class", cls))
    cls = cls.where(cls.map(is_given), "(unknown class)").astype(str)
    counts = pd.crosstab(cls, cur["action"].astype(str))
    counts["total"] = counts.sum(axis=1)
    wanted = [c for c in inputs.classes if c in counts.index]
    counts = counts.reindex(wanted + sorted(set(counts.index) - set(wanted)))
    counts.index.name = "class"
    return "<h3>Object actions per class</h3>" + table(counts.reset_index())
