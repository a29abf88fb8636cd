"""`unseg merge`: shard part files -> one pseudo-label file."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .console import Failures, console
from .options import OutFileOpt

EXAMPLES = """
[bold]Examples[/bold]

  unseg merge part-*.json --out pseudo.json

  unseg merge part-*.jsonl --out - | wc -l
"""


def merge(
    files: Annotated[list[str], typer.Argument(help="COCO files (or JSON-lines files) from `unseg boxes --shard`.")],
    out: OutFileOpt,
) -> None:
    """Merge pseudo-label part files (de-duplicated, ids renumbered). '-' reads one part from stdin.
    Every part is checked before anything is written: a bad part is named and nothing is written."""
    from ..errors import UsageError
    from ..io.files import check_output_file
    from ..labels.merge import merge_files

    check_output_file(out, "--out")
    if files.count("-") > 1:
        raise UsageError("'-' (stdin) can be given once")
    for f in files:
        if f != "-" and not os.path.isfile(f):
            raise UsageError(f"{f}: " + ("a folder, not a part file" if os.path.isdir(f) else "file not found"))
    n = merge_files(files, out, on_error=Failures())
    wrote = f" · wrote {out}" if out != "-" else ""
    console.print(f"merged {n.files} files: images {n.images} · boxes {n.boxes}{wrote}")
