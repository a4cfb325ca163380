"""Progress bars (rich, on stderr) for every step that may take more than a few seconds."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


@contextmanager
def progress_bar(enabled: bool = True):
    """A rich Progress; a disabled one still accepts add_task/advance so callers need no branches."""
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), console=console, disable=not enabled, transient=False,
    )
    with progress:
        yield progress


def interactive() -> bool:
    return sys.stderr.isatty()
