"""`unseg merge`: shard part files -> one pseudo-label file."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .console import console
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
    """Merge pseudo-label part files (de-duplicated, ids renumbered)."""
    from ..errors import UsageError
    from ..labels.merge import merge_files

    for f in files:
        if not os.path.isfile(f):
            raise UsageError(f"file not found: {f}")
    n = merge_files(files, out)
    wrote = f" · wrote {out}" if out != "-" else ""
    console.print(f"merged {n.files} files: images {n.images} · boxes {n.boxes}{wrote}")
