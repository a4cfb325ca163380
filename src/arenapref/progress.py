"""Progress bars (rich, on stderr) for every step that may take more than a few seconds: one builder for all."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Items per second of a task, e.g. "12.3 pairs/s"."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task):
        speed = task.finished_speed or task.speed
        return Text(f"-- {self.unit}/s" if speed is None else f"{speed:.1f} {self.unit}/s")


@contextmanager
def progress_bar(enabled: bool | None = True, rate: str | None = None):
    """A rich Progress on stderr; `rate` adds an items-per-second column ("pairs"); None: only on a terminal.
    A disabled one still accepts add_task/advance, so callers need no branches."""
    enabled = interactive() if enabled is None else enabled
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [RateColumn(rate)] if rate else []
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not enabled, transient=False) as progress:
        yield progress


def interactive() -> bool:
    return sys.stderr.isatty()
