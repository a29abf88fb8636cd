"""`unseg merge`: shard part files (COCO, JSON lines, label shards of `unseg boxes`, or the Ray Data step's parquet
parts) -> one pseudo-label file or folder."""

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

  unseg merge 'labels-{000000..000099}.tar' --out pseudo.json               # label shards of `unseg boxes`

  unseg merge 's3://bucket/labels/labels-{000000..000999}.tar' --format jsonl --out pseudo.jsonl
"""


def merge(
    files: Annotated[
        list[str],
        typer.Argument(
            help="COCO files (or JSON-lines files) from `unseg boxes --shard`, label shards (.tar; paths, fsspec URLs, "
            "quoted brace lists) from `unseg boxes --out 'labels-{shard}.tar'`, or parquet parts of unsegcli.ray.Boxes."
        ),
    ],
    out: LabelOutOpt,
    format: Annotated[
        LabelFormat | None,
        typer.Option(
            "--format",
            "-f",
            show_default="the parts' own; coco for label shards and parquet parts",
            help="Pseudo-label format of the merge. COCO and JSON-lines parts merge to their own format; label "
            "shards and parquet parts to any format of `unseg boxes`.",
        ),
    ] = None,
    images: Annotated[
        str | None,
        typer.Option(
            "--images",
            metavar="DIR",
            help="Label shards and parquet parts: the image root their keys are relative to (the yolo formats "
            "link the images from it, voc and lost-cad record it).",
        ),
    ] = None,
    segmentation: Annotated[
        Segmentation,
        typer.Option(
            "--segmentation", help="Label shards and parquet parts to --format coco: masks as RLE, or as polygons."
        ),
    ] = "rle",
) -> None:
    """Merge pseudo-label part files (de-duplicated, ids renumbered). '-' reads one part from stdin.
    COCO, JSON-lines and parquet parts are all checked before anything is written: a bad part is named and nothing
    is written. Label shards are read as `unseg boxes` reads mask shards: a damaged shard or member is named, the
    rest merged (exit 1)."""
    from ..errors import UsageError
    from ..io.files import check_output_dir, check_output_file
    from ..io.outputs import check_outside_inputs
    from ..io.remote import expand_inputs, is_url
    from ..io.shards import is_shard
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
    files = expand_inputs(files)
    for f in files:
        if f != "-" and not (is_url(f) and is_shard(f)) and not os.path.isfile(f):
            raise UsageError(f"{f}: " + ("a folder, not a part file" if os.path.isdir(f) else "file not found"))
    failed = Failures()
    n = merge_files(files, out, on_error=failed, format=format, images=images or "", segmentation=segmentation)
    wrote = f" · wrote {out}" if out != "-" else ""
    console.print(f"merged {n.files} files: images {n.images} · boxes {n.boxes} · failed {n.failed}{wrote}")
    if failed:
        raise typer.Exit(1)
