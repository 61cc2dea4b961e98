"""Small HTML building blocks with no assets: tables, bar histograms, SVG line charts,
confusion matrices. Every string that came from data goes through :func:`esc`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from datapipe.report.inputs import is_number
from datapipe.report.render import PALETTE


def esc(value: Any) -> str:
    """Text for HTML: escaped, NaN/None as an empty string, floats short."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float | np.floating) and np.isnan(value):
        return ""
    if isinstance(value, float | np.floating):
        return escape(f"{float(value):.4g}")
    return escape(str(value))


def note(text: str, *, kind: str = "na") -> str:
    """A one-line remark; ``kind="na"`` marks an input that is not available."""
    return f'<p class="note {esc(kind)}">{text}</p>'


def not_available(what: str, path: Any) -> str:
    return note(f"not available: {esc(what)} (<code>{esc(path)}</code> not found)")


def table(rows: pd.DataFrame, *, cls: str = "data", max_rows: int = 500) -> str:
    """A DataFrame as an HTML table (index dropped), at most ``max_rows`` rows."""
    shown = rows.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    body = "".join(
        "<tr>" + "".join(_cell(v) for v in row) + "</tr>"
        for row in shown.itertuples(index=False, name=None)
    )
    more = (
        note(f"{len(rows) - max_rows} more rows not shown", kind="more")
        if len(rows) > max_rows
        else ""
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}'


def _cell(value: Any) -> str:
    numeric = is_number(value) or isinstance(value, np.integer | np.floating)
    return f'<td class="num">{esc(value)}</td>' if numeric else f"<td>{esc(value)}</td>"


def key_values(values: Mapping[str, Any], *, cls: str = "kv") -> str:
    """A two-column table of scalar values; nested mappings become one row per key with
    the inner keys as columns (per-class metrics)."""
    scalars = {k: v for k, v in values.items() if not isinstance(v, Mapping | list)}
    nested = {k: v for k, v in values.items() if isinstance(v, Mapping) and v}
    lists = {k: v for k, v in values.items() if isinstance(v, list)}
    parts = []
    if scalars or lists:
        rows = [(k, v) for k, v in scalars.items()]
        rows += [(k, ", ".join(str(x) for x in v) or "—") for k, v in lists.items()]
        parts.append(table(pd.DataFrame(rows, columns=["metric", "value"]), cls=cls))
    for key, inner in nested.items():
        frame = pd.DataFrame([{str(k): _scalar(v) for k, v in inner.items()}])
        parts.append(f"<h4>{esc(key)}</h4>" + table(frame, cls=cls))
    return "".join(parts)


def _scalar(value: Any) -> Any:
    return value if not isinstance(value, Mapping | list) else str(value)


def bars(
    counts: Mapping[str, int] | pd.Series, *, title: str, max_bars: int = 16, sort: bool = True
) -> str:
    """A horizontal bar histogram, largest bars first (``sort=False``: in the given order);
    bars past ``max_bars`` are folded into 'other'."""
    series = pd.Series(counts, dtype="int64")
    if sort:
        series = series.sort_values(ascending=False, kind="stable")
    if len(series) > max_bars:
        other = int(series.iloc[max_bars - 1 :].sum())
        series = pd.concat([series.iloc[: max_bars - 1], pd.Series({"other": other})])
    top = max(int(series.max()), 1) if len(series) else 1
    rows = "".join(
        f'<div class="bar-row"><span class="bar-label">{esc(k)}</span>'
        f'<span class="bar" style="width:{100 * int(v) / top:.1f}%"></span>'
        f'<span class="bar-n">{int(v)}</span></div>'
        for k, v in series.items()
    )
    return f'<div class="hist"><h4>{esc(title)}</h4>{rows or note("none", kind="more")}</div>'


def line_chart(
    series: Mapping[str, pd.DataFrame], *, title: str, width: int = 360, height: int = 200
) -> str:
    """Inline SVG of ``value`` against ``step`` for each named series (at most 500 points
    each), with the axis ranges written at the corners."""
    frames = {k: v.dropna() for k, v in series.items() if len(v.dropna())}
    if not frames:
        return ""
    steps = np.concatenate([f["step"].to_numpy(np.float64) for f in frames.values()])
    values = np.concatenate([f["value"].to_numpy(np.float64) for f in frames.values()])
    x0, x1 = float(steps.min()), float(steps.max())
    y0, y1 = float(values.min()), float(values.max())
    pad, plot_w, plot_h = 8, width - 16, height - 36
    lines, legend = [], []
    for i, (name, frame) in enumerate(frames.items()):
        frame = frame.iloc[np.linspace(0, len(frame) - 1, min(len(frame), 500)).astype(int)]
        xs = pad + plot_w * (frame["step"].to_numpy(np.float64) - x0) / max(x1 - x0, 1e-12)
        ys = pad + plot_h * (1 - (frame["value"].to_numpy(np.float64) - y0) / max(y1 - y0, 1e-12))
        colour = "#{:02x}{:02x}{:02x}".format(*PALETTE[(i + 3) % len(PALETTE)])
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        lines.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>'
        )
        legend.append(f'<span class="swatch" style="background:{colour}"></span>{esc(name)}')
    axis_y = pad + plot_h
    svg = (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(title)}">'
        f'<rect x="{pad}" y="{pad}" width="{plot_w}" height="{plot_h}" class="plot-bg"/>'
        + "".join(lines)
        + f'<text x="{pad}" y="{axis_y + 14}" class="axis">{esc(x0)}</text>'
        f'<text x="{pad + plot_w}" y="{axis_y + 14}" class="axis" text-anchor="end">'
        f"{esc(x1)} (step)</text>"
        f'<text x="{pad + 2}" y="{pad + 11}" class="axis">{esc(y1)}</text>'
        f'<text x="{pad + 2}" y="{axis_y - 3}" class="axis">{esc(y0)}</text></svg>'
    )
    return (
        f'<figure class="curve"><figcaption>{esc(title)}</figcaption>{svg}'
        f'<div class="legend">{" ".join(legend)}</div></figure>'
    )


def confusion(rows: pd.DataFrame, *, classes: Sequence[str] = ()) -> str:
    """``actual, predicted`` rows -> a row-normalised confusion table, darker = more."""
    actual, predicted = rows["actual"].astype(str), rows["predicted"].astype(str)
    labels = _ordered(classes, pd.concat([actual, predicted]).unique())
    counts = pd.crosstab(actual, predicted).reindex(index=labels, columns=labels, fill_value=0)
    n = counts.to_numpy(np.int64)
    share = n / np.maximum(n.sum(axis=1, keepdims=True), 1)
    head = "".join(f"<th>{esc(c)}</th>" for c in labels)
    body = []
    for i, label in enumerate(labels):
        cells = "".join(
            f'<td class="num" style="background:rgba(0,130,200,{share[i, j]:.2f})" '
            f'title="{n[i, j]} rows">{share[i, j]:.2f}</td>'
            for j in range(len(labels))
        )
        body.append(f"<tr><th>{esc(label)}</th>{cells}</tr>")
    return (
        '<table class="confusion"><thead><tr><th>actual \\ predicted</th>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _ordered(classes: Sequence[str], seen: Iterable[Any]) -> list[str]:
    seen_set = {str(s) for s in seen}
    first = [c for c in classes if c in seen_set]
    return first + sorted(seen_set - set(first))


def legend(classes: Sequence[str]) -> str:
    """The overlay colour of each class (class 0 is background, left clear)."""
    items = []
    for i, name in enumerate(classes):
        rgb = PALETTE[i % len(PALETTE)]
        colour = "transparent" if i == 0 else "#{:02x}{:02x}{:02x}".format(*rgb)
        items.append(f'<span class="swatch" style="background:{colour}"></span>{esc(name)}')
    items.append('<span class="swatch ignored"></span>ignored')
    return f'<div class="legend">{" ".join(items)}</div>'


def quality_histogram(quality: pd.Series) -> str:
    """Label quality of every scored sample in tenths (lower = more likely mislabelled)."""
    values = pd.to_numeric(quality, errors="coerce").dropna().clip(0.0, 1.0)
    tenth = np.minimum((values.to_numpy() * 10).astype(int), 9)
    counts = {f"{k / 10:.1f}–{(k + 1) / 10:.1f}": int((tenth == k).sum()) for k in range(10)}
    return bars(pd.Series(counts), title="label quality of all scored samples", sort=False)


def box_legend(classes: Sequence[str], *, marks: bool = True) -> str:
    """The box colour of each class on object thumbnails (class 0 is a class here, not
    background), and with ``marks`` what the line styles mean."""
    items = [
        f'<span class="swatch box" style="border-color:{_hex(i)}"></span>{esc(name)}'
        for i, name in enumerate(classes)
    ]
    if marks:
        items.append('<span class="swatch box flagged"></span>the object a card is about')
        items.append('<span class="swatch box dashed"></span>suggested box')
    return f'<div class="legend boxes">{" ".join(items)}</div>'


def _hex(index: int) -> str:
    return "#{:02x}{:02x}{:02x}".format(*PALETTE[index % len(PALETTE)])


def metric_details(values: Mapping[str, Any] | None, summary: str) -> str:
    """A stage's whole metrics dict as a collapsed table under ``summary`` ("" when absent)."""
    if values is None:
        return ""
    return f"<details><summary>{summary}</summary>" + key_values(values) + "</details>"
