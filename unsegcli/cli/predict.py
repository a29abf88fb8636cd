"""`unseg predict`: images -> 8-bit soft (or binary) mask PNGs, or instance PNGs (maskcut), at the original size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from ..config import DEFAULT_WORKERS, PreprocessConfig
from ..methods import METHODS, options_class, predict_methods
from ..refine import RefineMethod, RefineOptions, RefineOutput
from .options import (
    BatchSizeOpt,
    DeviceOpt,
    EngineOpt,
    InferencePrecisionOpt,
    MaxPixelsOpt,
    NullOpt,
    OverwriteOpt,
    QuietOpt,
    RootOpt,
    ShardOpt,
    ThresholdOpt,
    WeightsOpt,
    WorkersOpt,
    declared_flags,
)

EXAMPLES = """
[bold]Examples[/bold]

  unseg predict images/ --out masks/

  unseg predict photo.jpg scans/ --out masks/ --binary --threshold 0.5

  find photos -name '*.jpg' | unseg predict - --root photos --out masks/ --device cuda --batch-size 32

  find photos -name '*.jpg' -print0 | unseg predict - --null --root photos --out masks/

  unseg predict images/ --out masks/ --weights weights/move-dino-vits8.pt --max-size 1024

  unseg predict images/ --out masks_bs/ --refine bilateral     # MOVE's "+Bilateral" masks in one pass

  unseg predict /data/imgs --out masks/ --shard 3/16          # one Slurm array task of 16

  torchrun --nproc-per-node 8 -m unsegcli predict /data/coco/train2017 --out masks/ --precision bf16

  unseg predict images/ --out masks_tc/ --method tokencut               # training-free: TokenCut, DINO ViT-S/16

  unseg predict images/ --out masks_lost/ --method lost --backbone dino-vits8

  unseg predict images/ --out inst/ --method maskcut --max-objects 3   # instance PNGs: one index per object

  unseg predict images/ --out masks/ --engine openvino --precision bf16   # CPU: OpenVINO, native bf16
"""

_PANEL = "Training-free methods"
# label -> options class of each training-free method (the method table); their fields become this command's flags
_OPTIONS = {name: options_class(name) for name in predict_methods()[1:]}


# one line per method of the table: what `--method NAME` runs and what it writes
_METHOD_HELP = (
    "move: a trained checkpoint of any family (--weights: MOVE, Sempart, FOUND, self-trained). "
    + " ".join(
        f"{name}: {METHODS[name].summary}"
        + (" (instance PNG: palette, index k = object k)." if METHODS[name].writes == "instances" else ".")
        for name in predict_methods()[1:]
    )
    + " Their options: the panels below."
)


def _known_method(value: str) -> str:
    """Checks --method against the method table (methods.predict_methods)."""
    if value not in predict_methods():
        raise typer.BadParameter(f"'{value}' is not one of {', '.join(predict_methods())}")
    return value


@declared_flags(_OPTIONS, _PANEL)
def predict(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or '-' for paths on stdin.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Output folder; masks keep the inputs' relative paths, as .png."
        ),
    ],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            metavar="|".join(predict_methods()),
            callback=_known_method,
            help=_METHOD_HELP,
        ),
    ] = "move",
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
    precision: InferencePrecisionOpt = "fp32",
    engine: EngineOpt = "torch",
    batch_size: BatchSizeOpt = 1,
    workers: WorkersOpt = DEFAULT_WORKERS,
    overwrite: OverwriteOpt = False,
    max_pixels: MaxPixelsOpt = None,
    branch: Annotated[
        Literal["fine", "coarse"] | None,
        typer.Option(
            "--branch", show_default="fine", help="Sempart checkpoints: the fine (pixel) or coarse (patch-grid) mask."
        ),
    ] = None,
    refine: Annotated[
        RefineMethod | None,
        typer.Option(
            "--refine",
            show_default="no refinement",
            help="Refine each soft mask with its image before writing it: the bilateral solver (MOVE's "
            "'+Bilateral', TokenCut's '+BS' rows) or CutLER's dense CRF (needs the crf extra); as `unseg refine`.",
        ),
    ] = None,
    refine_output: Annotated[
        RefineOutput | None,
        typer.Option(
            "--refine-output",
            show_default=RefineOptions.output,
            help="With --refine: the solver's soft output, or FOUND's object component.",
        ),
    ] = None,
    compile: Annotated[
        bool, typer.Option("--compile", metavar="", help="torch.compile the model (GPU; pays off on large runs).")
    ] = False,
    shard: ShardOpt = None,
    root: RootOpt = None,
    null: NullOpt = False,
    quiet: QuietOpt = False,
    **options: Any,
) -> None:
    """Run a segmenter (a checkpoint, or a training-free method) on images and write one mask PNG per image
    (same relative path, .png)."""
    from ..engine.predict import predict_files
    from ..pipelines.predict import PredictRequest, build_predictor, plan_prediction
    from ..runtime import close_shard
    from .console import Failures, console, notice, progress_bar

    request = PredictRequest(
        method=method, weights=weights, options=options, size=size, max_size=max_size, branch=branch,
        compile=compile, precision=precision, engine=engine, device=device, binary=binary, threshold=threshold,
        refine=refine, refine_output=refine_output, overwrite=overwrite,
    )  # fmt: skip
    plan = plan_prediction(request, inputs, out, root=root, null=null, shard=shard)
    sh, dev, listing = plan.shard, plan.device, plan.listing
    quiet = quiet or not sh.shows_progress  # under torchrun, one progress bar and summary: rank 0's
    if device == "auto" and dev.type == "cpu" and not quiet:
        notice("no CUDA device found; running on CPU")
    predictor = build_predictor(plan)
    failed = Failures()
    for problem in listing.problems if sh.shows_progress else ():  # every rank lists them; rank 0 reports
        failed(problem)
    if not quiet and listing.ignored_summary():
        notice(str(listing.ignored_summary()))
    with progress_bar(None, "predict", quiet) as advance:
        summary = predict_files(
            predictor,
            listing.items,
            out,
            shard=sh,
            binary=binary,
            threshold=threshold,
            overwrite=overwrite,
            batch_size=batch_size,
            workers=workers,
            max_pixels=max_pixels,
            refine=request.refine_options(),
            tag=plan.tag,
            on_error=failed,
            on_progress=lambda n, total: advance(n, total=total),
        )
    if not quiet:
        if summary.too_large:
            notice(f"{summary.too_large} images exceed the pixel limit; raise it with --max-pixels if they are trusted")
        console.print(
            f"images {summary.images} · written {summary.written} · skipped {summary.skipped} (existing) · "
            f"failed {summary.failed + len(listing.problems)} · {summary.rate:.2f} images/s · device {dev}"
            + (f" {plan.precision}" if dev.type == "cuda" or plan.precision != "fp32" else "")
            + (f" · engine {engine}" if engine != "torch" else "")
            + (f" · {sh.world} processes" if sh.world > 1 else "")
        )
    close_shard(sh)
    if summary.failed or listing.problems:
        raise typer.Exit(1)
