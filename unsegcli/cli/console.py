"""One rich Console on stderr for everything human; stdout is left for data."""
from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def progress_bar(total: int, description: str, quiet: bool = False) -> Iterator:
    """Yields ``advance(n)``; draws nothing when quiet."""
    if quiet:
        yield lambda n=1: None
        return
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
                    transient=False)
    with prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)


def report_failure(message: str) -> None:
    console.print(f"[red]error[/red] {message}", markup=True, soft_wrap=True)


def notice(message: str) -> None:
    console.print(f"[yellow]note[/yellow] {message}", soft_wrap=True)
