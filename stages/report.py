"""Stage report@<dataset>: reports/report.html, one self-contained page (images embedded,
opens offline) with the dataset overview, integrity issues, duplicate groups, label issues,
hard examples, curation, training and evaluation, and the change since the previous run.

Every input after ingest is optional: a missing one leaves a 'not available' note. The
comparison reads and appends runs/<dataset>/report_history.jsonl, which is not a DVC output
(DVC deletes outputs before a stage runs), so it survives reruns.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from datapipe.config import DatasetParams, Params
from datapipe.report.history import append_history, is_new, key_numbers, previous_run, read_history
from datapipe.report.html import build_report, write_report
from datapipe.report.inputs import load_inputs
from datapipe.report.thumbnails import thumbnailer
from datapipe.runs import RunFiles
from stages.common import run_stage

log = logging.getLogger("datapipe")


def body(params: Params, dataset: DatasetParams, out: Path, name: str) -> list[Path]:
    files = RunFiles.under(out)
    inputs = load_inputs(files, name=name)
    inputs.check_channels(params.report.channels)  # knowable only now, from stats.json
    thumbs = thumbnailer(
        Path(dataset.root), params.report, issue_maps=files.issue_maps,
        class_values=inputs.stats.class_values if inputs.kind.dense else [],
        ignore_index=dataset.ignore_index, mask_colors=dataset.mask_colors,
        objects=inputs.objects, classes=inputs.classes,
    )  # fmt: skip
    history = read_history(files.history)
    numbers = key_numbers(inputs)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    html = build_report(
        inputs, options=params.report, thumbs=thumbs, previous=previous_run(history, numbers),
        numbers=numbers, generated=f"generated {now}",
    )  # fmt: skip
    path = write_report(files.report, html)
    if is_new(history, numbers):
        append_history(files.history, time=now, numbers=numbers)
    log.info("%s: report %.2f MB, %d thumbnails", name, path.stat().st_size / 1e6, len(thumbs))
    return [path]


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("report", body, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
