"""`unseg merge`: shard part files -> one pseudo-label file."""
from __future__ import annotations

import json
from typing import List

import typer

from .app import app
from .console import console


@app.command(epilog="[bold]Examples[/bold]\n\n  unseg merge part-*.json --out pseudo.json\n\n"
             "  unseg merge part-*.jsonl --out - | wc -l")
def merge(
    files: List[str] = typer.Argument(..., help="COCO files (or JSON-lines files) from `unseg boxes --shard`."),
    out: str = typer.Option(..., "--out", "-o", help="Output file, or '-' for stdout."),
) -> None:
    """Merge pseudo-label part files (de-duplicated, ids renumbered)."""
    from ..io.files import dumps_json, dumps_jsonl, write_output
    from ..merge import merge_files

    kind, merged = merge_files(files)
    write_output(out, dumps_json(merged) if kind == "coco" else dumps_jsonl(merged))
    n_img = len(merged["images"]) if kind == "coco" else len(merged)
    n_ann = len(merged["annotations"]) if kind == "coco" else sum(len(r["boxes"]) for r in merged)
    console.print(f"merged {len(files)} files: images {n_img} · boxes {n_ann}" + (f" · wrote {out}" if out != "-" else ""))
