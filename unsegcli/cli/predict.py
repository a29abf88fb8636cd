"""`unseg predict`: images -> 8-bit soft (or binary) mask PNGs, or instance PNGs (maskcut), at the original size."""

from __future__ import annotations

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

  unseg predict images/ --out feats/ --method maskcut --save-features --device cuda   # GPU stage: features
  unseg predict feats/ --out inst/ --method maskcut --from-features --device cpu      # CPU stage: the cuts
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
    + " Scores (1 = most confident; stored in each PNG, used by `unseg boxes`) mean what each method says: scores of"
    " different methods are not comparable. Their options: the panels below."
)


def _known_method(value: str) -> str:
    """Checks --method against the method table (methods.predict_methods)."""
    if value not in predict_methods():
        raise typer.BadParameter(f"'{value}' is not one of {', '.join(predict_methods())}")
    return value


@declared_flags(_OPTIONS, _PANEL)
def predict(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (recursive), '-' for paths on stdin, or WebDataset shards (.tar); paths or "
            "fsspec URLs (s3://, https://: the cloud extra); quoted braces expand: 'shards/train-{000000..000099}.tar'."
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Output folder; masks keep the inputs' relative paths, as .png. Shard inputs write one shard of "
            "masks per input shard: a folder, or a name with {shard} (the input's number) or {name}: "
            "masks-{shard}.tar.",
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
            "'+Bilateral', TokenCut's '+BS' rows) or CutLER's dense CRF (needs the crf extra); as `unseg refine`. "
            "Two methods apply their own published rule instead: found + bilateral = FOUND's '+BS' (the solver on "
            "the > 0.5 mask, kept only if its IoU with that mask is > 0.5, binary; single mode keeps one component); "
            "votecut + crf = CuVLER's CRF on each object (on a crop around its box, kept unless the box moved: "
            "box IoU < 0.5).",
        ),
    ] = None,
    refine_output: Annotated[
        RefineOutput | None,
        typer.Option(
            "--refine-output",
            show_default=f"{RefineOptions.output}; component for --method found",
            help="With --refine bilateral: soft = the solver's output; component = holes filled, then the object "
            "(the largest foreground component; FOUND multi mode: all foreground); official = the official "
            "binary_solver rule, which keeps the second-largest label counting the background, i.e. the "
            "BACKGROUND whenever the object is the larger region (for parity only).",
        ),
    ] = None,
    compile: Annotated[
        bool, typer.Option("--compile", metavar="", help="torch.compile the model (GPU; pays off on large runs).")
    ] = False,
    save_features: Annotated[
        bool,
        typer.Option(
            "--save-features",
            metavar="",
            help="The GPU stage of a split run (tokencut, lost, maskcut, votecut): write each image's backbone "
            "features to --out as NAME.safetensors instead of its mask; then --from-features cuts them on CPU.",
        ),
    ] = False,
    from_features: Annotated[
        bool,
        typer.Option(
            "--from-features",
            metavar="",
            help="The CPU stage: the inputs are the feature files of --save-features (same --method and "
            "options); writes the masks of the one-stage run, without loading the backbone.",
        ),
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
    from ..errors import UsageError
    from ..pipelines.predict import PredictRequest, deferred_predictor, plan_prediction
    from ..pipelines.shards import shard_inputs
    from ..runtime import close_shard
    from .console import Failures, console, notice, progress_bar

    if save_features and from_features:
        from ..errors import UsageError

        raise UsageError("--save-features and --from-features are the two stages: give one")
    stage: Literal["features", "cuts"] | None = "features" if save_features else "cuts" if from_features else None
    request = PredictRequest(
        method=method, weights=weights, options=options, size=size, max_size=max_size, branch=branch,
        compile=compile, precision=precision, engine=engine, device=device, binary=binary, threshold=threshold,
        refine=refine, refine_output=refine_output, overwrite=overwrite, stage=stage,
    )  # fmt: skip
    if shard_inputs(inputs):
        if root is not None or null:
            raise UsageError("--root and --null apply to lists of files, not to shards")
        _predict_shards(request, inputs, out, shard, batch_size, workers, max_pixels, quiet)
        return
    plan = plan_prediction(request, inputs, out, root=root, null=null, shard=shard)
    sh, dev, listing = plan.shard, plan.device, plan.listing
    quiet = quiet or not sh.shows_progress  # under torchrun, one progress bar and summary: rank 0's
    if device == "auto" and dev.type == "cpu" and not quiet:
        notice("no CUDA device found; running on CPU")
    predictor = deferred_predictor(plan)  # loaded when an output is missing
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
            refine=request.post_refine(),
            tag=plan.tag,
            on_error=failed,
            on_progress=lambda n, total: advance(n, total=total),
            decode=plan.decode,
            settings=plan.settings,
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


def _predict_shards(
    request: Any,
    inputs: list[str],
    out: str,
    shard: str | None,
    batch_size: int,
    workers: int,
    max_pixels: int | None,
    quiet: bool,
) -> None:
    """Shards in, shards out (``pipelines.shards``): one output shard per input shard."""
    from ..pipelines.predict import deferred_predictor
    from ..pipelines.shards import plan_shards, predict_shards
    from ..runtime import close_shard
    from .console import Failures, console, notice, progress_bar, shard_summary

    plan = plan_shards(request, inputs, out, shard)
    sh, dev = plan.prediction.shard, plan.prediction.device
    quiet = quiet or not sh.shows_progress
    if request.device == "auto" and dev.type == "cpu" and not quiet:
        notice("no CUDA device found; running on CPU")
    predictor = deferred_predictor(plan.prediction)  # loaded when a shard is to be written
    failed = Failures()
    with progress_bar(None, "predict", quiet) as advance:
        summary = predict_shards(
            plan,
            predictor,
            batch_size=batch_size,
            workers=workers,
            max_pixels=max_pixels,
            on_error=failed,
            on_progress=lambda n, total: advance(n, total=total),
        )
    if not quiet:
        if summary.too_large:
            notice(f"{summary.too_large} images exceed the pixel limit; raise it with --max-pixels if they are trusted")
        console.print(f"{shard_summary(summary, 'images')} · device {dev}")
    close_shard(sh)
    if summary.failed or summary.failed_shards:
        raise typer.Exit(1)
