"""The sections of the report page, one function each: ``(inputs, context) -> Section``.

Every section that shows samples caps its cards at ``report.max_cards`` and says how many
it left out; a section whose input is missing says which file it needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from datapipe.config import ReportParams
from datapipe.report.charts import (
    bars,
    confusion,
    esc,
    key_values,
    legend,
    line_chart,
    not_available,
    note,
    table,
)
from datapipe.report.inputs import ReportInputs
from datapipe.report.thumbnails import Thumbnailer, View

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
DUPLICATE_CHECKS = ("conflicting_labels", "exact_duplicate", "near_duplicate", "split_leakage")
MAX_GROUP_MEMBERS = 8


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    body: str


@dataclass
class Context:
    """What every section shares: the display options and the thumbnail maker."""

    options: ReportParams
    thumbs: Thumbnailer

    @property
    def size(self) -> int:
        return self.options.thumb_size

    def img(
        self,
        image: Any,
        *,
        mask: Any = None,
        view: View = "image",
        sample_id: str = "",
        caption: str = "",
    ) -> str:
        """One thumbnail ``<img>`` (or a placeholder naming why there is none)."""
        size = self.size
        if not isinstance(image, str) or not image:
            return (
                f'<div class="thumb missing" style="width:{size}px;height:{size}px">no image</div>'
            )
        uri = self.thumbs.thumb(
            image, mask=mask if isinstance(mask, str) and mask else None, view=view,
            sample_id=sample_id,
        )  # fmt: skip
        if uri is None:
            return (
                f'<div class="thumb missing" style="width:{size}px;height:{size}px" '
                f'title="{esc(image)}">unreadable</div>'
            )
        title = f"{image} ({caption})" if caption else image
        return (
            f'<img class="thumb" src="{uri}" width="{size}" height="{size}" '
            f'alt="{esc(title)}" title="{esc(title)}" loading="lazy">'
        )


def cards(items: Sequence[str], *, page_size: int) -> str:
    """A list of cards the page's script paginates (``page_size`` per page)."""
    return f'<div class="cards" data-page-size="{page_size}">{"".join(items)}</div>'


def shown_note(total: int, shown: int, what: str) -> str:
    if total == shown:
        return note(f"{total} {what}", kind="count")
    return note(f"{total} {what}; the first {shown} shown (report.max_cards)", kind="count")


# ---------------------------------------------------------------- overview


def overview(inputs: ReportInputs, ctx: Context) -> Section:
    m, stats = inputs.manifest, inputs.stats
    excluded = int(m["excluded"].astype(bool).sum()) if "excluded" in m else 0
    facts = {
        "dataset": inputs.name,
        "task": inputs.task,
        "root": stats.get("root", ""),
        "layout": stats.get("layout", ""),
        "samples": len(m),
        "readable": stats.get("readable", ""),
        "read errors": stats.get("read_errors", ""),
        "excluded by clean": excluded,
        "classes": len(inputs.classes),
        "channels": stats.get("channels", ""),
    }
    parts = [key_values(facts), "<h3>Samples per class and split</h3>", _class_split(inputs)]
    if inputs.task == "segmentation":
        parts.append(legend(inputs.classes))
    parts.append('<h3>Images</h3><div class="hists">')
    parts.append(bars(_filled(m, "dtype"), title="dtype"))
    parts.append(bars(_bits(m), title="bits used (from the largest value)"))
    parts.append(bars(_sizes(m), title="size (height × width)"))
    parts.append(bars(_filled(m, "channels"), title="channels"))
    parts.append("</div>")
    scaling = stats.get("bit_depth") or {}
    if scaling:
        text = ", ".join(f"{esc(k)} → {esc(v)}-bit" for k, v in scaling.items())
        parts.append(note(f"scaled to [0, 1] as: {text}", kind="info"))
    return Section("overview", "Dataset overview", "".join(parts))


def _filled(m: pd.DataFrame, column: str) -> pd.Series:
    if column not in m:
        return pd.Series(dtype="int64")
    return m[column].astype("string").fillna("unreadable").value_counts()


def _sizes(m: pd.DataFrame) -> pd.Series:
    if not {"height", "width"} <= set(m.columns):
        return pd.Series(dtype="int64")
    size = m["height"].astype("string") + " × " + m["width"].astype("string")
    return size.fillna("unreadable").value_counts()


def _bits(m: pd.DataFrame) -> pd.Series:
    if not {"dtype", "max_value"} <= set(m.columns):
        return pd.Series(dtype="int64")
    labels = []
    for dtype, top in zip(m["dtype"], m["max_value"], strict=True):
        if pd.isna(dtype) or pd.isna(top):
            labels.append("unreadable")
        elif np.dtype(str(dtype)).kind == "f":
            labels.append(f"float ({dtype})")
        else:
            labels.append(f"{max(1, int(top).bit_length())}-bit ({dtype})")
    return pd.Series(labels).value_counts()


def _class_split(inputs: ReportInputs) -> str:
    m = inputs.manifest
    if inputs.task == "classification" and "label" in m:
        counts = pd.crosstab(m["label"].astype("string").fillna("(none)"), m["split"])
    elif "mask_classes" in m:
        names = dict(zip(inputs.stats.get("class_values", []), inputs.classes, strict=False))
        rows = [
            (names.get(int(v), f"value {v}"), split)
            for values, split in zip(m["mask_classes"], m["split"], strict=True)
            if isinstance(values, list | tuple | np.ndarray)
            for v in values
        ]
        frame = pd.DataFrame(rows, columns=["class", "split"])
        counts = pd.crosstab(frame["class"], frame["split"]) if rows else pd.DataFrame()
        counts.index.name = "images with class"
    else:
        return note("no labels in the manifest", kind="info")
    order = [s for s in ("train", "val", "test") if s in counts.columns]
    counts = counts[order + [c for c in counts.columns if c not in order]]
    counts["total"] = counts.sum(axis=1)
    wanted = [c for c in inputs.classes if c in counts.index]
    counts = counts.reindex(wanted + [c for c in counts.index if c not in wanted])
    pixels = inputs.stats.get("pixel_counts")
    if inputs.task == "segmentation" and isinstance(pixels, dict):
        values = dict(zip(inputs.classes, inputs.stats.get("class_values", []), strict=False))
        counts["pixels"] = [pixels.get(str(values.get(c, c)), pixels.get(c)) for c in counts.index]
    return table(counts.reset_index())


# ---------------------------------------------------------------- integrity


def integrity(inputs: ReportInputs, ctx: Context) -> Section:
    title = "Integrity issues"
    issues = inputs.data_issues
    if issues is None:
        return Section(
            "integrity", title, not_available("data issues", inputs.missing["data_issues"])
        )
    if issues.empty:
        return Section(
            "integrity", title, note("no sample was flagged by the clean stage", kind="ok")
        )
    summary = pd.crosstab(issues["check"], issues["severity"])
    summary = summary[[s for s in SEVERITY_ORDER if s in summary.columns]]
    order = _flag_order(issues)
    shown = order[: ctx.options.max_cards]
    by_sample = _grouped(_records(issues[issues["sample_id"].isin(set(shown))]), "sample_id")
    rows = _by_id(inputs.manifest, shown)
    items = [_issue_card(sid, by_sample[sid], rows.get(sid, {}), inputs, ctx) for sid in shown]
    body = (
        table(summary.reset_index())
        + shown_note(len(order), len(shown), "flagged samples, worst first")
        + cards(items, page_size=ctx.options.page_size)
    )
    return Section("integrity", title, body)


def _flag_order(issues: pd.DataFrame) -> list[str]:
    """Sample ids, worst first: by their worst severity, then lowest score."""
    rank = issues.assign(
        _sev=issues["severity"].map(SEVERITY_ORDER).fillna(3),
        _score=pd.to_numeric(issues["score"], errors="coerce").fillna(1.0)
        if "score" in issues
        else 1.0,
    )
    worst = rank.groupby("sample_id", sort=False)[["_sev", "_score"]].min()
    return [str(s) for s in worst.sort_values(["_sev", "_score"], kind="stable").index]


#: The columns of a sample's row that its cards show.
CARD_COLUMNS = ("sample_id", "label", "split", "mask", "excluded", "exclude_reason", "action",
                "final_label")  # fmt: skip


def _by_id(table_: pd.DataFrame, ids: Any) -> dict[str, dict[str, Any]]:
    """The rows of ``ids`` (and only the columns cards show), keyed by ``sample_id``."""
    wanted = table_[table_["sample_id"].isin(set(map(str, ids)))]
    wanted = wanted[[c for c in CARD_COLUMNS if c in wanted.columns]]
    return {str(r["sample_id"]): r for r in _records(wanted)}


def _records(table_: pd.DataFrame) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], table_.to_dict("records"))


def _grouped(rows: Iterable[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by ``str(row[key])``, in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(str(row[key]), []).append(row)
    return out


def _view(inputs: ReportInputs) -> View:
    return "mask" if inputs.task == "segmentation" else "image"


def _issue_card(
    sid: str,
    rows: list[dict[str, Any]],
    sample: dict[str, Any],
    inputs: ReportInputs,
    ctx: Context,
) -> str:
    worst = min(SEVERITY_ORDER.get(str(r["severity"]), 3) for r in rows)
    severity = next((k for k, v in SEVERITY_ORDER.items() if v == worst), "info")
    image = rows[0]["image"]
    checks = "".join(
        f'<li><span class="sev {esc(r["severity"])}">{esc(r["severity"])}</span> '
        f"<b>{esc(r['check'])}</b> {esc(r.get('detail'))}</li>"
        for r in rows
    )
    thumb = ctx.img(image, mask=sample.get("mask"), view=_view(inputs), sample_id=sid)
    return (
        f'<div class="card issue-card data-issue sev-{severity}" data-sample="{esc(sid)}">'
        f'{thumb}<div class="meta">{_sample_line(image, sample)}'
        f'<ul class="checks">{checks}</ul></div></div>'
    )


def _sample_line(image: Any, sample: dict[str, Any]) -> str:
    bits = [esc(sample.get("label")), esc(sample.get("split"))]
    reason = sample.get("exclude_reason")
    if sample.get("excluded") and isinstance(reason, str) and reason:
        bits.append(f'<span class="excluded">excluded: {esc(reason)}</span>')
    line = " · ".join(b for b in bits if b)
    return f'<div class="path" title="{esc(image)}">{esc(image)}</div><div>{line}</div>'


# ---------------------------------------------------------------- duplicates


def duplicates(inputs: ReportInputs, ctx: Context) -> Section:
    title = "Duplicate groups"
    issues = inputs.data_issues
    if issues is None:
        return Section(
            "duplicates", title, not_available("data issues", inputs.missing["data_issues"])
        )
    grouped = issues[issues["check"].isin(DUPLICATE_CHECKS) & issues["group"].notna()]
    if grouped.empty:
        return Section("duplicates", title, note("no duplicate groups", kind="ok"))
    by_group = _grouped(_records(grouped.assign(group=grouped["group"].astype("int64"))), "group")
    groups = sorted(by_group.items(), key=_group_rank)
    shown = groups[: ctx.options.max_cards]
    rows = _by_id(inputs.manifest, [r["sample_id"] for _, g in shown for r in g])
    items = [_group_card(gid, g, rows, inputs, ctx) for gid, g in shown]
    body = (
        note("exact and near duplicates side by side; conflicting labels first", kind="info")
        + shown_note(len(groups), len(shown), "groups")
        + cards(items, page_size=max(1, ctx.options.page_size // 4))
    )
    return Section("duplicates", title, body)


def _group_rank(item: tuple[str, list[dict[str, Any]]]) -> tuple[bool, bool, int]:
    """Conflicting labels first, then exact duplicates, then by group id."""
    checks = {r["check"] for r in item[1]}
    return "conflicting_labels" not in checks, "exact_duplicate" not in checks, int(item[0])


def _group_card(
    gid: str, rows: list[dict[str, Any]], manifest: dict[str, dict[str, Any]],
    inputs: ReportInputs, ctx: Context,
) -> str:  # fmt: skip
    by_member = _grouped(rows, "sample_id")
    members = list(by_member)
    cells = []
    for sid in members[:MAX_GROUP_MEMBERS]:
        mine = by_member[sid]
        sample = manifest.get(sid, {})
        image = mine[0]["image"]
        checks = ", ".join(dict.fromkeys(str(r["check"]) for r in mine))
        cells.append(
            f'<div class="dup-member" data-sample="{esc(sid)}">'
            f"{ctx.img(image, mask=sample.get('mask'), view=_view(inputs), sample_id=sid)}"
            f'<div class="meta">{_sample_line(image, sample)}<div class="small">{esc(checks)}'
            "</div></div></div>"
        )
    more = len(members) - MAX_GROUP_MEMBERS
    extra = f'<div class="more">+{more} more</div>' if more > 0 else ""
    return (
        f'<div class="dup-group" data-group="{gid}"><h4>group {gid}: {len(members)} images</h4>'
        f'<div class="members">{"".join(cells)}{extra}</div></div>'
    )


# ---------------------------------------------------------------- label issues


def label_issues(inputs: ReportInputs, ctx: Context) -> Section:
    title = "Label issues"
    parts = []
    score = inputs.metrics.get("score")
    if score is not None:
        parts.append("<details><summary>scoring metrics (out-of-fold)</summary>")
        parts.append(key_values(score) + "</details>")
    issues = inputs.label_issues
    if issues is None:
        parts.append(not_available("label issues", inputs.missing["label_issues"]))
        return Section("label-issues", title, "".join(parts))
    shown = issues.head(ctx.options.max_cards)
    manifest = _by_id(inputs.manifest, shown["sample_id"])
    curated = _by_id(inputs.curated, shown["sample_id"]) if inputs.curated is not None else {}
    card = _seg_label_card if inputs.task == "segmentation" else _cls_label_card
    items = [
        card(r, manifest.get(str(r["sample_id"]), {}), curated.get(str(r["sample_id"]), {}), ctx)
        for r in _records(shown)
    ]
    if inputs.scores is not None and "label_quality" in inputs.scores:
        parts.append(_quality_histogram(inputs.scores["label_quality"]))
    parts.append(shown_note(len(issues), len(shown), "samples flagged, worst first"))
    parts.append(cards(items, page_size=ctx.options.page_size) if items else "")
    if inputs.oof_confusion is not None and not inputs.oof_confusion.empty:
        parts.append("<h3>Out-of-fold confusion (given label vs model)</h3>")
        parts.append(confusion(inputs.oof_confusion, classes=inputs.classes))
    return Section("label-issues", title, "".join(parts))


def _quality_histogram(quality: pd.Series) -> str:
    """Label quality of every scored sample in tenths (lower = more likely mislabelled)."""
    values = pd.to_numeric(quality, errors="coerce").dropna().clip(0.0, 1.0)
    tenth = np.minimum((values.to_numpy() * 10).astype(int), 9)
    counts = {f"{k / 10:.1f}–{(k + 1) / 10:.1f}": int((tenth == k).sum()) for k in range(10)}
    return bars(pd.Series(counts), title="label quality of all scored samples", sort=False)


def _curation_line(curated: dict[str, Any]) -> str:
    action = curated.get("action")
    if not isinstance(action, str) or not action:
        return ""
    final = curated.get("final_label")
    to = f" → {esc(final)}" if action == "relabel" and isinstance(final, str) else ""
    return f'<div class="small">curation: <b>{esc(action)}</b>{to}</div>'


def _cls_label_card(
    row: dict[str, Any], sample: dict[str, Any], curated: dict[str, Any], ctx: Context
) -> str:
    sid = str(row["sample_id"])
    return (
        f'<div class="card issue-card label-issue" data-sample="{esc(sid)}">'
        f'{ctx.img(row["image"], sample_id=sid)}<div class="meta">'
        f'<div class="path" title="{esc(row["image"])}">{esc(row["image"])}</div>'
        f'<div class="labels"><span class="given">{esc(row.get("given_label"))}</span> → '
        f'<span class="suggested">{esc(row.get("suggested_label")) or "?"}</span></div>'
        f"<div>quality {esc(row.get('label_quality'))}</div>"
        f'<div class="small">{esc(row.get("reasons"))}</div>{_curation_line(curated)}'
        "</div></div>"
    )


def _seg_label_card(
    row: dict[str, Any], sample: dict[str, Any], curated: dict[str, Any], ctx: Context
) -> str:
    sid = str(row["sample_id"])
    mask = row.get("mask") if isinstance(row.get("mask"), str) else sample.get("mask")
    given = ctx.img(row["image"], mask=mask, view="mask", sample_id=sid, caption="given mask")
    issue = ctx.img(row["image"], view="issues", sample_id=sid, caption="pixel issues")
    return (
        f'<div class="card issue-card label-issue wide" data-sample="{esc(sid)}">'
        f'<div class="pair">{given}{issue}</div><div class="meta">'
        f'<div class="path" title="{esc(row["image"])}">{esc(row["image"])}</div>'
        f"<div>quality {esc(row.get('label_quality'))} · issue pixels "
        f"{esc(row.get('issue_fraction'))}</div>"
        f'<div class="small">{esc(row.get("reasons"))}</div>{_curation_line(curated)}'
        "</div></div>"
    )


# ---------------------------------------------------------------- hard examples


def galleries(inputs: ReportInputs, ctx: Context) -> Section:
    title = "Hard positives and hard negatives"
    hard = inputs.hard_examples
    if hard is None:
        return Section(
            "hard", title, not_available("hard examples", inputs.missing["hard_examples"])
        )
    if "difficulty" in hard:
        hard = hard[hard["difficulty"].astype(str) == "hard"]
    if hard.empty:
        return Section("hard", title, note("no hard examples", kind="ok"))
    hard = hard.assign(**{"class": hard["class"].astype(str)})
    names = [c for c in inputs.classes if c in set(hard["class"])]
    names += sorted(set(hard["class"]) - set(names))
    per = min(ctx.options.gallery_per_class, max(1, ctx.options.max_cards // (2 * len(names))))
    if "loss" in hard:
        hard = hard.sort_values("loss", ascending=False, kind="stable")
    picks = {key: rows for key, rows in hard.groupby(["class", "role"], sort=False)}
    shown = pd.concat([rows.head(per)["sample_id"] for rows in picks.values()])
    manifest = _by_id(inputs.manifest, shown)
    blocks = []
    for name in names:
        lists = []
        for role in ("positive", "negative"):
            picked = picks.get((name, role), hard.iloc[:0])
            items = [
                _gallery_card(r, manifest.get(str(r["sample_id"]), {}), inputs, ctx)
                for r in _records(picked.head(per))
            ]
            label = f"hard {role}s: {len(picked)}"
            label += f" ({per} shown)" if len(picked) > per else ""
            lists.append(f"<h4>{esc(label)}</h4>{cards(items, page_size=ctx.options.page_size)}")
        blocks.append(f'<div class="gallery"><h3>{esc(name)}</h3>{"".join(lists)}</div>')
    body = note(
        "hard positive: labelled this class, the model disagrees; hard negative: another "
        "class, the model is confident it is this one", kind="info",
    ) + "".join(blocks)  # fmt: skip
    return Section("hard", title, body)


def _gallery_card(
    row: dict[str, Any], sample: dict[str, Any], inputs: ReportInputs, ctx: Context
) -> str:
    sid = str(row["sample_id"])
    thumb = ctx.img(row["image"], mask=sample.get("mask"), view=_view(inputs), sample_id=sid)
    label = sample.get("label")
    given = f"label {esc(label)} · " if isinstance(label, str) else ""
    return (
        f'<div class="card gallery-card {esc(row.get("role"))}" data-sample="{esc(sid)}">'
        f'{thumb}<div class="meta small">{given}p({esc(row["class"])}) {esc(row.get("prob"))}'
        f" · loss {esc(row.get('loss'))}</div></div>"
    )


# ---------------------------------------------------------------- curation


def curation(inputs: ReportInputs, ctx: Context) -> Section:
    title = "Curation"
    parts = []
    if "curate" in inputs.metrics:
        parts.append(key_values(inputs.metrics["curate"]))
    else:
        parts.append(not_available("curation metrics", inputs.missing["metrics/curate"]))
    if inputs.curation_summary is not None:
        parts.append("<h3>Actions per class</h3>" + table(inputs.curation_summary))
    else:
        parts.append(not_available("curation summary", inputs.missing["curation_summary"]))
    return Section("curation", title, "".join(parts))


# ---------------------------------------------------------------- training


def training(inputs: ReportInputs, ctx: Context) -> Section:
    title = "Training and evaluation"
    parts = ["<h3>Training curves</h3>"]
    if inputs.curves:
        parts.append('<div class="curves">' + _curves(inputs.curves) + "</div>")
    else:
        parts.append(not_available("training curves", inputs.missing["curves"]))
    last = inputs.metrics.get("train", inputs.live_metrics)
    if last:
        parts.append("<h3>Last epoch</h3>" + key_values(last))
    parts.append("<h3>Evaluation on the test split</h3>")
    if "eval" in inputs.metrics:
        parts.append(key_values(inputs.metrics["eval"]))
    else:
        parts.append(not_available("evaluation metrics", inputs.missing["metrics/eval"]))
    if inputs.eval_confusion is not None and not inputs.eval_confusion.empty:
        parts.append(
            "<h4>confusion</h4>" + confusion(inputs.eval_confusion, classes=inputs.classes)
        )
    return Section("training", title, "".join(parts))


def _curves(curves: dict[str, pd.DataFrame]) -> str:
    """One chart per metric name; ``train/loss`` and ``val/loss`` share the ``loss`` chart."""
    by_metric: dict[str, dict[str, pd.DataFrame]] = {}
    for key, frame in curves.items():
        head, _, metric = key.rpartition("/")
        by_metric.setdefault(metric, {})[head or metric] = frame
    return "".join(line_chart(series, title=metric) for metric, series in by_metric.items())


SECTIONS: tuple[Callable[[ReportInputs, Context], Section], ...] = (
    overview, integrity, duplicates, label_issues, galleries, curation, training,
)  # fmt: skip
