"""What every section's cards share: the section record, the thumbnail context, card lists,
their filter attributes and bars, and the lookups of a sample's row."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from datapipe.config import ReportParams
from datapipe.report.boxes import Marks
from datapipe.report.charts import esc, note
from datapipe.report.thumbnails import Thumbnailer, View


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
        zoom: bool = False,
        marks: Marks | None = None,
    ) -> str:
        """One thumbnail ``<img>`` (or a placeholder naming why there is none); a click opens
        it larger, from an embedded larger picture where ``zoom`` (while the budget lasts).
        ``marks``: what an object thumbnail (``view="objects"``) adds to the given boxes."""
        size = self.size
        if not isinstance(image, str) or not image:
            return (
                f'<div class="thumb missing" style="width:{size}px;height:{size}px">no image</div>'
            )
        uri = self.thumbs.thumb(
            image, mask=mask if isinstance(mask, str) and mask else None, view=view,
            sample_id=sample_id, marks=marks,
        )  # fmt: skip
        if uri is None:
            return (
                f'<div class="thumb missing" style="width:{size}px;height:{size}px" '
                f'title="{esc(image)}">unreadable</div>'
            )
        title = f"{image} ({caption})" if caption else image
        large = ""
        if zoom:
            mask_ = mask if isinstance(mask, str) and mask else None
            big = self.thumbs.zoom(image, mask=mask_, view=view, sample_id=sample_id, marks=marks)
            large = f' data-zoom="{big}"' if big is not None else ""
        return (
            f'<img class="thumb" src="{uri}" width="{size}" height="{size}"{large} '
            f'alt="{esc(title)}" title="{esc(title)}" loading="lazy">'
        )


def cards(items: Sequence[str], *, page_size: int, list_id: str = "") -> str:
    """A list of cards the page's script paginates (``page_size`` per page)."""
    ident = f' id="{esc(list_id)}"' if list_id else ""
    return f'<div class="cards"{ident} data-page-size="{page_size}">{"".join(items)}</div>'


def facets(
    *,
    checks: Iterable[Any] = (),
    classes: Iterable[Any] = (),
    splits: Iterable[Any] = (),
    names: Iterable[Any] = (),
) -> str:
    """A card's filter attributes (JSON lists the page's filters match against)."""
    values = {"checks": checks, "classes": classes, "splits": splits, "names": names}
    return "".join(
        f' data-{key}="{esc(json.dumps([str(v) for v in dict.fromkeys(vals) if is_given(v)]))}"'
        for key, vals in values.items()
    )


def is_given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and value != ""


def filter_bar(
    list_id: str,
    *,
    checks: Sequence[str] = (),
    classes: Sequence[str] = (),
    splits: Sequence[str] = (),
    check_label: str = "check",
) -> str:
    """Filters (check, class, split: a choice each where there is more than one) and a file
    name search over the cards of list ``list_id``; the page's script applies them.
    ``check_label`` names the first filter (object label issues filter by ``issue``)."""
    parts = [f'<div class="filters" data-for="{esc(list_id)}">']
    for key, label, options in (("checks", check_label, checks), ("classes", "class", classes),
                                ("splits", "split", splits)):  # fmt: skip
        if len(options) > 1:
            choices = "".join(f'<option value="{esc(o)}">{esc(o)}</option>' for o in options)
            parts.append(
                f'<label>{label} <select data-filter="{key}"><option value="">all</option>'
                f"{choices}</select></label>"
            )
    parts.append(
        '<label>file <input type="search" data-filter="names" placeholder="part of a path">'
        '</label><span class="filter-count"></span></div>'
    )
    return "".join(parts)


def shown_note(total: int, shown: int, what: str) -> str:
    if total == shown:
        return note(f"{total} {what}", kind="count")
    return note(f"{total} {what}; the first {shown} shown (report.max_cards)", kind="count")


def splits_of(samples: Iterable[Mapping[str, Any]]) -> list[str]:
    seen = {str(s["split"]) for s in samples if is_given(s.get("split"))}
    return [x for x in ("train", "val", "test") if x in seen] + sorted(
        seen - {"train", "val", "test"}
    )


#: The columns of a sample's row that its cards show.
CARD_COLUMNS = ("sample_id", "label", "split", "mask", "mask_classes", "excluded",
                "exclude_reason", "action", "final_label")  # fmt: skip


def by_id(table_: pd.DataFrame, ids: Any) -> dict[str, dict[str, Any]]:
    """The rows of ``ids`` (and only the columns cards show), keyed by ``sample_id``."""
    wanted = table_[table_["sample_id"].isin(set(map(str, ids)))]
    wanted = wanted[[c for c in CARD_COLUMNS if c in wanted.columns]]
    return {str(r["sample_id"]): r for r in records(wanted)}


def records(table_: pd.DataFrame) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], table_.to_dict("records"))


def grouped(rows: Iterable[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by ``str(row[key])``, in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(str(row[key]), []).append(row)
    return out


def file_name(image: Any) -> str:
    """The file's name in bold and its folder above it, so both read at a glance."""
    path = str(image) if is_given(image) else ""
    folder, _, name = path.rpartition("/")
    where = f'<span class="folder">{esc(folder)}/</span>' if folder else ""
    return f'<div class="path" title="{esc(path)}">{where}<b>{esc(name)}</b></div>'


def curation_line(curated: Mapping[str, Any], *, what: str = "curation") -> str:
    """What curate does with a sample (``what`` names it on the card)."""
    action = curated.get("action")
    if not isinstance(action, str) or not action:
        return ""
    final = curated.get("final_label")
    to = f" → {esc(final)}" if action == "relabel" and isinstance(final, str) else ""
    return f'<div class="small">{esc(what)}: <b>{esc(action)}</b>{to}</div>'
