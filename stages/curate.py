"""Stage curate@<dataset>: scores + policy + reviews/<dataset>.csv -> curated.parquet,
reports/curation_summary.csv, metrics/curate.json. A review overrides the policy; export a
sheet to fill with ``datapipe review export --dataset <dataset>``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from datapipe.config import DatasetParams, Params
from datapipe.curate import CURATED_COLUMNS, curate, validate_review
from datapipe.errors import DatapipeError
from datapipe.io import read_table, write_table
from datapipe.review import read_sheet
from stages.common import REVIEWS, run_stage, write_metrics

log = logging.getLogger("datapipe")
#: what metrics/curate.json holds (dvc metrics show); reports/curate_metrics.json has it all
HEADLINE = ("relabel", "downweight", "drop", "reviewed")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    scores = read_table(
        out / "scores.parquet",
        required=("sample_id", "split", "excluded", "is_label_issue", "label_quality"),
    )
    clean = read_table(out / "clean_manifest.parquet", required=("sample_id", "exclude_reason"))
    scores = scores.merge(clean[["sample_id", "exclude_reason"]], on="sample_id", how="left")
    try:
        classes = [str(c) for c in json.loads((out / "stats.json").read_text())["classes"]]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise DatapipeError(f"{out / 'stats.json'}: cannot read classes ({exc})") from None
    review_path = REVIEWS / f"{name}.csv"
    review = None
    if review_path.exists():
        review = validate_review(
            read_sheet(review_path),
            sample_ids=scores["sample_id"].tolist(),
            classes=classes,
            task=dataset.task,
            name=str(review_path),
        )
    result = curate(
        scores, classes=classes, task=dataset.task, policy=dataset.curate, review=review,
        review_name=str(review_path) if review is not None else "",
    )  # fmt: skip
    m = result.metrics
    log.info(
        "%s: keep %d, relabel %d, downweight %d, drop %d, exclude %d (%d reviewed)",
        name, m["keep"], m["relabel"], m["downweight"], m["drop"], m["exclude"], m["reviewed"],
    )  # fmt: skip
    return [
        write_table(result.curated, out / "curated.parquet", required=CURATED_COLUMNS),
        write_table(result.summary, out / "reports" / "curation_summary.csv"),
        *write_metrics(out, "curate", m, headline=HEADLINE),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("curate", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
