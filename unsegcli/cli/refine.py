"""`unseg refine`: mask PNGs + their images -> refined mask PNGs (bilateral solver or dense CRF)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from ..config import DEFAULT_WORKERS
from ..refine import RefineMethod, RefineOptions, RefineOutput
from .options import MaxPixelsOpt, NullOpt, OverwriteOpt, QuietOpt, RootOpt, ShardOpt, WorkersOpt

EXAMPLES = """
[bold]Examples[/bold]

  unseg refine masks/ --images images/ --out masks_bs/                     # MOVE "+Bilateral", TokenCut "+BS"

  unseg refine masks/ --images images/ --out masks_found/ --output component --iou-gate   # FOUND-style

  unseg refine masks/ --images images/ --out masks_crf/ --method crf       # CutLER's CRF; pip install 'unseg\\[crf]'

  unseg refine masks/ --images images/ --out masks_bs/ --sigma-spatial 24 --sigma-luma 4 --sigma-chroma 4

  find masks -name '*.png' | unseg refine - --root masks --images images/ --out refined/ --workers 8

  unseg refine /data/masks --images /data/imgs --out refined/ --shard 3/16     # one Slurm array task of 16
"""

_defaults = RefineOptions()


def refine(
    masks: Annotated[
        list[str],
        typer.Argument(
            help="Mask PNGs (any tool's: 0-255 soft or binary), folders (recursive), '-' for paths on stdin, or "
            "shards of masks (.tar; paths, fsspec URLs, quoted brace lists): one refined shard per mask shard."
        ),
    ],
    images: Annotated[
        str,
        typer.Option(
            "--images",
            metavar="DIR",
            help="Image root: the mask a/b.png pairs with the image a/b.* "
            "under it. A mask of another size is resized bilinearly to its image, as MOVE's solver does. With "
            "mask shards: a folder, a shard, or each mask shard's image shard by {shard} or {name}: "
            "'shards/train-{shard}.tar'.",
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Output folder; outputs keep the masks' relative paths. With mask shards: a folder of shards, or a "
            "name with {shard} or {name} (as `unseg predict`).",
        ),
    ],
    method: Annotated[
        RefineMethod,
        typer.Option(
            "--method",
            "-m",
            help="bilateral: the fast bilateral solver of TokenCut/MOVE/FOUND. crf: "
            "CutLER's dense CRF (optional extra: pip install 'unseg\\[crf]').",
        ),
    ] = _defaults.method,
    output: Annotated[
        RefineOutput,
        typer.Option(
            "--output",
            help='bilateral only. soft: the solver output, 8-bit, what TokenCut "+BS" and '
            'MOVE "+Bilateral" score. component: 0/255, holes filled, then the largest foreground '
            "component (FOUND's binary_solver, fixed: the official rule keeps the second-largest label "
            "counting the background, i.e. the background whenever the object is the larger region; "
            "an output with no foreground is empty, not all ones). official: that official rule as published, "
            "for parity only. The CRF always writes 0/255.",
        ),
    ] = _defaults.output,
    iou_gate: Annotated[
        bool | None,
        typer.Option(
            "--iou-gate/--no-iou-gate",
            metavar="",
            show_default="off for bilateral, on for crf",
            help="bilateral: keep the refined mask only if its IoU with the input > 0.5, else write the "
            "input unchanged (FOUND). crf: if IoU < 0.5, drop the mask, writing an empty one (CutLER).",
        ),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold",
            min=0.0,
            max=1.0,
            help="The input mask's foreground for the IoU gate: mask (in \\[0, 1]) > threshold.",
        ),
    ] = _defaults.threshold,
    sigma_spatial: Annotated[
        float, typer.Option("--sigma-spatial", min=0.001, help="Bilateral grid cell in pixels (official runs: 16).")
    ] = _defaults.sigma_spatial,
    sigma_luma: Annotated[
        float, typer.Option("--sigma-luma", min=0.001, help="Bilateral grid cell in luma levels (official runs: 16).")
    ] = _defaults.sigma_luma,
    sigma_chroma: Annotated[
        float,
        typer.Option("--sigma-chroma", min=0.001, help="Bilateral grid cell in chroma levels (official runs: 8)."),
    ] = _defaults.sigma_chroma,
    workers: WorkersOpt = DEFAULT_WORKERS,
    overwrite: OverwriteOpt = False,
    max_pixels: MaxPixelsOpt = None,
    shard: ShardOpt = None,
    root: RootOpt = None,
    null: NullOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Refine masks against their images: bilateral solver (TokenCut/MOVE "+BS", FOUND) or dense CRF (CutLER)."""
    from ..errors import UsageError
    from ..pipelines.refine import refine_masks
    from ..pipelines.shards import shard_inputs
    from .console import Failures, ShardProgress, console, notice

    opts = RefineOptions(
        method=method,
        output=output,
        threshold=threshold,
        iou_gate=iou_gate,
        sigma_spatial=sigma_spatial,
        sigma_luma=sigma_luma,
        sigma_chroma=sigma_chroma,
    )
    failed = Failures()
    if shard_inputs(masks):
        if root is not None or null:
            raise UsageError("--root and --null apply to lists of files, not to shards")
        _refine_shards(masks, images, out, opts, workers, overwrite, max_pixels, shard, quiet, failed)
        return
    with ShardProgress("refine", quiet) as bar:
        run = refine_masks(
            masks,
            images,
            out,
            opts,
            workers=workers,
            overwrite=overwrite,
            max_pixels=max_pixels,
            shard=shard,
            root=root,
            null=null,
            on_start=bar.start,
            on_progress=bar.advance,
            on_error=failed,
            on_notice=notice,  # a resized mask is named even when quiet
        )
    if not bar.quiet:
        console.print(
            f"masks {run.masks} · written {run.written} · skipped {run.skipped} (existing) · failed {run.failed} · "
            f"resized {len(run.summary.notices)} · {run.rate:.2f} masks/s"
            + (f" · {run.shard.world} processes" if run.shard.world > 1 else "")
        )
    if run.failed:
        raise typer.Exit(1)


def _refine_shards(
    masks: list[str],
    images: str,
    out: str,
    opts: RefineOptions,
    workers: int,
    overwrite: bool,
    max_pixels: int | None,
    shard: str | None,
    quiet: bool,
    failed: Callable[[str], None],
) -> None:
    """Mask shards in, refined shards out (``pipelines.shards.refine_shards``)."""
    from ..pipelines.shards import refine_shards
    from .console import ShardProgress, console, notice, shard_summary

    with ShardProgress("refine", quiet) as bar:
        summary = refine_shards(
            masks,
            images,
            out,
            opts,
            workers=workers,
            overwrite=overwrite,
            max_pixels=max_pixels,
            shard=shard,
            on_start=bar.start,
            on_progress=bar.advance,
            on_error=failed,
            on_notice=notice,
        )
    if not bar.quiet:
        console.print(shard_summary(summary, "masks"))
    if summary.failed or summary.failed_shards:
        raise typer.Exit(1)
