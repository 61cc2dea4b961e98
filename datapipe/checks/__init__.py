"""Data checks: integrity, intensity, duplicates, leakage — one concept per module.

``CHECKS`` is the whole registry, by name; ``tests/checks`` holds a known-answer case for each.
"""

from datapipe.checks import duplicates, integrity, intensity, leakage
from datapipe.checks.base import Check, DatasetFacts, Severity

CHECKS: dict[str, Check] = {
    c.name: c for c in [*integrity.CHECKS, *intensity.CHECKS, *duplicates.CHECKS, *leakage.CHECKS]
}

__all__ = ["CHECKS", "Check", "DatasetFacts", "Severity"]
