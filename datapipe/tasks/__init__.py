"""Tasks as modules: one :class:`~datapipe.tasks.base.TaskModule` per task, chosen by name.

Outside this package no code compares the task to a string: it asks the module
(``tasks.get(dataset.task).dense``, ``.build_model(...)``, ``.metrics(...)``). A new task is a
module here plus its entry in :data:`TASKS`; see "Adding a task" in ``docs/adding_a_task.md``.
"""

from __future__ import annotations

from typing import get_args

from datapipe.tasks.base import Task, TaskModule
from datapipe.tasks.classification import Classification
from datapipe.tasks.detection import Detection, InstanceSegmentation
from datapipe.tasks.segmentation import Segmentation

__all__ = [
    "TASKS",
    "Task",
    "TaskModule",
    "get",
    "of_layout",
    "register",
]


def register(module: type[TaskModule]) -> TaskModule:
    """An instance of ``module``; :class:`TypeError` naming what it lacks when it does not
    implement the whole protocol (so an incomplete task fails at import, not mid-run)."""
    lacking = module.missing()
    if lacking:
        raise TypeError(f"task module {module.__name__} does not implement {lacking}")
    return module()


MODULES = (Classification, Segmentation, Detection, InstanceSegmentation)
TASKS: dict[str, TaskModule] = {t.name: t for t in map(register, MODULES)}
if set(TASKS) != set(get_args(Task)):  # the literal and the registry are one list
    raise TypeError(f"Task {get_args(Task)} and the registered modules {list(TASKS)} differ")


def get(task: str | TaskModule) -> TaskModule:
    """The module of a task name (a module passes through); :class:`KeyError` names the known."""
    if isinstance(task, TaskModule):
        return task
    try:
        return TASKS[task]
    except KeyError:
        raise KeyError(f"unknown task {task!r}; known: {list(TASKS)}") from None


def of_layout(layout: str) -> list[TaskModule]:
    """The tasks whose samples a manifest layout lists (object layouts serve detection and
    instance segmentation alike)."""
    found = [module for module in TASKS.values() if layout in module.layouts]
    if not found:
        raise KeyError(f"unknown layout {layout!r}")
    return found
