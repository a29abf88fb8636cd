"""`unseg boxes`: mask PNGs -> connected components -> boxes -> pseudo-label files."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ..config import DEFAULT_WORKERS
from ..labels.components import DEFAULT_MIN_AREA
from ..labels.runner import BoxOptions
from .console import Failures, console, progress_bar
from .options import (
    ConnectivityOpt,
    LabelFormatOpt,
    MinAreaOpt,
    OutFileOpt,
    QuietOpt,
    ShardOpt,
    ThresholdOpt,
    WorkersOpt,
)

EXAMPLES = """
[bold]Examples[/bold]

  unseg boxes masks/ --images images/ --out pseudo.json

  unseg boxes masks/ --images images/ --multi --out pseudo_multi.json

  unseg boxes masks/ --images images/ --multi --format selfmask --out selfmask_pseudo.json

  unseg boxes masks/ --images images/ --format lost-cad --out voc07_cad.json

  unseg boxes masks/ --images images/ --multi --format jsonl --out - | jq -c '.boxes | length'

  unseg boxes masks/ --images /data/imgs --multi --shard 3/16 --out part-03.json   # then: unseg merge part-*.json
"""


def boxes(
    masks: Annotated[
        list[str], typer.Argument(help="Mask PNGs (as written by `unseg predict`), folders, or '-' for paths on stdin.")
    ],
    out: OutFileOpt,
    images: Annotated[
        str | None,
        typer.Option(
            "--images",
            metavar="DIR",
            help="Image root: file_name becomes the image's path relative to it, and image "
            "and mask sizes are checked. Without it, file_name is the mask's relative path (.png), since the image's "
            "own extension is unknown.",
        ),
    ] = None,
    format: LabelFormatOpt = "coco",
    multi: Annotated[
        bool,
        typer.Option(
            "--multi", metavar="", help="Keep every component box (sorted by area); default keeps the largest."
        ),
    ] = False,
    threshold: ThresholdOpt = BoxOptions.threshold,
    connectivity: ConnectivityOpt = BoxOptions.connectivity,
    min_area: MinAreaOpt = DEFAULT_MIN_AREA,
    workers: WorkersOpt = DEFAULT_WORKERS,
    shard: ShardOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Masks -> boxes -> COCO / SelfMask / LOST-CAD / JSONL pseudo-labels. With --shard each process
    writes a part file for `unseg merge`; under torchrun rank 0 gathers and writes one file."""
    from ..errors import UsageError
    from ..labels.runner import label_files, plan_tasks
    from ..runtime import close_shard, init_shard

    if images is not None and not os.path.isdir(images):
        raise UsageError(f"--images must be a folder: {images}")
    sh = init_shard(shard)
    quiet = quiet or not sh.shows_progress
    plan = plan_tasks(masks, images, sh)  # image ids are positions in the full list: shards agree with one run
    failed = Failures()
    opts = BoxOptions(threshold, connectivity, min_area, multi)
    with progress_bar(len(plan.tasks), "boxes", quiet) as advance:
        counts = label_files(
            plan, out, format, opts, workers, sh, dirname=images or "", on_error=failed, on_progress=advance
        )
    if not quiet:
        console.print(
            f"images {counts.images} · boxes {counts.boxes} · without any box {counts.empty} · "
            f"failed {counts.failed}" + (f" · wrote {out}" if out != "-" else "")
        )
    close_shard(sh)
    if counts.failed:
        raise typer.Exit(1)
