"""The ``datapipe`` command: thin, like stages/ (it knows paths; the library does the work).

datapipe review export --dataset shapes_cls     # reviews/shapes_cls.csv, worst first
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from datapipe.curate import review_sheet
from datapipe.errors import DatapipeError
from datapipe.io import read_table, write_table

EPILOG = """examples:
  datapipe review export --dataset shapes_cls
      write reviews/shapes_cls.csv: the flagged samples, worst first, with a `decision`
      column to fill (keep | drop | relabel); decisions already made are kept
"""


def _review_export(args: argparse.Namespace) -> int:
    run = args.runs / args.dataset
    issues = read_table(run / "reports" / "label_issues.csv", required=("sample_id",))
    curated_path = run / "curated.parquet"
    curated = read_table(curated_path) if curated_path.exists() else None
    path = args.reviews / f"{args.dataset}.csv"
    existing = read_table(path, required=("sample_id",)) if path.exists() else None
    sheet = review_sheet(issues, curated, existing)
    write_table(sheet, path)
    decided = int((sheet["decision"].astype(str).str.strip() != "").sum())
    print(f"{path}: {len(sheet)} samples to review ({decided} already decided)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datapipe",
        description="Inspect images and review flagged samples of a datapipe project.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    review = commands.add_parser(
        "review",
        help="export a sheet of flagged samples to review",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = review.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export", help="write reviews/<dataset>.csv (keeps decisions already made)"
    )
    export.add_argument("--dataset", required=True, help="a key of datasets: in params.yaml")
    export.add_argument("--runs", type=Path, default=Path("runs"))
    export.add_argument("--reviews", type=Path, default=Path("reviews"))
    export.set_defaults(func=_review_export)
    return parser


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
