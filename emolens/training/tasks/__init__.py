"""The tasks ``emolens train --task`` knows, by name. A new task is one module here (a
:class:`Task` subclass) and one entry in :data:`TASKS`; the trainer, its config and checkpoints
take it from there."""

from __future__ import annotations

from emolens.errors import ConfigError
from emolens.training.tasks.age import AgeTask
from emolens.training.tasks.base import Task, ValSet
from emolens.training.tasks.expression import ExpressionTask

TASKS: dict[str, Task] = {task.name: task for task in (ExpressionTask(), AgeTask())}


def get_task(name: str) -> Task:
    """The task called ``name``; ConfigError naming the known ones otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {name!r}") from None


__all__ = ["TASKS", "Task", "ValSet", "get_task"]
