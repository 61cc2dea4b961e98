"""The sections of the report page, one function each: ``(inputs, context) -> Section``.

Every section that shows samples caps its cards at ``report.max_cards`` and says how many
it left out; a section whose input is missing says which file it needed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from datapipe.report import object_sections
from datapipe.report.boxes import Marks
from datapipe.report.cards import (
    Context,
    Section,
    by_id,
    cards,
    curation_line,
    facets,
    file_name,
    filter_bar,
    grouped,
    is_given,
    records,
    shown_note,
    splits_of,
)
from datapipe.report.charts import (
    bars,
    confusion,
    esc,
    key_values,
    legend,
    line_chart,
    metric_details,
    not_available,
    note,
    quality_histogram,
    table,
)
from datapipe.report.confusions import confused_pairs, segmentation_breakdown
from datapipe.report.inputs import ReportInputs
from datapipe.report.thumbnails import View

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
DUPLICATE_CHECKS = ("conflicting_labels", "exact_duplicate", "near_duplicate", "split_leakage")
#: A duplicate group shows this many members' thumbnails; the rest are named in a fold-out.
GROUP_SHOWN = 4
GROUP_NAMED = 50


# ---------------------------------------------------------------- overview


def overview(inputs: ReportInputs, ctx: Context) -> Section:
    m, stats = inputs.manifest, inputs.stats
    excluded = int(m["excluded"].astype(bool).sum()) if "excluded" in m else 0
    facts = {
        "dataset": inputs.name,
        "task": inputs.task,
        "root": stats.root,
        "layout": stats.layout,
        "samples": len(m),
        "readable": stats.readable,
        "read errors": stats.read_errors,
        "excluded by clean": excluded,
        "classes": len(inputs.classes),
        "channels": stats.channels,
    }
    heading = "Objects" if inputs.kind.objects else "Samples"
    parts = [key_values(facts), f"<h3>{heading} per class and split</h3>", _class_split(inputs)]
    if inputs.kind.dense:
        parts.append(legend(inputs.classes))
    parts.append('<h3>Images</h3><div class="hists">')
    parts.append(bars(_filled(m, "dtype"), title="dtype"))
    parts.append(bars(_bits(m), title="bits used (from the largest value)"))
    parts.append(bars(_sizes(m), title="size (height × width)"))
    parts.append(bars(_filled(m, "channels"), title="channels"))
    parts.append("</div>")
    scaling = stats.bit_depth
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
    if inputs.kind.objects:
        return object_sections.class_split(inputs)
    if inputs.kind.image_labels and "label" in m:
        counts = pd.crosstab(m["label"].astype("string").fillna("(none)"), m["split"])
    elif "mask_classes" in m:
        names = dict(zip(inputs.stats.class_values, inputs.classes, strict=False))
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
    pixels = inputs.stats.pixel_counts
    if inputs.kind.dense and pixels:
        values = dict(zip(inputs.classes, inputs.stats.class_values, strict=False))
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
    shown, cap = pick_flagged(issues, limit=ctx.options.max_cards)
    by_sample = grouped(records(issues[issues["sample_id"].isin(set(shown))]), "sample_id")
    rows = by_id(inputs.manifest, shown)
    items = [_issue_card(sid, by_sample[sid], rows.get(sid, {}), inputs, ctx) for sid in shown]
    total = issues["sample_id"].nunique()
    body = (
        _check_summary(issues, shown)
        + note(_integrity_note(total, len(shown), cap), kind="count")
        + filter_bar(
            "integrity-cards",
            checks=_check_order(issues),
            classes=_shown_classes(items_rows(rows, shown), inputs),
            splits=splits_of(rows.values()),
        )
        + cards(items, page_size=ctx.options.page_size, list_id="integrity-cards")
    )
    return Section("integrity", title, body)


def items_rows(rows: Mapping[str, dict[str, Any]], ids: Sequence[str]) -> list[dict[str, Any]]:
    return [rows.get(i, {}) for i in ids]


def _integrity_note(total: int, shown: int, cap: int) -> str:
    if total == shown:
        return f"{total} flagged samples, the most severe and rarest checks first"
    return (
        f"{total} flagged samples; {shown} shown (report.max_cards), the most severe and "
        f"rarest checks first, every check at least once and up to {cap} per check before "
        "the commonest fill the rest"
    )


def _check_summary(issues: pd.DataFrame, shown: Sequence[str]) -> str:
    """Per check (in card order): flags per severity, samples, and cards shown."""
    counts = pd.crosstab(issues["check"], issues["severity"])
    counts = counts[[s for s in SEVERITY_ORDER if s in counts.columns]]
    on_cards = issues[issues["sample_id"].isin(set(shown))].groupby("check")["sample_id"]
    counts["samples"] = issues.groupby("check")["sample_id"].nunique()
    counts["shown"] = on_cards.nunique().reindex(counts.index, fill_value=0)
    return table(counts.reindex(_check_order(issues)).reset_index())


def _check_order(issues: pd.DataFrame) -> list[str]:
    """Checks by their worst severity, then rarest first (fewest flagged samples)."""
    severity = issues["severity"].map(SEVERITY_ORDER).fillna(3).groupby(issues["check"]).min()
    samples = issues.groupby("check")["sample_id"].nunique()
    return sorted(map(str, samples.index), key=lambda c: (severity[c], samples[c], c))


def pick_flagged(issues: pd.DataFrame, *, limit: int) -> tuple[list[str], int]:
    """The flagged sample ids to show as cards, in page order, and the per-check cap.

    A flood of one check (a thousand near-duplicates) must not hide the rare ones (three
    odd-sized images): checks are visited by severity, then rarest first, and each gets up to
    ``cap`` samples (its worst scores first), ``cap`` the largest that fits ``limit`` (at least
    one, so every check is shown even past ``limit``); leftover room goes to the rest in page
    order. Page order: worst severity, then rarest check, then lowest score.
    """
    rank = _sample_rank(issues)
    order = list(rank.index)
    checks = _check_order(issues)
    samples = issues.groupby("check")["sample_id"].nunique()
    cap = _fair_cap(samples.reindex(checks).to_numpy(np.int64), limit)
    checks_of: dict[str, set[str]] = {}
    for sid, check in zip(issues["sample_id"], issues["check"], strict=True):
        checks_of.setdefault(str(sid), set()).add(str(check))
    by_check = {c: [s for s in order if c in checks_of[s]] for c in checks}
    chosen: dict[str, None] = {}
    shown: Counter[str] = Counter()
    for check in checks:
        for sid in by_check[check]:
            if shown[check] >= cap:
                break
            if sid not in chosen:
                chosen[sid] = None
                shown.update(checks_of[sid])
    for sid in order:
        if len(chosen) >= limit:
            break
        chosen.setdefault(sid, None)
    position = {sid: i for i, sid in enumerate(order)}
    return sorted(chosen, key=position.__getitem__), cap


def _fair_cap(counts: np.ndarray, limit: int) -> int:
    """The largest ``cap >= 1`` with ``sum(min(count, cap)) <= limit``."""
    cap = 1
    top = int(counts.max()) if len(counts) else 1
    while cap < top and int(np.minimum(counts, cap + 1).sum()) <= limit:
        cap += 1
    return cap


def _sample_rank(issues: pd.DataFrame) -> pd.DataFrame:
    """Per flagged sample, its worst severity, the size of its rarest check and its lowest
    score, sorted (worst first)."""
    samples = issues.groupby("check")["sample_id"].nunique()
    score = (
        pd.to_numeric(issues["score"], errors="coerce").fillna(1.0) if "score" in issues else 1.0
    )
    rank = issues.assign(
        _sev=issues["severity"].map(SEVERITY_ORDER).fillna(3),
        _rare=issues["check"].map(samples),
        _score=score,
    )
    worst = rank.groupby("sample_id", sort=False)[["_sev", "_rare", "_score"]].min()
    worst.index = worst.index.map(str)
    return worst.sort_values(["_sev", "_rare", "_score"], kind="stable")


def _flag_order(issues: pd.DataFrame) -> list[str]:
    """Sample ids, worst first: by their worst severity, the rarest of their checks, then
    lowest score."""
    return list(_sample_rank(issues).index)


def _sample_classes(sample: Mapping[str, Any], inputs: ReportInputs) -> list[str]:
    """The class names a card is about: its label, the classes in its mask, or those of its
    objects."""
    if inputs.kind.objects:
        return inputs.object_classes.get(str(sample.get("sample_id")), [])
    label = sample.get("label")
    if isinstance(label, str) and label:
        return [label]
    values = sample.get("mask_classes")
    if not isinstance(values, list | tuple | np.ndarray):
        return []
    names = dict(zip(inputs.stats.class_values, inputs.classes, strict=False))
    return [names.get(int(v), str(v)) for v in values]


def _shown_classes(samples: Iterable[Mapping[str, Any]], inputs: ReportInputs) -> list[str]:
    seen = {c for s in samples for c in _sample_classes(s, inputs)}
    return [c for c in inputs.classes if c in seen] + sorted(seen - set(inputs.classes))


def _view(inputs: ReportInputs) -> View:
    if inputs.kind.objects:
        return "objects"
    return "mask" if inputs.kind.dense else "image"


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
        f"<b>{esc(r['check'])}</b>{_object_of(r)} {esc(r.get('detail'))}</li>"
        for r in rows
    )
    flagged = tuple(
        dict.fromkeys(str(r["object_id"]) for r in rows if is_given(r.get("object_id")))
    )
    thumb = ctx.img(image, mask=sample.get("mask"), view=_view(inputs), sample_id=sid,
                    marks=Marks(flagged=flagged) if flagged else None)  # fmt: skip
    tags = facets(checks=[r["check"] for r in rows], classes=_sample_classes(sample, inputs),
                  splits=[sample.get("split")], names=[image])  # fmt: skip
    return (
        f'<div class="card issue-card data-issue sev-{severity}" data-sample="{esc(sid)}"{tags}>'
        f'{thumb}<div class="meta">{_sample_line(image, sample)}'
        f'<ul class="checks">{checks}</ul></div></div>'
    )


def _object_of(row: Mapping[str, Any]) -> str:
    """`` (object 12)`` for an object check's row, nothing for an image check's."""
    oid = row.get("object_id")
    return f' <span class="small">(object {esc(oid)})</span>' if is_given(oid) else ""


def _sample_line(image: Any, sample: dict[str, Any]) -> str:
    bits = [esc(sample.get("label")), esc(sample.get("split"))]
    reason = sample.get("exclude_reason")
    if sample.get("excluded") and isinstance(reason, str) and reason:
        bits.append(f'<span class="excluded">excluded: {esc(reason)}</span>')
    line = " · ".join(b for b in bits if b)
    return f"{file_name(image)}<div>{line}</div>"


# ---------------------------------------------------------------- duplicates


def duplicates(inputs: ReportInputs, ctx: Context) -> Section:
    title = "Duplicate groups"
    issues = inputs.data_issues
    if issues is None:
        return Section(
            "duplicates", title, not_available("data issues", inputs.missing["data_issues"])
        )
    in_groups = issues[issues["check"].isin(DUPLICATE_CHECKS) & issues["group"].notna()]
    if in_groups.empty:
        return Section("duplicates", title, note("no duplicate groups", kind="ok"))
    by_group = grouped(records(in_groups.assign(group=in_groups["group"].astype("int64"))), "group")
    groups = sorted(by_group.items(), key=_group_rank)
    shown = groups[: ctx.options.max_cards]
    rows = by_id(inputs.manifest, [r["sample_id"] for _, g in shown for r in g])
    items = [_group_card(gid, g, rows, inputs, ctx) for gid, g in shown]
    present = [c for c in DUPLICATE_CHECKS if c in set(in_groups["check"])]
    body = (
        note(
            "exact and near duplicates side by side; conflicting labels first; a large group "
            f"shows {GROUP_SHOWN} members and names the rest",
            kind="info",
        )
        + shown_note(len(groups), len(shown), "groups")
        + filter_bar("duplicate-groups", checks=present, splits=splits_of(rows.values()))
        + cards(items, page_size=max(1, ctx.options.page_size // 4), list_id="duplicate-groups")
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
    by_member = grouped(rows, "sample_id")
    members = list(by_member)
    cells = []
    for sid in members[:GROUP_SHOWN]:
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
    rest = members[GROUP_SHOWN:]
    extra = ""
    if rest:
        named = "".join(
            f"<li>{file_name(by_member[sid][0]['image'])}</li>" for sid in rest[:GROUP_NAMED]
        )
        unnamed = len(rest) - GROUP_NAMED
        named += f"<li>… {unnamed} more</li>" if unnamed > 0 else ""
        extra = (
            f'<details class="more"><summary>+{len(rest)} more</summary>'
            f'<ul class="names">{named}</ul></details>'
        )
    tags = facets(
        checks=[r["check"] for r in rows],
        splits=[manifest.get(sid, {}).get("split") for sid in members],
        names=[by_member[sid][0]["image"] for sid in members],
    )
    return (
        f'<div class="dup-group" data-group="{gid}"{tags}><h4>group {gid}: {len(members)} '
        f'images</h4><div class="members">{"".join(cells)}{extra}</div></div>'
    )


# ---------------------------------------------------------------- label issues


def label_issues(inputs: ReportInputs, ctx: Context) -> Section:
    title = "Label issues"
    if inputs.kind.objects:
        parts = [*object_sections.label_issue_parts(inputs, ctx), _confusion_tables(inputs)]
        return Section("label-issues", title, "".join(parts))
    parts = [metric_details(inputs.metrics.get("score"), "scoring metrics (out-of-fold)")]
    issues = inputs.label_issues
    if issues is None:
        parts.append(not_available("label issues", inputs.missing["label_issues"]))
        return Section("label-issues", title, "".join(parts))
    shown = issues.head(ctx.options.max_cards)
    manifest = by_id(inputs.manifest, shown["sample_id"])
    curated = by_id(inputs.curated, shown["sample_id"]) if inputs.curated is not None else {}
    card = _cls_label_card if inputs.kind.image_labels else _mask_label_card
    items, about = [], []
    for r in records(shown):
        sample = manifest.get(str(r["sample_id"]), {})
        about.append(_label_card_classes(r, sample, inputs))
        items.append(card(r, sample, curated.get(str(r["sample_id"]), {}), about[-1], ctx))
    if inputs.scores is not None and "label_quality" in inputs.scores:
        parts.append(quality_histogram(inputs.scores["label_quality"]))
    parts.append(shown_note(len(issues), len(shown), "samples flagged, worst first"))
    if items:
        seen = {c for cs in about for c in cs}
        names = [c for c in inputs.classes if c in seen] + sorted(seen - set(inputs.classes))
        parts.append(filter_bar("label-cards", classes=names, splits=splits_of(manifest.values())))
        parts.append(cards(items, page_size=ctx.options.page_size, list_id="label-cards"))
    parts.append(_confusion_tables(inputs))
    return Section("label-issues", title, "".join(parts))


def _label_card_classes(
    row: Mapping[str, Any], sample: Mapping[str, Any], inputs: ReportInputs
) -> list[str]:
    """A label issue is about its given and suggested class (a mask's: the classes in it)."""
    if not inputs.kind.image_labels:
        return _sample_classes(sample, inputs)
    return [str(v) for v in (row.get("given_label"), row.get("suggested_label")) if is_given(v)]


def _confusion_tables(inputs: ReportInputs) -> str:
    rows = inputs.oof_confusion
    if rows is None or rows.empty:
        return not_available("out-of-fold confusion", inputs.missing.get("oof_confusion", ""))
    pixels = inputs.kind.dense
    pairs = confused_pairs(rows, classes=inputs.classes, pixels=pixels)
    parts = ["<h3>Most confused class pairs (out of fold)</h3>"]
    parts.append(
        table(pairs) if not pairs.empty else note("the model agrees with every label", kind="ok")
    )
    if pixels:
        parts.append("<h3>Pixels the model labels otherwise, per class (out of fold)</h3>")
        parts.append(
            note(
                "missed: the class's pixels the model calls another class (the one it "
                "suggests most); false alarm: pixels it calls this class that are labelled "
                "otherwise; images: where the class is a hard positive / negative",
                kind="info",
            )
            + table(segmentation_breakdown(rows, inputs.hard_examples, classes=inputs.classes))
        )
    parts.append("<h3>Out-of-fold confusion (given label vs model)</h3>")
    parts.append(confusion(rows, classes=inputs.classes))
    return "".join(parts)


def _label_tags(row: Mapping[str, Any], sample: Mapping[str, Any], about: list[str]) -> str:
    return facets(classes=about, splits=[sample.get("split")], names=[row.get("image")])


def _cls_label_card(
    row: dict[str, Any],
    sample: dict[str, Any],
    curated: dict[str, Any],
    about: list[str],
    ctx: Context,
) -> str:
    sid = str(row["sample_id"])
    tags = _label_tags(row, sample, about)
    return (
        f'<div class="card issue-card label-issue" data-sample="{esc(sid)}"{tags}>'
        f'{ctx.img(row["image"], sample_id=sid, zoom=True)}<div class="meta">'
        f"{file_name(row['image'])}"
        f'<div class="labels"><span class="given">{esc(row.get("given_label"))}</span> → '
        f'<span class="suggested">{esc(row.get("suggested_label")) or "?"}</span></div>'
        f"<div>quality {esc(row.get('label_quality'))}</div>"
        f'<div class="small">{esc(row.get("reasons"))}</div>{curation_line(curated)}'
        "</div></div>"
    )


def _mask_label_card(
    row: dict[str, Any],
    sample: dict[str, Any],
    curated: dict[str, Any],
    about: list[str],
    ctx: Context,
) -> str:
    sid = str(row["sample_id"])
    mask = row.get("mask") if isinstance(row.get("mask"), str) else sample.get("mask")
    given = ctx.img(row["image"], mask=mask, view="mask", sample_id=sid, caption="given mask",
                    zoom=True)  # fmt: skip
    issue = ctx.img(row["image"], view="issues", sample_id=sid, caption="pixel issues",
                    zoom=True)  # fmt: skip
    tags = _label_tags(row, sample, about)
    return (
        f'<div class="card issue-card label-issue wide" data-sample="{esc(sid)}"{tags}>'
        f'<div class="pair">{given}{issue}</div><div class="meta">'
        f"{file_name(row['image'])}"
        f"<div>quality {esc(row.get('label_quality'))} · issue pixels "
        f"{esc(row.get('issue_fraction'))}</div>"
        f'<div class="small">{esc(row.get("reasons"))}</div>{curation_line(curated)}'
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
    if inputs.kind.objects:
        return Section("hard", title, object_sections.gallery_body(inputs, ctx, hard))
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
    manifest = by_id(inputs.manifest, shown)
    blocks = []
    for name in names:
        lists = []
        for role in ("positive", "negative"):
            picked = picks.get((name, role), hard.iloc[:0])
            items = [
                _gallery_card(r, manifest.get(str(r["sample_id"]), {}), inputs, ctx)
                for r in records(picked.head(per))
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
        f'{thumb}<div class="meta small">{file_name(row["image"])}{given}'
        f"p({esc(row['class'])}) {esc(row.get('prob'))} · loss {esc(row.get('loss'))}</div></div>"
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
    if inputs.kind.objects:
        parts.append(object_sections.object_curation(inputs))
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
    if "eval" in inputs.metrics and inputs.kind.objects:
        parts.append(object_sections.eval_metrics(inputs))
    elif "eval" in inputs.metrics:
        parts.append(key_values(inputs.metrics["eval"]))
    else:
        parts.append(not_available("evaluation metrics", inputs.missing["metrics/eval"]))
    if inputs.eval_confusion is not None and not inputs.eval_confusion.empty:
        what = " (boxes matched at IoU 0.5; background: missed or false alarm)"
        heading = f"<h4>confusion{what if inputs.kind.objects else ''}</h4>"
        parts.append(heading + confusion(inputs.eval_confusion, classes=inputs.classes))
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
