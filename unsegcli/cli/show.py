"""`unseg show`: overlays and a static HTML review report, to look at labels before training on them."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from ..config import DEFAULT_WORKERS
from ..labels.components import DEFAULT_MIN_AREA
from ..review.records import FlagRules
from ..review.report import ReportOptions, SortKey
from .options import ConnectivityOpt, MinAreaOpt, OutDirOpt, OverwriteOpt, PickOpt, QuietOpt, ThresholdOpt, WorkersOpt

EXAMPLES = """
[bold]Examples[/bold]

  unseg show pseudo.json --images images/ --out review/          # then open review/index.html

  unseg show masks/ --images images/ --out review/ --gt VOC2007  # masks, GT boxes, CorLoc hits and misses

  unseg show coco_instances_results.json --images val2017/ --gt instances_val2017.json --out review/

  unseg show pseudo.jsonl --images /data/imgs --sample 500 --sort score --out review/   # 500 of 100k images

  unseg show masks/ --images images/ --only-flagged --out review/                        # just what needs a look
"""


def show(
    labels: Annotated[
        str,
        typer.Argument(
            help="A masks folder (soft or instance PNGs from `unseg predict`), or a label file: COCO, "
            "SelfMask, LOST-CAD, JSON lines (`unseg boxes`) or detector results (coco_instances_results.json)."
        ),
    ],
    out: OutDirOpt,
    images: Annotated[
        str | None,
        typer.Option(
            "--images",
            metavar="DIR",
            help="Image root the masks or file_names are relative to (detector results: "
            "matched by image id). Without it, overlays are drawn on a grey canvas.",
        ),
    ] = None,
    gt: Annotated[
        str | None,
        typer.Option(
            "--gt",
            metavar="VOC|JSON",
            help="Ground truth: a VOC folder (VOCdevkit/, VOC2007/, ...) or a COCO instances "
            "JSON. Adds GT boxes, each box's IoU, CorLoc hits and misses.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="VOC ImageSets/Main/<split>.txt of --gt.")] = "trainval",
    pick: PickOpt = "auto",
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            min=1,
            metavar="N",
            help="Draw N images chosen at random (same --seed, same images); plots and "
            "flag counts still cover every image.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --sample.")] = ReportOptions.seed,
    sort: Annotated[SortKey, typer.Option("--sort", help="Initial order of the grid (the page can re-sort).")] = "name",
    only_flagged: Annotated[
        bool, typer.Option("--only-flagged", metavar="", help="Draw only the images that are flagged.")
    ] = False,
    many: Annotated[
        int, typer.Option("--many", min=0, metavar="N", help="Flag images with more than N boxes.")
    ] = FlagRules.many_boxes,
    low_score: Annotated[
        float, typer.Option("--low-score", min=0.0, max=1.0, help="Flag images with a box scoring below this.")
    ] = FlagRules.low_score,
    threshold: ThresholdOpt = ReportOptions.threshold,
    connectivity: ConnectivityOpt = 8,
    min_area: MinAreaOpt = DEFAULT_MIN_AREA,
    multi: Annotated[
        bool,
        typer.Option(
            "--multi",
            metavar="",
            help="Masks: a box per component, as `unseg boxes --multi` (default: the largest; "
            "every component is outlined either way).",
        ),
    ] = False,
    thumb_size: Annotated[
        int, typer.Option("--thumb-size", min=32, metavar="PX", help="Longer side of thumbnails.")
    ] = ReportOptions.thumb_side,
    page_size: Annotated[
        int, typer.Option("--page-size", min=1, help="Thumbnails per page of the grid.")
    ] = ReportOptions.page_size,
    workers: WorkersOpt = DEFAULT_WORKERS,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Review masks or labels: overlays + a static index.html (grid, facts, plots, flags)."""
    from ..pipelines.show import review_labels
    from .console import Failures, console, progress_bar

    opts = ReportOptions(
        sample=sample,
        seed=seed,
        only_flagged=only_flagged,
        sort=sort,
        page_size=page_size,
        thumb_side=thumb_size,
        threshold=threshold,
        workers=workers,
        redraw=overwrite,
    )
    failed = Failures()
    with contextlib.ExitStack() as bars:
        summary = review_labels(
            labels,
            out,
            opts,
            FlagRules(many_boxes=many, low_score=low_score),
            images=images,
            gt=gt,
            split=split,
            pick=pick,
            threshold=threshold,
            connectivity=connectivity,
            min_area=min_area,
            multi=multi,
            on_error=failed,
            on_reading=lambda n: bars.enter_context(progress_bar(n, "reading masks", quiet)),
            on_drawing=lambda n: bars.enter_context(progress_bar(n, "drawing", quiet)),
        )
    if not quiet:
        flags = " · ".join(f"{k} {v}" for k, v in summary.flagged.items() if v)
        console.print(
            f"images {summary.images} · shown {summary.shown} (drawn {summary.drawn}, the others were up to "
            f"date) · boxes {summary.boxes}"
            + (f" · {flags}" if flags else "")
            + (f" · CorLoc {summary.corloc:.2f}%" if summary.corloc is not None else "")
            + f" · wrote {summary.index}"
        )
    if failed:
        raise typer.Exit(1)
