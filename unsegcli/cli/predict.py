"""`unseg predict`: images -> 8-bit soft (or binary) mask PNGs at the original image size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ..config import DEFAULT_WORKERS, PreprocessConfig
from ..refine import RefineMethod, RefineOutput
from .options import (
    BatchSizeOpt,
    DeviceOpt,
    MaxPixelsOpt,
    OverwriteOpt,
    PrecisionOpt,
    QuietOpt,
    ShardOpt,
    ThresholdOpt,
    WeightsOpt,
    WorkersOpt,
)

EXAMPLES = """
[bold]Examples[/bold]

  unseg predict images/ --out masks/

  unseg predict photo.jpg scans/ --out masks/ --binary --threshold 0.5

  find photos -name '*.jpg' | unseg predict - --out masks/ --device cuda --batch-size 32 --precision bf16

  unseg predict images/ --out masks/ --weights weights/move-dino-vits8.pt --max-size 1024

  unseg predict images/ --out masks_bs/ --refine bilateral     # MOVE's "+Bilateral" masks in one pass

  unseg predict /data/imgs --out masks/ --shard 3/16          # one Slurm array task of 16

  torchrun --nproc-per-node 8 -m unsegcli predict /data/coco/train2017 --out masks/ --precision bf16
"""


def predict(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or '-' for paths on stdin.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Output folder; masks keep the inputs' relative paths, as .png."
        ),
    ],
    weights: WeightsOpt = None,
    binary: Annotated[
        bool, typer.Option("--binary", metavar="", help="Write 0/255 masks at --threshold instead of soft masks.")
    ] = False,
    threshold: ThresholdOpt = 0.5,
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            min=8,
            show_default=f"the checkpoint's, {PreprocessConfig.size} for MOVE",
            help="Shorter side fed to the model.",
        ),
    ] = None,
    max_size: Annotated[
        int | None,
        typer.Option(
            "--max-size", min=8, show_default="the checkpoint's", help="Cap on the longer side after resizing."
        ),
    ] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    batch_size: BatchSizeOpt = 1,
    workers: WorkersOpt = DEFAULT_WORKERS,
    overwrite: OverwriteOpt = False,
    max_pixels: MaxPixelsOpt = None,
    branch: Annotated[
        Literal["fine", "coarse"] | None,
        typer.Option("--branch", show_default="fine",
                     help="Sempart checkpoints: the fine (pixel) or coarse (patch-grid) mask."),
    ] = None,
    refine: Annotated[
        RefineMethod | None,
        typer.Option(
            "--refine",
            show_default="no refinement",
            help="Refine each soft mask with its image before writing it: the bilateral solver (MOVE's "
            "'+Bilateral', TokenCut's '+BS' rows) or CutLER's dense CRF (needs unseg[crf]); as `unseg refine`.",
        ),
    ] = None,
    refine_output: Annotated[
        RefineOutput,
        typer.Option("--refine-output", help="With --refine: the solver's soft output, or FOUND's object component."),
    ] = "soft",
    compile: Annotated[
        bool, typer.Option("--compile", metavar="", help="torch.compile the model (GPU; pays off on large runs).")
    ] = False,
    shard: ShardOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run the segmenter on images and write one mask PNG per image (same relative path, .png)."""
    from ..inference import list_prediction_inputs, predict_files
    from ..model.families import load_predictor
    from ..refine import RefineOptions
    from ..model.registry import resolve_weights
    from ..runtime import close_shard, effective_precision, init_shard, local_device, resolve_device
    from .console import Failures, console, notice, progress_bar

    items = list_prediction_inputs(inputs, out)
    sh = init_shard(shard)
    quiet = quiet or not sh.shows_progress  # under torchrun, one progress bar and summary: rank 0's
    dev = resolve_device(local_device(device, sh))
    run_precision = effective_precision(dev, precision)
    if device == "auto" and dev.type == "cpu" and not quiet:
        notice("no CUDA device found; running on CPU")
    if run_precision != precision and not quiet:
        notice(f"--precision {precision} applies on GPU only; CPU runs fp32")
    predictor = load_predictor(
        resolve_weights(weights), dev, run_precision, size=size, max_size=max_size, compile=compile,
        options={"branch": branch} if branch else None,
    )
    failed = Failures()
    with progress_bar(None, "predict", quiet) as advance:
        summary = predict_files(
            predictor,
            items,
            out,
            shard=sh,
            binary=binary,
            threshold=threshold,
            overwrite=overwrite,
            batch_size=batch_size,
            workers=workers,
            max_pixels=max_pixels,
            refine=RefineOptions(method=refine, output=refine_output) if refine else None,
            on_error=failed,
            on_progress=lambda n, total: advance(n, total=total),
        )
    if not quiet:
        if summary.too_large:
            notice(f"{summary.too_large} images exceed the pixel limit; raise it with --max-pixels if they are trusted")
        console.print(
            f"images {summary.images} · written {summary.written} · skipped {summary.skipped} (existing) · "
            f"failed {summary.failed} · {summary.rate:.2f} images/s · device {dev}"
            + (f" {run_precision}" if dev.type == "cuda" else "")
            + (f" · {sh.world} processes" if sh.world > 1 else "")
        )
    close_shard(sh)
    if summary.failed:
        raise typer.Exit(1)
