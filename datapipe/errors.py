"""The errors datapipe raises on purpose: each names the file or key at fault."""

from __future__ import annotations

from pathlib import Path


class DatapipeError(Exception):
    """Base class: an error about the user's data or settings, not a bug in datapipe."""


class ImageReadError(DatapipeError):
    """A file could not be decoded into pixels.

    Carries the path and a short human reason ("truncated PNG (no IEND chunk)"), so a
    report can show both and one bad file never needs a traceback to be understood.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[str, str]]:
        # Survive pickling across worker processes with both fields intact.
        return (type(self), (self.path, self.reason))


class ConfigError(DatapipeError):
    """params.yaml (or a file it names) is wrong; the message names the key."""
