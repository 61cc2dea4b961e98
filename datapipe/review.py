"""Import a review done elsewhere (a spreadsheet, a labelling tool's export) into the review file.

The sheet names each sample by ``sample_id`` or by its ``image`` path; a path is mapped to the
sample id through the manifest (relative to the data root as the manifest holds it, or any
path that resolves inside the root). Decided rows are checked with
:func:`datapipe.curate.validate_review` and merged into the existing review sheet: a sample
already there takes the imported decision (the later review wins), a new one is appended with
its context columns from the scores. Errors name the file and the row as a spreadsheet shows it
(header = row 1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from datapipe.curate import REVIEW_SHEET, validate_review
from datapipe.errors import DatapipeError

#: Other names a sheet may give the image column.
IMAGE_ALIASES = ("image", "image_path", "path", "file", "filename")
_CONTEXT = ("image", "given_label", "suggested_label", "label_quality", "reasons")


@dataclass(frozen=True)
class ImportResult:
    """The merged review sheet and what the import changed in it."""

    sheet: pd.DataFrame
    added: int  # samples not in the review file before
    changed: int  # samples whose decision, label or note the import changed
    unchanged: int  # samples decided exactly so already
    ignored: int  # rows of the imported sheet without a decision

    @property
    def imported(self) -> int:
        return self.added + self.changed + self.unchanged

    @property
    def decided(self) -> int:
        """Samples with a decision in the merged sheet."""
        return int((self.sheet["decision"].astype(str).str.strip() != "").sum())


def read_sheet(path: str | Path) -> pd.DataFrame:
    """A CSV review sheet as text columns (ids stay strings; blank lines keep row numbers).

    Column names are stripped and lower-cased; an Excel byte-order mark is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise DatapipeError(f"{path}: review sheet not found")
    try:
        df = pd.read_csv(
            path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig"
        )
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DatapipeError(f"{path}: cannot read CSV: {exc}") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    return df


def one_row_per_sample(sheet: pd.DataFrame, *, name: str) -> pd.DataFrame:
    """``sheet`` (read by :func:`read_sheet`) with one row per ``sample_id``, blank rows dropped.

    A sample listed on several rows keeps its decided row (curate ignores the undecided ones);
    a sample decided on two rows is an error naming both (curate refuses it too). Row numbers
    in errors are the spreadsheet's (header = row 1), so ``sheet`` must keep its file index.
    """
    if "sample_id" not in sheet:
        raise DatapipeError(f"{name}: missing column 'sample_id'; has {list(sheet.columns)}")
    sheet = sheet[(sheet != "").any(axis=1)]
    ids = sheet["sample_id"].astype(str).str.strip()
    decided = (
        sheet["decision"].astype(str).str.strip() != ""
        if "decision" in sheet
        else pd.Series(False, index=sheet.index)
    )
    decided_on: dict[str, int] = {}  # sample id -> the spreadsheet row of its decision
    for line, sid in zip(sheet.index[decided.to_numpy(bool)] + 2, ids[decided], strict=True):
        if sid in decided_on:
            raise DatapipeError(
                f"{name} row {line}: sample_id {sid!r} already decided on row "
                f"{decided_on[sid]}; keep one of the two rows"
            )
        decided_on[sid] = int(line)
    rows = pd.DataFrame({"sample_id": ids.to_numpy(), "undecided": ~decided.to_numpy(bool)})
    keep = rows.sort_values("undecided", kind="stable").drop_duplicates("sample_id").index
    return sheet.assign(sample_id=ids).iloc[sorted(keep)].reset_index(drop=True)


def import_review(
    sheet: pd.DataFrame,
    *,
    manifest: pd.DataFrame,
    scores: pd.DataFrame,
    classes: Sequence[str],
    task: str,
    existing: pd.DataFrame | None = None,
    root: Path | None = None,
    name: str = "review",
    target: str = "review file",
) -> ImportResult:
    """Validate an imported sheet and merge its decisions into ``existing``.

    Args:
        sheet: columns ``decision`` and ``sample_id`` and / or an image path (``image`` or
            one of :data:`IMAGE_ALIASES`); ``label`` and ``note`` optional.
        manifest: ``sample_id`` and ``image`` (relative to ``root``) of every sample.
        scores: the score stage's table: the known sample ids, and context for new rows.
        existing: the current review sheet, if any (read as text).
        root: the data root, to map absolute or root-prefixed image paths.
        name: the sheet's file name, for errors.
        target: the review file's name, for errors in the merged result (a row of the
            existing file naming a sample that is gone, say).
    """
    sheet = with_sample_ids(sheet, manifest, root=root, name=name)
    decided = validate_review(
        sheet,
        sample_ids=scores["sample_id"].astype(str).tolist(),
        classes=classes,
        task=task,
        name=name,
    )
    result = _merge(existing, decided, scores, list(sheet.columns), len(sheet) - len(decided))
    validate_review(
        result.sheet,
        sample_ids=scores["sample_id"].astype(str).tolist(),
        classes=classes,
        task=task,
        name=target,
    )
    return result


def with_sample_ids(
    sheet: pd.DataFrame, manifest: pd.DataFrame, *, root: Path | None, name: str
) -> pd.DataFrame:
    """``sheet`` with ``sample_id`` filled from the image path wherever it is empty.

    Raises:
        DatapipeError: no id or image column; a decided row whose image is not in the manifest,
            or whose id and image name different samples.
    """
    image_col = next((c for c in IMAGE_ALIASES if c in sheet), None)
    if "sample_id" not in sheet and image_col is None:
        raise DatapipeError(
            f"{name}: needs a sample_id or an image column (one of {list(IMAGE_ALIASES)}); "
            f"has {list(sheet.columns)}"
        )
    if "decision" not in sheet:
        raise DatapipeError(f"{name}: missing column 'decision'; has {list(sheet.columns)}")
    sheet = sheet.copy()
    ids = sheet["sample_id"] if "sample_id" in sheet else pd.Series("", index=sheet.index)
    ids = ids.fillna("").astype(str).str.strip()
    if image_col is not None:
        by_image = dict(
            zip(manifest["image"].astype(str), manifest["sample_id"].astype(str), strict=True)
        )
        resolved_root = root.resolve() if root is not None else None
        decisions = sheet["decision"].fillna("").astype(str).str.strip()
        rows = zip(ids, sheet[image_col].fillna("").astype(str), decisions, strict=True)
        for position, (sid, image, decision) in enumerate(rows):
            if not image.strip() or not decision:
                continue
            where = f"{name} row {position + 2}"
            found = _lookup(image, by_image, resolved_root)
            if found is None:
                if sid:
                    continue  # the id decides; validate_review checks it
                raise DatapipeError(f"{where}: image {image!r} is not a sample of this dataset")
            if sid and sid != found:
                raise DatapipeError(
                    f"{where}: sample_id {sid!r} and image {image!r} (sample {found!r}) disagree"
                )
            ids.iloc[position] = found
    sheet["sample_id"] = ids
    return sheet


def _lookup(image: str, by_image: dict[str, str], root: Path | None) -> str | None:
    text = image.strip().replace("\\", "/")
    candidates = [PurePosixPath(text).as_posix()]
    if root is not None:
        with contextlib.suppress(ValueError, OSError):
            candidates.append(Path(text).resolve().relative_to(root).as_posix())
    return next((by_image[c] for c in candidates if c in by_image), None)


def _merge(
    existing: pd.DataFrame | None,
    decided: pd.DataFrame,
    scores: pd.DataFrame,
    imported_columns: Sequence[str],
    ignored: int,
) -> ImportResult:
    sheet = _blank_sheet() if existing is None else existing.astype(str).copy()
    for column in REVIEW_SHEET:
        if column not in sheet:
            sheet[column] = ""
    sheet = sheet[[*REVIEW_SHEET, *(c for c in sheet.columns if c not in REVIEW_SHEET)]]
    sheet = sheet.reset_index(drop=True)
    updated = [c for c in ("decision", "label", "note") if c == "decision" or c in imported_columns]
    first_row = {sid: i for i, sid in reversed(list(enumerate(sheet["sample_id"].str.strip())))}
    columns = [c for c in _CONTEXT if c in scores]
    context = scores.astype({"sample_id": str}).set_index("sample_id")[columns]
    context = context.astype(object).where(context.notna(), "")
    added = changed = unchanged = 0
    new_rows = []
    for row in decided.itertuples(index=False):
        values = {c: str(getattr(row, c)) for c in updated}
        at = first_row.get(str(row.sample_id))
        if at is None:
            added += 1
            new_rows.append(_new_row(str(row.sample_id), values, context))
            continue
        before = [str(sheet.at[at, c]) for c in updated]
        if before == [values[c] for c in updated]:
            unchanged += 1
        else:
            changed += 1
            for c in updated:
                sheet.at[at, c] = values[c]
    if new_rows:
        sheet = pd.concat([sheet, pd.DataFrame(new_rows)], ignore_index=True).fillna("")
    return ImportResult(sheet, added, changed, unchanged, ignored)


def _blank_sheet() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in REVIEW_SHEET})


def _new_row(sample_id: str, values: dict[str, str], context: pd.DataFrame) -> dict[str, str]:
    row = {c: "" for c in REVIEW_SHEET}
    row["sample_id"] = sample_id
    row.update(values)
    if sample_id in context.index:
        row.update({str(k): str(v) for k, v in context.loc[sample_id].items()})
    return row
