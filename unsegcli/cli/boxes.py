"""`unseg boxes`: mask PNGs -> connected components -> boxes -> pseudo-label files, or label shards from mask
shards."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from ..config import DEFAULT_WORKERS
from ..labels.components import DEFAULT_MIN_AREA
from ..labels.formats import LabelFormat, Segmentation
from ..labels.runner import BoxOptions, LabelCounts, Plan
from .console import Failures, console, notice, progress_bar
from .options import (
    ConnectivityOpt,
    LabelOutOpt,
    MaxPixelsOpt,
    MinAreaOpt,
    NullOpt,
    OverwriteOpt,
    QuietOpt,
    RootOpt,
    ShardOpt,
    ThresholdOpt,
    WorkersOpt,
)

if TYPE_CHECKING:
    from ..runtime import Shard

EXAMPLES = """
[bold]Examples[/bold]

  unseg boxes masks/ --images images/ --out pseudo.json

  unseg boxes masks/ --images images/ --multi --out pseudo_multi.json

  unseg boxes masks/ --images images/ --multi --format selfmask --out selfmask_pseudo.json

  unseg boxes masks/ --images images/ --format lost-cad --out voc07_cad.json

  unseg boxes masks/ --images images/ --multi --format yolo --out yolo_ds   # then: yolo train data=yolo_ds/data.yaml

  unseg boxes masks/ --images images/ --multi --format voc --min-score 0.7 --max-boxes 5 --out Annotations

  unseg boxes masks/ --images images/ --multi --segmentation polygon --out pseudo_poly.json

  unseg boxes masks/ --images images/ --multi --format jsonl --out - | jq -c '.boxes | length'

  unseg boxes masks/ --images /data/imgs --multi --shard 3/16 --out part-03.json   # then: unseg merge part-*.json

  unseg boxes 'masks-{000000..000009}.tar' --multi --out 'labels-{shard}.tar'     # then: unseg merge labels-*.tar

  unseg boxes 'masks-{000000..000009}.tar' --images 'shards/train-{shard}.tar' --multi --out 'labels/{name}.tar'
"""


def boxes(
    masks: Annotated[
        list[str],
        typer.Argument(
            help="Mask PNGs (as written by `unseg predict`), folders, '-' for paths on stdin, or shards of masks "
            "(.tar, as `unseg predict` writes them from shards); paths or fsspec URLs."
        ),
    ],
    out: LabelOutOpt,
    images: Annotated[
        str | None,
        typer.Option(
            "--images",
            metavar="DIR",
            help="Image root (a folder, or a shard of images): file_name becomes the image's path relative to it, "
            "and image and mask sizes are checked. Without it, file_name is the mask's relative path (.png), since "
            "the image's own extension is unknown. Label shards: also each mask shard's image shard by {shard} or "
            "{name}: 'shards/train-{shard}.tar'.",
        ),
    ] = None,
    format: Annotated[
        LabelFormat | None,
        typer.Option(
            "--format",
            "-f",
            show_default="coco",
            help="Pseudo-label file format. Label shards hold label rows, turned into any format by `unseg merge "
            "--format`, so they take no --format.",
        ),
    ] = None,
    multi: Annotated[
        bool,
        typer.Option(
            "--multi",
            metavar="",
            help="Keep every component box (sorted by area); default keeps the largest. Instance masks (palette "
            "PNGs, e.g. from --method maskcut) give one box per object, score 1.",
        ),
    ] = False,
    split_components: Annotated[
        bool,
        typer.Option(
            "--split-components",
            metavar="",
            help="Instance masks: a box per connected piece of each object instead of one per object (CutLER's "
            "own annotations are one per object).",
        ),
    ] = BoxOptions.split_components,
    threshold: ThresholdOpt = BoxOptions.threshold,
    connectivity: ConnectivityOpt = BoxOptions.connectivity,
    min_area: MinAreaOpt = DEFAULT_MIN_AREA,
    min_score: Annotated[
        float,
        typer.Option(
            "--min-score",
            min=0.0,
            max=1.0,
            help="Drop boxes whose score is lower: a soft mask's component scores its mean mask value times the "
            "score its method stored (TokenCut, LOST: 1 - Ncut), an instance object its stored score (MaskCut: 1 - "
            "Ncut; VoteCut: vote share), 1 if none. Scores of different methods are not comparable.",
        ),
    ] = BoxOptions.min_score,
    max_boxes: Annotated[
        int | None,
        typer.Option("--max-boxes", min=1, help="Keep at most this many boxes per image, the highest scores."),
    ] = BoxOptions.max_boxes,
    segmentation: Annotated[
        Segmentation,
        typer.Option(
            "--segmentation",
            help="COCO masks as RLE, or as polygons traced along the component's outline (for polygon-only tools).",
        ),
    ] = "rle",
    allow_color: Annotated[
        bool,
        typer.Option(
            "--allow-color",
            metavar="",
            help="Box colour images by their luminance; by default an input whose channels differ is refused "
            "as a photo, not a mask.",
        ),
    ] = False,
    max_pixels: MaxPixelsOpt = None,
    root: RootOpt = None,
    null: NullOpt = False,
    workers: WorkersOpt = DEFAULT_WORKERS,
    shard: ShardOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Masks -> boxes -> COCO / SelfMask / LOST-CAD / JSONL / YOLO / VOC pseudo-labels. With --shard each process
    writes a part file for `unseg merge`; under torchrun rank 0 gathers and writes one file. From mask shards, an --out
    ending in .tar, with {shard} (the mask shard's number) or {name} (its name): one label shard per mask shard, its
    member <key>.json that image's label row (docs/scaling.md), for `unseg merge` into any format; a re-run skips the
    label shards that exist (refusing those of other box options); --shard and torchrun split the shards."""
    from ..errors import UsageError
    from ..io.files import check_output_dir, check_output_file
    from ..io.images import IMAGE_EXTENSIONS, TOO_LARGE
    from ..io.outputs import check_outside_inputs
    from ..io.shards import is_shard, renamed, staged_inputs
    from ..labels.components import COLOUR_IMAGE
    from ..labels.formats import writer_class
    from ..labels.runner import plan_tasks
    from ..pipelines.shards import names_shards
    from ..runtime import close_shard, init_shard

    opts = BoxOptions(
        threshold,
        connectivity,
        min_area,
        multi,
        min_score,
        max_boxes,
        allow_color=allow_color,
        max_pixels=max_pixels,
        split_components=split_components,
    )
    image_shard = images is not None and is_shard(images) and not os.path.isdir(images)
    if images is not None and not os.path.isdir(images) and not image_shard:
        raise UsageError(f"--images must be a folder or a shard: {images}")
    if names_shards(out):
        if not is_shard(out):
            raise UsageError(f"label shards are tar files: --out {out} must end in .tar ('labels-{{shard}}.tar')")
        if format is not None or segmentation != "rle":
            given = f"--format {format}" if format is not None else f"--segmentation {segmentation}"
            raise UsageError(
                f"label shards (--out {out}) hold label rows with RLE masks, not {given}",
                f"choose it when merging: unseg merge labels-*.tar {given} --out ...",
            )
        if root is not None or null:
            raise UsageError("--root and --null apply to lists of files, not to shards")
        _label_shards(masks, out, images, opts, workers, overwrite, shard, quiet)
        return
    format = format or "coco"
    if segmentation != "rle" and format != "coco":
        raise UsageError("--segmentation applies to --format coco only")
    if format in ("yolo", "yolo-seg") and (images is None or image_shard):
        raise UsageError(f"--format {format} needs --images, a folder: the dataset links to the images")
    if writer_class(format).writes_folder:  # every output location is checked before any input is read
        if out == "-":
            raise UsageError(f"--format {format} writes a folder: --out cannot be '-'")
        check_output_dir(out, "--out")
        check_outside_inputs([*masks, images], out)  # it holds images (links) or label files
    else:
        check_output_file(out, "--out")
    sh = init_shard(shard)
    quiet = quiet or not sh.shows_progress
    failed = Failures()
    # shards of masks (and an --images shard) are read into temp folders for the length of the run
    with staged_inputs(masks, (".png",)) as staged, staged_inputs([images] if images else [], IMAGE_EXTENSIONS) as imgs:
        report = renamed(imgs, renamed(staged, failed))
        for problem in staged.problems + imgs.problems:
            report(problem)
        # image ids are positions in the full list: shards agree with one run
        plan = plan_tasks(staged.specs, imgs.specs[0] if images else None, sh, root=root, null=null)
        counts = _label(
            plan,
            out,
            format,
            segmentation,
            images,
            workers,
            sh,
            report,
            quiet,
            opts,
        )
        counts.failed += len(staged.problems) + len(imgs.problems)
    if not quiet:
        console.print(
            f"images {counts.images} · boxes {counts.boxes} · without any box {counts.empty} · "
            f"failed {counts.failed}"
            + (f" · wrote {out}" if out != "-" else "")
            + (f" · removed {counts.stale} files of an earlier export there" if counts.stale else "")
        )
        console.print(
            "removed by --min-area {min_area} · --min-score {min_score} · --max-boxes {max_boxes}".format(
                **counts.removed
            )
        )
    if not quiet and plan.ignored:
        notice(plan.ignored)
    if any(COLOUR_IMAGE in m for m in failed.messages):
        notice("colour images are refused as masks; --allow-color boxes their luminance")
    if any(TOO_LARGE in m for m in failed.messages):
        notice("images over the pixel limit were refused; raise --max-pixels for trusted files")
    close_shard(sh)
    if counts.failed:
        raise typer.Exit(1)


def _label_shards(
    masks: list[str],
    out: str,
    images: str | None,
    opts: BoxOptions,
    workers: int,
    overwrite: bool,
    shard: str | None,
    quiet: bool,
) -> None:
    """Mask shards in, label shards out (``pipelines.shards.label_shards``)."""

    from ..io.images import TOO_LARGE
    from ..labels.components import COLOUR_IMAGE
    from ..pipelines.shards import label_shards
    from .console import ShardProgress, shard_summary

    failed = Failures()
    with ShardProgress("boxes", quiet) as bar:
        summary, counts = label_shards(
            masks,
            out,
            opts,
            images=images,
            workers=workers,
            overwrite=overwrite,
            shard=shard,
            on_start=bar.start,
            on_progress=bar.advance,
            on_error=failed,
        )
    if not bar.quiet:
        console.print(f"{shard_summary(summary, 'masks')} · boxes {counts.boxes} · without any box {counts.empty}")
    if any(COLOUR_IMAGE in m for m in failed.messages):
        notice("colour images are refused as masks; --allow-color boxes their luminance")
    if any(TOO_LARGE in m for m in failed.messages):
        notice("images over the pixel limit were refused; raise --max-pixels for trusted files")
    if summary.failed or summary.failed_shards:
        raise typer.Exit(1)


def _label(
    plan: Plan,
    out: str,
    format: LabelFormat,
    segmentation: Segmentation,
    images: str | None,
    workers: int,
    sh: Shard,
    report: Callable[[str], None],
    quiet: bool,
    opts: BoxOptions,
) -> LabelCounts:
    from ..labels.runner import label_files

    with progress_bar(len(plan.tasks), "boxes", quiet) as advance:
        return label_files(
            plan,
            out,
            format,
            opts,
            workers,
            sh,
            dirname=images or "",
            segmentation=segmentation,
            on_error=report,
            on_progress=advance,
        )
