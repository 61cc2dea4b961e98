"""Stage ingest@<dataset>: list and decode a data root -> manifest.parquet, stats.json."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from datapipe.config import DatasetParams, Params
from datapipe.ingest import ingest
from datapipe.io import write_table
from stages.common import run_stage, write_json

log = logging.getLogger("datapipe")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    result = ingest(dataset, name=name, workers=params.resolved_workers())
    stats = result.stats
    log.info(
        "%s: %d samples, %d unreadable, splits %s, bit depth %s",
        name,
        stats["samples"],
        stats["read_errors"],
        stats["splits"],
        stats["bit_depth"],
    )
    return [
        write_table(result.manifest, out / "manifest.parquet"),
        write_json(out / "stats.json", stats),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("ingest", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
