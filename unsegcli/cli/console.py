"""One rich Console on stderr for everything human; stdout is left for data."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, highlight=False, soft_wrap=True)  # never break paths in messages


Advance = Callable[..., None]


@contextlib.contextmanager
def progress_bar(total: int | None, description: str, quiet: bool = False) -> Iterator[Advance]:
    """Yields ``advance(n=1, info=None, total=None)``; ``info`` is shown after the bar (e.g. losses),
    ``total`` sets the total when it was not known at the start. Draws nothing when quiet."""
    if quiet:
        yield lambda n=1, info=None, total=None: None
        return
    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    with prog:
        task = prog.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str | None = None, total: int | None = None) -> None:
            prog.update(task, advance=n, total=total)  # total None: unchanged
            if info is not None:
                prog.update(task, info=info)

        yield advance


def report_failure(message: str) -> None:
    console.print(f"[red]error[/red] {message}", markup=True, soft_wrap=True)


def notice(message: str) -> None:
    console.print(f"[yellow]note[/yellow] {message}", soft_wrap=True)


class Failures:
    """Per-input failures: each reported on stderr when it happens, counted for the exit code."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        report_failure(message)

    def __len__(self) -> int:
        return len(self.messages)


def show_result(title: str, columns: dict[str, str], json_out: str | None, payload: dict) -> None:
    """One-row rich table on stderr; the payload as JSON to FILE or '-' (stdout) when asked."""
    from rich.table import Table

    table = Table(title=title)
    for name in columns:
        table.add_column(name, justify="right")
    table.add_row(*columns.values())
    console.print(table)
    if json_out:
        from ..io.files import dumps_json, write_output

        write_output(json_out, dumps_json(payload))
