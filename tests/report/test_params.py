"""report: in params.yaml: defaults, and typos or bad values named by key."""

from __future__ import annotations

import pytest

from datapipe.config import ReportParams, parse_params
from datapipe.errors import ConfigError

DATASETS = {"d": {"root": "data", "task": "classification"}}


def test_report_section_is_optional_with_defaults() -> None:
    assert parse_params({"datasets": DATASETS}).report == ReportParams()
    assert ReportParams().max_cards == 200 and ReportParams().thumb_size == 96


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"max_card": 10}, "report.max_card: unknown key"),
        ({"channels": [0, 1, 2, 3]}, "report.channels"),
        ({"channels": [-1]}, "report.channels"),
        ({"percentiles": [99, 1]}, "report.percentiles"),
        ({"thumb_size": 8}, "report.thumb_size"),
        ({"stretch": "sometimes"}, "report.stretch"),
    ],
    ids=["typo", "four-channels", "negative-channel", "reversed-percentiles", "tiny-thumbs",
         "unknown-stretch"],
)  # fmt: skip
def test_bad_report_params_are_refused_by_key(report: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_params({"datasets": DATASETS, "report": report})
