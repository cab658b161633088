"""One progress style for long work (rich): a bar on a terminal, nothing in logs and pipes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def interactive() -> bool:
    """True when stderr is a terminal, where a live bar makes sense (log files get nothing)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Bar:
    """A rich progress bar on stderr, or nothing when disabled; ``advance`` and ``note`` either way."""

    def __init__(self, description: str, total: int | None = None, enabled: bool | None = None):
        self._progress = None
        if interactive() if enabled is None else enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       *([TimeRemainingColumn()] if total is not None else []), TextColumn("{task.fields[note]}")]
            self._progress = Progress(*columns, console=Console(stderr=True), transient=True)
            self._task = self._progress.add_task(description, total=total, note="")

    def __enter__(self) -> Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    @property
    def shown(self) -> bool:
        """Whether the bar is drawn (so that what it would show is worth computing)."""
        return self._progress is not None

    def note(self, text: str) -> None:
        """Text shown after the bar (e.g. the running loss)."""
        if self._progress is not None:
            self._progress.update(self._task, note=text)


@contextmanager
def progress(description: str, total: int | None = None, enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n=1)`` for a :class:`Bar` shown while the block runs (default: on a terminal)."""
    with Bar(description, total, enabled) as bar:
        yield bar.advance


class Tracked(Iterable[T]):
    """Iterate ``items`` with a :class:`Bar` (``total``: their number when they have no ``len``);
    ``set_postfix(name=value, ...)`` shows running figures."""

    def __init__(self, items: Iterable[T], description: str, enabled: bool | None = None, total: int | None = None):
        self.items = items
        self.description = description
        self.enabled = enabled
        self.total = len(items) if total is None and hasattr(items, "__len__") else total  # type: ignore[arg-type]
        self._bar: Bar | None = None

    def __iter__(self) -> Iterator[T]:
        with Bar(self.description, self.total, self.enabled) as self._bar:
            for item in self.items:
                yield item
                self._bar.advance()

    @property
    def shown(self) -> bool:
        """Whether a bar is being drawn."""
        return self._bar is not None and self._bar.shown

    def set_postfix(self, **values: Any) -> None:
        """Show ``name=value`` pairs after the bar."""
        if self._bar is not None:
            self._bar.note(" ".join(f"{k}={v}" for k, v in values.items()))
