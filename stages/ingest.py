"""Stage ingest@<dataset>: list and decode a data root -> manifest.parquet, stats.json,
pixel_features.parquet (what the clean stage measures on the pixels, taken in this decode)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from datapipe.config import DatasetParams, Params
from datapipe.ingest import ingest
from datapipe.io import write_table
from datapipe.runs import RunFiles, RunStats
from stages.common import run_stage, write_json

log = logging.getLogger("datapipe")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    files = RunFiles.under(out)
    result = ingest(dataset, name=name, workers=params.resolved_workers(),
                    pixels=files.pixel_features)  # fmt: skip
    stats = result.stats
    RunStats.coerce(stats, source="ingest's stats")  # what later stages read is complete
    log.info(
        "%s: %d samples, %d unreadable, splits %s, bit depth %s",
        name,
        stats["samples"],
        stats["read_errors"],
        stats["splits"],
        stats["bit_depth"],
    )
    return [
        write_table(result.manifest, files.manifest),
        write_table(result.objects, files.objects),
        files.pixel_features,
        write_json(files.stats, stats),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("ingest", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
