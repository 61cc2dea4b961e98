"""The ``datapipe`` command: thin, like stages/ (it knows paths; the library does the work).

datapipe inspect odd.tif data/                   # dtype, shape, value range, bit depth, header
datapipe init /data/cells --name cells           # add datasets.cells to params.yaml
datapipe check                                   # params valid, no broken links in the roots
datapipe review export --dataset shapes_cls      # reviews/shapes_cls.csv, worst first
datapipe review import sheet.csv --dataset shapes_cls
datapipe report --dataset shapes_cls --open      # runs/shapes_cls/reports/report.html
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapipe import tasks
from datapipe.config import load_params
from datapipe.curate import review_sheet
from datapipe.errors import DatapipeError
from datapipe.init import add_dataset, dataset_entry, default_name, detect_dataset, root_text
from datapipe.inspection import (
    DEFAULT_FOLDER_LIMIT,
    Failure,
    failures_of,
    format_entry,
    inspect_paths,
)
from datapipe.io import read_table, write_table
from datapipe.manifest import broken_links
from datapipe.review import import_review, one_row_per_sample, read_sheet
from datapipe.runs import RunFiles, read_stats

if TYPE_CHECKING:
    import pandas as pd

EPILOG = """examples:
  datapipe inspect scan_001.tif                  what the pipeline sees in one file
  datapipe init /data/cells --name cells         add a dataset to params.yaml, then: dvc repro
  datapipe check                                 params valid; nothing in a root stops DVC
  datapipe review export --dataset shapes_cls    a sheet of flagged samples to decide
  datapipe review import done.csv --dataset shapes_cls
  datapipe report --dataset shapes_cls --open    open the HTML report

Errors are one line naming the file or key, with exit code 2.
"""

INSPECT_EPILOG = f"""examples:
  datapipe inspect scan_001.tif
      dtype, shape (H x W x C), per-channel min / max, bit depth guess (12-bit data in a
      uint16 file shows as 12), file size and the container header (TIFF: pages,
      compression, photometric, planarconfig, axes; PNG / JPEG: bit depth from the header)
  datapipe inspect data/cells/
      up to {DEFAULT_FOLDER_LIMIT} of the folder's images (spread evenly over sub-folders),
      summarised by dtype and shape
  datapipe inspect --json a.png b.tif > info.json

Unreadable files are listed on stderr, one line each; the exit code is then 1.
"""

INIT_EPILOG = """examples:
  datapipe init /data/cells
      detect the layout (segmentation: images/ + masks/ or pairs.csv; classification:
      one folder per class or labels.csv), add datasets.cells to params.yaml, keeping
      its comments; then run: dvc repro
  datapipe init data/flowers --name flowers --task classification
  datapipe init data/cells --mask-suffix _mask --dry-run
      pair images/a.png with masks/a_mask.png; print the entry, write nothing
"""

CHECK_EPILOG = """examples:
  datapipe check
      load params.yaml (every key checked, as each stage does) and look under each data root
      for symbolic links that lead nowhere (broken, or a loop): DVC hashes the whole root and
      fails on them before any stage runs; exit 2 with the list and what to do
  make repro
      runs datapipe check, then dvc repro
"""

REVIEW_EPILOG = """examples:
  datapipe review export --dataset shapes_cls
      write reviews/shapes_cls.csv: the flagged samples, worst first, with a `decision`
      column to fill (keep | drop | relabel); decisions already made are kept
  datapipe review import reviewed.csv --dataset shapes_cls
      merge a sheet reviewed elsewhere (sample_id or image, decision, label, note) into
      reviews/shapes_cls.csv; then: dvc repro curate@shapes_cls
"""

EXPORT_EPILOG = """examples:
  datapipe review export --dataset shapes_cls
      write reviews/shapes_cls.csv (keeps decisions already made); fill `decision` with
      keep | drop | relabel (relabel reads `label`), then: dvc repro curate@shapes_cls
"""

IMPORT_EPILOG = """examples:
  datapipe review import reviewed.csv --dataset shapes_cls
      reviewed.csv has columns decision (keep | drop | relabel), label (the new class for
      relabel), note, and sample_id or image (the path as in the manifest, relative to the
      data root, or a path inside the root); rows without a decision are skipped
      imported decisions replace those in reviews/shapes_cls.csv for the same samples
"""

RUNS_HELP = "the pipeline's outputs, RUNS/<dataset>/ (default runs)"

REPORT_EPILOG = """examples:
  datapipe report --dataset shapes_cls
      print the path of runs/shapes_cls/reports/report.html
  datapipe report --dataset shapes_cls --open
      and open it in a web browser
"""


# --- inspect -------------------------------------------------------------------------------


def _inspect(args: argparse.Namespace) -> int:
    entries = inspect_paths(args.paths, limit=args.limit)
    failures = [f for e in entries for f in failures_of(e)]
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
    else:
        blocks = [format_entry(e) for e in entries if not isinstance(e, Failure)]
        if blocks:
            print("\n\n".join(blocks))
        for failure in failures:
            print(format_entry(failure), file=sys.stderr)
    return 1 if failures else 0


# --- init ----------------------------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    params: Path = args.params
    if not params.parent.is_dir():
        raise DatapipeError(f"{params}: folder {params.parent} does not exist")
    detected = detect_dataset(args.dir, task=args.task, mask_suffix=args.mask_suffix)
    name = args.name or default_name(args.dir)
    entry = dataset_entry(detected, root=root_text(args.dir, params.parent))
    existed = params.is_file()
    text = params.read_text(encoding="utf-8") if existed else ""
    comment = f"datapipe init: {detected.images} images"
    if detected.class_counts:
        comment += f", {len(detected.class_counts)} classes"
    new_text = add_dataset(text, name, entry, comment=comment, source=str(params))
    print(f"{args.dir}: {detected.summary()}")
    if detected.unpaired:
        print(
            f"warning: {detected.unpaired} images have no mask (or several); ingest will "
            "flag them; pass --mask-suffix if masks are named <stem><suffix>.*"
        )
    if args.dry_run:
        print(f"{params}: would add (--dry-run, nothing written):")
        print(_added_lines(text, new_text))
        return 0
    _write_atomic(params, new_text)
    print(f"{params}: added datasets.{name}" + ("" if existed else " (new file)"))
    if not (params.parent / "dvc.yaml").is_file():
        print(f"note: no dvc.yaml next to {params}; run dvc from the datapipe project folder")
    print(f"next: dvc repro   then: datapipe report --dataset {name} --open")
    return 0


def _added_lines(before: str, after: str) -> str:
    old = before.splitlines()
    new = after.splitlines()
    start = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), len(old))
    return "\n".join(new[start : start + len(new) - len(old)])


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.datapipe-tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# --- check ---------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    params_path: Path = args.params
    params = load_params(params_path)
    base = params_path.parent
    problems: list[str] = []
    skipped = 0
    for name, dataset in params.datasets.items():
        root = dataset.root if dataset.root.is_absolute() else base / dataset.root
        if not root.is_dir():
            raise DatapipeError(f"datasets.{name}.root: {dataset.root} is not a folder")
        links = broken_links(root)
        ignored = _dvc_ignored(base, [root / rel for rel, _ in links])
        shown = [(rel, why) for rel, why in links if (root / rel) not in ignored]
        skipped += len(links) - len(shown)
        if shown:
            problems.append(
                f"datasets.{name}.root {dataset.root}: {len(shown)} symbolic link(s) lead "
                "nowhere; DVC hashes the whole root and stops at the first"
            )
            problems += [f"  {(Path(dataset.root) / rel).as_posix()}: {why}" for rel, why in shown]
    if problems:
        print("error: " + "\n".join(problems), file=sys.stderr)
        print(
            "fix: point each link at an existing file, delete it, or list it in .dvcignore "
            "(DVC then skips it; ingest still lists it as an unreadable sample)",
            file=sys.stderr,
        )
        return 2
    ignored_text = f" ({skipped} listed in .dvcignore: unreadable samples)" if skipped else ""
    print(
        f"{params_path}: {len(params.datasets)} dataset(s) OK: params valid, no broken symbolic "
        f"link DVC would hash{ignored_text}"
    )
    return 0


def _dvc_ignored(project: Path, paths: list[Path]) -> set[Path]:
    """The ``paths`` DVC ignores (``.dvcignore``), as DVC itself answers; none without DVC."""
    if not paths:
        return set()
    absolute = {p: str(p.parent.resolve() / p.name) for p in paths}  # the link, not its target
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "check-ignore", *absolute.values()],
        cwd=project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    said = {line.strip() for line in result.stdout.splitlines()}
    return {p for p, text in absolute.items() if text in said}


# --- review --------------------------------------------------------------------------------


def _review_export(args: argparse.Namespace) -> int:
    files = RunFiles.under(args.runs / args.dataset)
    issues = _text_table(files.label_issues, required=("sample_id",))
    curated = read_table(files.curated) if files.curated.exists() else None
    path = args.reviews / f"{args.dataset}.csv"
    existing = _existing_reviews(path)
    sheet = review_sheet(issues, curated, existing)
    write_table(sheet, path)
    decided = int((sheet["decision"].astype(str).str.strip() != "").sum())
    print(f"{path}: {len(sheet)} samples to review ({decided} already decided)")
    return 0


def _text_table(path: Path, *, required: Sequence[str]) -> pd.DataFrame:
    """A CSV table with every cell as the text it holds: class names ``0``..``9`` stay
    ``7``, never ``7.0`` (which curate would then refuse as an unknown class)."""
    import pandas as pd

    read_table(path, required=required)  # not found / damaged / columns: the usual errors
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _existing_reviews(path: Path) -> pd.DataFrame | None:
    """The review file as text columns (sample ids stay strings), blank rows dropped, one row
    per sample (:func:`~datapipe.review.one_row_per_sample`)."""
    if not path.exists():
        return None
    return one_row_per_sample(read_sheet(path), name=str(path))


def _review_import(args: argparse.Namespace) -> int:
    files = RunFiles.under(args.runs / args.dataset)
    scores = read_table(files.scores, required=("sample_id",))
    manifest = read_table(files.manifest, required=("sample_id", "image"))
    stats = read_stats(files.stats)
    target = args.reviews / f"{args.dataset}.csv"
    result = import_review(
        read_sheet(args.file),
        manifest=manifest,
        scores=scores,
        classes=stats.classes,
        task=stats.task,
        existing=_existing_reviews(target),
        root=Path(stats.root) if stats.root else None,
        name=str(args.file),
        target=str(target),
    )
    write_table(result.sheet, target)
    print(
        f"{target}: imported {result.imported} decisions from {args.file} "
        f"({result.added} new, {result.changed} changed, {result.unchanged} unchanged; "
        f"{result.ignored} without a decision skipped); {result.decided} samples decided"
    )
    print(f"next: dvc repro curate@{args.dataset}")
    return 0


# --- report --------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    _known_dataset(args.dataset, params=args.params, runs=args.runs)
    path: Path = RunFiles.under(args.runs / args.dataset).report
    if not path.is_file():
        print(
            f"{path}: no report yet; build it with: dvc repro report@{args.dataset}",
            file=sys.stderr,
        )
        return 1
    print(path)
    if args.open and not webbrowser.open(path.resolve().as_uri()):
        print("no web browser found; open the file above by hand", file=sys.stderr)
    return 0


def _known_dataset(name: str, *, params: Path, runs: Path) -> None:
    """Refuse a dataset that ``params`` (when it exists) does not define, or, without a params
    file, one with no ``runs/<name>/`` folder: a typo is an error, not 'no report yet'."""
    if params.is_file():
        known = sorted(load_params(params).datasets)
        if name not in known:
            raise DatapipeError(f"unknown dataset {name!r}; {params} has {known}")
    elif not (runs / name).is_dir():
        raise DatapipeError(f"unknown dataset {name!r}: no {params} here and no {runs / name}/")


# --- the parser ----------------------------------------------------------------------------


def _add_command(
    commands: Any, name: str, help_text: str, epilog: str, description: str | None = None
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=description or help_text[:1].upper() + help_text[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Long by design: one declaration per command, read top to bottom like ``--help``."""
    parser = argparse.ArgumentParser(
        prog="datapipe",
        description="Inspect images, add datasets, check params and data roots, review flagged "
        "samples and open the report of a datapipe project.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = _add_command(
        commands, "inspect", "show what the pipeline sees in image files or folders",
        INSPECT_EPILOG,
    )  # fmt: skip
    inspect.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument(
        "--limit", type=_positive, default=DEFAULT_FOLDER_LIMIT,
        help=f"images inspected per folder (default {DEFAULT_FOLDER_LIMIT})",
    )  # fmt: skip
    inspect.set_defaults(func=_inspect)

    init = _add_command(
        commands, "init", "detect a data folder's layout and add it to params.yaml", INIT_EPILOG
    )
    init.add_argument("dir", type=Path, metavar="DIR", help="the data root (never modified)")
    init.add_argument("--name", help="the dataset's key (default: the folder's name)")
    init.add_argument(
        "--task", choices=("auto", *tasks.TASKS), default="auto",
        help="auto (default): the task whose layout the folder fits; refused if both fit",
    )  # fmt: skip
    init.add_argument(
        "--mask-suffix", default=None,
        help="segmentation images/<stem>.* pairs masks/<stem><suffix>.* (default: guessed)",
    )  # fmt: skip
    init.add_argument(
        "--params", type=Path, default=Path("params.yaml"),
        help="the params file to add to (default params.yaml; created if missing)",
    )  # fmt: skip
    init.add_argument("--dry-run", action="store_true", help="print the entry, write nothing")
    init.set_defaults(func=_init)

    check = _add_command(
        commands, "check", "validate params.yaml and find what stops dvc repro in the data roots",
        CHECK_EPILOG,
    )  # fmt: skip
    check.add_argument(
        "--params", type=Path, default=Path("params.yaml"),
        help="the params file (default params.yaml; roots are relative to its folder)",
    )  # fmt: skip
    check.set_defaults(func=_check)

    review = _add_command(commands, "review", "export or import human review sheets", REVIEW_EPILOG)
    actions = review.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = _add_command(
        actions, "export", "write reviews/<dataset>.csv (keeps decisions already made)",
        EXPORT_EPILOG,
    )  # fmt: skip
    export.add_argument("--dataset", required=True, help="a key of datasets: in params.yaml")
    _add_folders(export)
    export.set_defaults(func=_review_export)
    imp = _add_command(
        actions, "import", "merge a sheet reviewed elsewhere into reviews/<dataset>.csv",
        IMPORT_EPILOG,
    )  # fmt: skip
    imp.add_argument("file", type=Path, metavar="FILE", help="CSV with the decisions")
    imp.add_argument("--dataset", required=True, help="a key of datasets: in params.yaml")
    _add_folders(imp)
    imp.set_defaults(func=_review_import)

    report = _add_command(
        commands, "report", "print (and open) the path of a dataset's HTML report", REPORT_EPILOG
    )
    report.add_argument("--dataset", required=True, help="a key of datasets: in params.yaml")
    report.add_argument("--runs", type=Path, default=Path("runs"), help=RUNS_HELP)
    report.add_argument(
        "--params", type=Path, default=Path("params.yaml"),
        help="the params file whose datasets are known (default params.yaml)",
    )  # fmt: skip
    report.add_argument("--open", action="store_true", help="open it in a web browser")
    report.set_defaults(func=_report)
    return parser


def _add_folders(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, default=Path("runs"), help=RUNS_HELP)
    parser.add_argument(
        "--reviews", type=Path, default=Path("reviews"),
        help="where review sheets live, REVIEWS/<dataset>.csv (default reviews)",
    )  # fmt: skip


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except DatapipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
