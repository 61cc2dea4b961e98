"""The task protocol: everything that differs between tasks, in one typed place.

A task module subclasses :class:`TaskModule`, sets its class attributes and implements its
abstract methods; :func:`datapipe.tasks.register` refuses a module that misses either, at
import time (the registry is built when ``datapipe.tasks`` is imported), never mid-run.

The attributes are what the generic code branches on: what a sample's target *is*
(``image_labels``: one class per image; ``dense``: a per-pixel class map), what a layout
produces, which models and metrics exist. The methods are the behaviour that differs: building
the model, turning held-out predictions into label quality and reports, evaluation metrics,
and the recipe rules. Heavy implementations (torch, cleanlab) are imported
inside the methods, so loading params or running ingest and clean never imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from datapipe.runs import RunStats
    from datapipe.score import ScoreJob, ScoreResult

#: The tasks datapipe knows; the one definition of the literal.
Task = Literal["classification", "segmentation", "detection", "instance_segmentation"]


class TaskModule(ABC):
    """One task's behaviour. Subclasses set every ``ClassVar`` below and implement every
    abstract method; ``datapipe/tasks/classification.py`` is the smallest complete example."""

    #: the ``task:`` value in params.yaml
    name: ClassVar[str]
    #: manifest layouts (``datapipe.manifest``) whose rows are this task's samples
    layouts: ClassVar[tuple[str, ...]]
    #: model names :meth:`build_model` accepts, ``"auto"`` first (checked when params load)
    models: ClassVar[tuple[str, ...]]
    #: each sample has one class label (``label``/``label_index`` columns; relabel possible)
    image_labels: ClassVar[bool]
    #: each sample has a per-pixel class map (a mask decoded through the value LUT)
    dense: ClassVar[bool]
    #: evaluate's headline number (a key of :meth:`metrics`)
    headline: ClassVar[str]
    #: what ``curate.label_issues: auto`` does with a flagged sample
    label_issue_action: ClassVar[str]
    #: each sample has annotated objects (boxes, optionally instance masks) in
    #: ``objects.parquet``: box checks in clean, per-object issues, curation and metrics
    objects: ClassVar[bool] = False
    #: objects carry an (H, W) mask each (``instance_mask``): mask targets, mask issues, mask AP
    instance_masks: ClassVar[bool] = False
    #: the fewest classes a dataset can be scored with (2 for image and pixel labels; 1 for
    #: objects, where background is the implicit other class)
    min_classes: ClassVar[int] = 2
    #: out-of-fold models train channels_last and under bfloat16 autocast on the CPU (where the
    #: CPU has bf16 units): set where ``bench/score_levers.py`` measured it faster with the
    #: same label-issue F1
    cpu_fast_paths: ClassVar[bool] = False

    _REQUIRED: ClassVar[tuple[str, ...]] = (
        "name", "layouts", "models", "image_labels", "dense", "headline", "label_issue_action",
    )  # fmt: skip

    # --- params ------------------------------------------------------------------------

    @abstractmethod
    def recipe_problems(self, recipe: Any) -> list[tuple[str, str]]:
        """``(key, what is wrong)`` for the parts of a score or train recipe this task cannot
        use (a Dice term for classification, mixup for masks)."""

    @abstractmethod
    def suggested_recipe(self, *, median_side: float, samples: int) -> dict[str, int]:
        """``datapipe init``'s recipe sizes for a folder: image_size, batch_size, epochs."""

    # --- data ----------------------------------------------------------------------------

    @abstractmethod
    def detect_layout(self, root: Path) -> str:
        """The one of :attr:`layouts` that ``root`` holds; :class:`ConfigError` when none or
        two fit."""

    @abstractmethod
    def ingest_targets(self, table: pd.DataFrame, probes: Sequence[Any], dataset: Any) -> Any:
        """What ingest learns of the targets from the probed samples
        (:class:`datapipe.ingest.Targets`, with this task's part of stats.json); adds this
        task's manifest columns to ``table``."""

    @abstractmethod
    def sample_labels(self, manifest: pd.DataFrame) -> np.ndarray:
        """Per manifest row the integer target the out-of-fold source carries (N,) int64."""

    @abstractmethod
    def class_counts(
        self, labels: np.ndarray, stats: RunStats, classes: Sequence[str]
    ) -> np.ndarray:
        """Samples (or pixels) per class, ``(K,)`` float64, for class-balanced losses."""

    # --- models and scoring ----------------------------------------------------------------

    @abstractmethod
    def build_model(
        self, recipe: Any, *, in_channels: int, num_classes: int, key: str
    ) -> nn.Module:
        """The model a score or train recipe names (random init or ``recipe.weights``)."""

    @abstractmethod
    def score(self, job: ScoreJob) -> ScoreResult | None:
        """Train out of fold, then turn the held-out predictions into per-sample label
        quality, issues, hard/easy rows and metrics; None on ranks other than 0."""

    # --- evaluation ------------------------------------------------------------------------

    @abstractmethod
    def metrics(self, confusion: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
        """Evaluation metrics from a ``(K, K)`` confusion matrix (rows = truth)."""

    # --- registration ----------------------------------------------------------------------

    @classmethod
    def missing(cls) -> list[str]:
        """What a subclass still lacks: unset class attributes and abstract methods."""
        unset = [a for a in cls._REQUIRED if not hasattr(cls, a)]
        return unset + sorted(getattr(cls, "__abstractmethods__", ()))

    def __repr__(self) -> str:
        return f"<task {self.name}>"
