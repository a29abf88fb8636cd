"""`unseg merge`: shard part files (COCO, JSON lines, or the Ray Data step's parquet parts) -> one pseudo-label
file or folder."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ..labels.formats import LabelFormat, Segmentation
from .console import Failures, console
from .options import LabelOutOpt

EXAMPLES = """
[bold]Examples[/bold]

  unseg merge part-*.json --out pseudo.json

  unseg merge part-*.jsonl --out - | wc -l

  unseg merge labels/*.parquet --out pseudo.json                            # unsegcli.ray's parts (docs/ray.md)

  unseg merge labels/*.parquet --format yolo --images imgs/ --out yolo_ds
"""


def merge(
    files: Annotated[
        list[str],
        typer.Argument(
            help="COCO files (or JSON-lines files) from `unseg boxes --shard`, or parquet parts of unsegcli.ray.Boxes."
        ),
    ],
    out: LabelOutOpt,
    format: Annotated[
        LabelFormat | None,
        typer.Option(
            "--format",
            "-f",
            show_default="the parts' own; coco for parquet parts",
            help="Pseudo-label format of the merge. COCO and JSON-lines parts merge to their own format; parquet "
            "parts to any format of `unseg boxes`.",
        ),
    ] = None,
    images: Annotated[
        str | None,
        typer.Option(
            "--images",
            metavar="DIR",
            help="Parquet parts: the image root their keys are relative to (the yolo formats link the images "
            "from it, voc and lost-cad record it).",
        ),
    ] = None,
    segmentation: Annotated[
        Segmentation,
        typer.Option("--segmentation", help="Parquet parts to --format coco: masks as RLE, or as polygons."),
    ] = "rle",
) -> None:
    """Merge pseudo-label part files (de-duplicated, ids renumbered). '-' reads one part from stdin.
    Every part is checked before anything is written: a bad part is named and nothing is written."""
    from ..errors import UsageError
    from ..io.files import check_output_dir, check_output_file
    from ..io.outputs import check_outside_inputs
    from ..labels.formats import writer_class
    from ..labels.merge import merge_files

    if images is not None and not os.path.isdir(images):
        raise UsageError(f"--images must be a folder: {images}")
    if format is not None and writer_class(format).writes_folder:
        if out == "-":
            raise UsageError(f"--format {format} writes a folder: --out cannot be '-'")
        check_output_dir(out, "--out")
        check_outside_inputs([*files, images], out)
    else:
        check_output_file(out, "--out")
    if files.count("-") > 1:
        raise UsageError("'-' (stdin) can be given once")
    for f in files:
        if f != "-" and not os.path.isfile(f):
            raise UsageError(f"{f}: " + ("a folder, not a part file" if os.path.isdir(f) else "file not found"))
    failed = Failures()
    n = merge_files(files, out, on_error=failed, format=format, images=images or "", segmentation=segmentation)
    wrote = f" · wrote {out}" if out != "-" else ""
    console.print(f"merged {n.files} files: images {n.images} · boxes {n.boxes} · failed {n.failed}{wrote}")
    if failed:
        raise typer.Exit(1)
