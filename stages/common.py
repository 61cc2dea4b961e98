"""What every stage shares: argument parsing, logging, clean one-line errors, a run summary."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datapipe.config import DatasetParams, Params, load_params
from datapipe.errors import DatapipeError

log = logging.getLogger("datapipe")


def stage_args(description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", required=True, help="a key of datasets: in params.yaml")
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--runs", default="runs", type=Path, help="outputs go to RUNS/<dataset>/")
    return parser.parse_args(argv)


def run_stage(
    name: str,
    body: Callable[[Params, DatasetParams, Path, str], list[Path]],
    argv: Sequence[str] | None = None,
    description: str = "",
) -> int:
    """Run ``body(params, dataset, out_dir, dataset_name)``; DatapipeError -> one line, exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = stage_args(description or name, argv)
    start = time.monotonic()
    try:
        params = load_params(args.params)
        dataset = params.dataset(args.dataset)
        out_dir = args.runs / args.dataset
        out_dir.mkdir(parents=True, exist_ok=True)
        written = body(params, dataset, out_dir, args.dataset)
    except DatapipeError as exc:
        print(f"error: {name} {args.dataset}: {exc}", file=sys.stderr)
        return 2
    log.info(
        "%s %s: done in %.1fs; wrote %s",
        name,
        args.dataset,
        time.monotonic() - start,
        ", ".join(str(p) for p in written),
    )
    return 0


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    return path
