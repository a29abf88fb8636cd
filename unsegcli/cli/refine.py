"""`unseg refine`: mask PNGs + their images -> refined mask PNGs (bilateral solver or dense CRF)."""

from __future__ import annotations

import os
from pathlib import Path
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
            help="Mask PNGs (any tool's: 0-255 soft or binary), folders (recursive), or '-' for paths on stdin."
        ),
    ],
    images: Annotated[
        str,
        typer.Option(
            "--images",
            metavar="DIR",
            help="Image root: the mask a/b.png pairs with the image a/b.* "
            "under it. A mask of another size is resized bilinearly to its image, as MOVE's solver does.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder; outputs keep the masks' relative paths.")
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
            "an output with no foreground is empty, not all ones). The CRF always writes 0/255.",
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
    import dataclasses
    import time

    from ..errors import UsageError
    from ..io.files import check_output_dir, remove_stale_temps
    from ..io.masks import settings_tag
    from ..io.outputs import check_outside_inputs, check_same_settings
    from ..refine.runner import plan_refine, refine_files
    from ..runtime import close_shard, init_shard, sum_across
    from .console import Failures, console, notice, progress_bar

    check_output_dir(out, "--out")
    check_outside_inputs([*masks, images], out)
    if root is not None and not Path(root).is_dir():
        raise UsageError(f"--root {root} is not a folder")
    opts = RefineOptions(
        method=method,
        output=output,
        threshold=threshold,
        iou_gate=iou_gate,
        sigma_spatial=sigma_spatial,
        sigma_luma=sigma_luma,
        sigma_chroma=sigma_chroma,
    )
    if method == "crf":
        from ..refine.crf import require_crf

        require_crf()
    tag = settings_tag(dataclasses.asdict(opts))
    tasks = plan_refine(masks, images, str(out), root=root, null=null, tag=tag)
    if not overwrite:  # every output, this shard's or not: all shards of a run must agree
        check_same_settings((t.out_path for t in tasks if not isinstance(t, str)), tag)
    sh = init_shard(shard)
    for folder in sorted({os.path.dirname(t.out_path) for t in tasks if not isinstance(t, str)}):
        remove_stale_temps(folder)  # what a killed run (SIGKILL) left
    quiet = quiet or not sh.shows_progress
    failed = Failures()
    start = time.perf_counter()
    with progress_bar(None, "refine", quiet) as advance:
        summary = refine_files(
            tasks,
            opts,
            workers=workers,
            overwrite=overwrite,
            shard=sh,
            max_pixels=max_pixels,
            on_progress=lambda n, total: advance(n, total=total),
            on_error=failed,
            on_notice=notice,
        )  # a resized mask is named even when quiet
    seconds = time.perf_counter() - start
    n_masks, written, skipped, n_failed = sum_across(
        sh, [summary.masks, summary.written, summary.skipped, len(summary.failed)]
    )
    if not quiet:
        rate = summary.written / seconds if seconds > 0 else 0.0
        console.print(
            f"masks {n_masks} · written {written} · skipped {skipped} (existing) · failed {n_failed} · "
            f"resized {len(summary.notices)} · {rate:.2f} masks/s"
            + (f" · {sh.world} processes" if sh.world > 1 else "")
        )
    close_shard(sh)
    if n_failed:
        raise typer.Exit(1)
