"""One rich Console on stderr for everything human; stdout is left for data.

User text (file names, messages that quote them) is never markup: the console has markup off, and the
few styled words are passed as ``rich.text.Text``. A name like ``bad [edited].jpg`` prints as it is.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from ..runtime import Shard

console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)  # never break paths in messages


Advance = Callable[..., None]

# seconds between plain progress lines when stderr is not a terminal (Slurm logs, `2>log`); 0 = every update
PROGRESS_SECONDS_ENV = "UNSEG_PROGRESS_SECONDS"
DEFAULT_PROGRESS_SECONDS = 30.0


def _progress_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(PROGRESS_SECONDS_ENV, DEFAULT_PROGRESS_SECONDS)))
    except ValueError:
        return DEFAULT_PROGRESS_SECONDS


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _PlainProgress:
    """Progress as plain lines (no cursor moves, no colour) every ``every`` seconds and at the end:
    'predict 40/120 (33%) · 12.5/s · elapsed 0:00:03 · eta 0:00:06'."""

    def __init__(self, description: str, total: int | None, every: float):
        self.description, self.total, self.every = description, total, every
        self.done = 0
        self.info = ""
        self.start = time.monotonic()
        self.last = self.start
        self.printed_at: int | None = None

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.description} {self.done}" + (f"/{self.total}" if self.total is not None else "")]
        if self.total:
            parts[0] += f" ({100 * self.done // self.total}%)"
        parts.append(f"{rate:.3g}/s")
        parts.append(f"elapsed {_clock(elapsed)}")
        if self.total is not None and rate > 0:
            parts.append(f"eta {_clock(max(0, self.total - self.done) / rate)}")
        if self.info:
            parts.append(self.info)
        return " · ".join(parts)

    def emit(self) -> None:
        self.printed_at = self.done
        self.last = time.monotonic()
        sys.stderr.write(self.line() + "\n")
        sys.stderr.flush()

    def advance(self, n: int = 1, info: str | None = None, total: int | None = None) -> None:
        self.done += n
        if total is not None:
            self.total = total
        if info is not None:
            self.info = info
        if n and time.monotonic() - self.last >= self.every:
            self.emit()

    def finish(self) -> None:
        if self.printed_at != self.done and (self.done or self.total):
            self.emit()


@contextlib.contextmanager
def progress_bar(total: int | None, description: str, quiet: bool = False) -> Iterator[Advance]:
    """Yields ``advance(n=1, info=None, total=None)``; ``info`` is shown after the bar (e.g. losses),
    ``total`` sets the total when it was not known at the start. Draws nothing when quiet. When stderr is
    not a terminal, prints a plain line every $UNSEG_PROGRESS_SECONDS seconds (default 30) instead."""
    if quiet:
        yield lambda n=1, info=None, total=None: None
        return
    if not console.is_terminal:
        plain = _PlainProgress(description, total, _progress_seconds())
        try:
            yield plain.advance
        finally:
            plain.finish()
        return
    prog = Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}", markup=False),
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


class ShardProgress(contextlib.ExitStack):
    """The progress bar of a run that learns its shard once it starts (``on_start``): under torchrun, one bar and
    one summary, rank 0's. ``with ShardProgress("refine", quiet) as bar: run(on_start=bar.start,
    on_progress=bar.advance)``; then ``bar.quiet`` says whether this process prints the summary."""

    def __init__(self, description: str, quiet: bool):
        super().__init__()
        self.description, self.quiet = description, quiet
        self._advance: Advance = lambda n=1, info=None, total=None: None

    def start(self, shard: Shard) -> None:
        self.quiet = self.quiet or not shard.shows_progress
        self._advance = self.enter_context(progress_bar(None, self.description, self.quiet))

    def advance(self, n: int, total: int) -> None:
        self._advance(n, total=total)


def report_failure(message: str) -> None:
    console.print(Text.assemble(("error", "red"), " ", message), soft_wrap=True)


def notice(message: str) -> None:
    console.print(Text.assemble(("note", "yellow"), " ", message), soft_wrap=True)


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


def shard_summary(summary: Any, noun: str) -> str:
    """The summary line of a run over shards (``pipelines.shards.ShardSummary``), its ignored members noticed."""
    if summary.ignored:
        n = sum(summary.ignored.values())
        notice(f"ignored {n} members with other extensions ({' '.join(sorted(summary.ignored))})")
    return (
        f"shards {summary.shards} · written {summary.written_shards} · skipped {summary.skipped_shards} (existing) · "
        f"unreadable {summary.failed_shards} · {noun} {summary.images} · written {summary.written} · "
        f"failed {summary.failed} · {summary.rate:.2f} {noun}/s"
    )
