"""`unseg boxes`: mask PNGs -> connected components -> boxes -> pseudo-label files."""
from __future__ import annotations

import os
from typing import List, Optional

import typer

from .app import app
from .console import Failures, console, progress_bar

EXAMPLES = """
[bold]Examples[/bold]

  unseg boxes masks/ --images images/ --out pseudo.json

  unseg boxes masks/ --images images/ --multi --out pseudo_multi.json

  unseg boxes masks/ --images images/ --multi --format selfmask --out selfmask_pseudo.json

  unseg boxes masks/ --images images/ --format lost-cad --out voc07_cad.json

  unseg boxes masks/ --images images/ --multi --format jsonl --out - | jq -c '.boxes | length'

  unseg boxes masks/ --images /data/imgs --multi --shard 3/16 --out part-03.json   # then: unseg merge part-*.json
"""


@app.command(epilog=EXAMPLES)
def boxes(
    masks: List[str] = typer.Argument(..., help="Mask PNGs (as written by `unseg predict`), folders, or '-' for paths on stdin."),
    out: str = typer.Option(..., "--out", "-o", help="Output file, or '-' for stdout."),
    images: Optional[str] = typer.Option(None, "--images", help="Image root: file_name becomes the image's path relative to it, "
                                         "and image and mask sizes are checked. Without it, file_name is the mask's relative "
                                         "path (.png), since the image's own extension is unknown."),
    format: str = typer.Option("coco", "--format", "-f", help="coco | selfmask | lost-cad | jsonl."),
    multi: bool = typer.Option(False, "--multi", help="Keep every component box (sorted by area); default keeps the largest."),
    threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0, help="Foreground where mask/255 > threshold."),
    connectivity: int = typer.Option(8, "--connectivity", help="Pixel connectivity of components: 8 or 4."),
    min_area: float = typer.Option(0.01, "--min-area", min=0.0, max=1.0, help="Drop boxes under this fraction of the image (MOVE: 1%)."),
    workers: int = typer.Option(min(4, os.cpu_count() or 1), "--workers", "-j", min=0, help="Processes decoding masks."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Label only shard i of N (i/N) of the sorted masks into a part "
                                        "file for `unseg merge`; under torchrun rank 0 gathers and writes one file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Masks -> boxes -> COCO / SelfMask / LOST-CAD / JSONL pseudo-labels."""
    from ..distributed import current_shard, finish, gather_to_main, sum_across
    from ..errors import UsageError
    from ..io.files import open_output
    from ..labelling import FORMATS, BoxOptions, plan_tasks, run_labelling, write_labels

    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not '{format}'")
    if connectivity not in (4, 8):
        raise UsageError("--connectivity must be 4 or 8")
    sh = current_shard(shard)
    quiet = quiet or not sh.reports
    tasks = plan_tasks(masks, images)
    if not tasks:
        raise UsageError("no mask PNGs found in the inputs")
    tasks = sh.take(tasks)  # global positions (image ids) are kept, so shards agree with one process
    opts = BoxOptions(threshold, connectivity, min_area, multi, with_rle=format == "coco",
                      with_union=format == "selfmask")
    failed = Failures()
    counts = {}
    with progress_bar(len(tasks), "boxes", quiet) as advance:
        def ticking():
            for r in run_labelling(tasks, opts, workers, failed):
                advance()
                yield r
        if sh.torchrun:  # every rank labels its share; rank 0 writes them all in input order
            parts = gather_to_main(sh, list(ticking()))
            if sh.is_main:
                with open_output(out) as stream:
                    ordered = sorted((r for p in parts for r in p), key=lambda r: r.index)
                    counts = write_labels(ordered, stream, format, dirname=images or "")
        else:
            with open_output(out) as stream:
                counts = write_labels(ticking(), stream, format, dirname=images or "")
    (n_failed,) = sum_across(sh, [len(failed)])
    if not quiet:
        console.print(f"images {counts['images']} · boxes {counts['boxes']} · without any box {counts['empty']} · "
                      f"failed {n_failed}" + (f" · wrote {out}" if out != "-" else ""))
    finish(sh)
    if n_failed:
        raise typer.Exit(1)
