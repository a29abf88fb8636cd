"""`unseg predict`: images -> 8-bit soft (or binary) mask PNGs, or instance PNGs (maskcut), at the original size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from ..config import DEFAULT_WORKERS, PreprocessConfig
from ..methods.options import OPTIONS, Eigensolver, Geometry, Orientation
from ..refine import RefineMethod, RefineOutput
from .options import (
    BatchSizeOpt,
    DeviceOpt,
    MaxPixelsOpt,
    NullOpt,
    OverwriteOpt,
    PrecisionOpt,
    QuietOpt,
    RootOpt,
    ShardOpt,
    ThresholdOpt,
    WeightsOpt,
    WorkersOpt,
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
"""

MethodChoice = Literal["move", "tokencut", "lost", "maskcut"]  # "move" + methods.options.OPTIONS (tested)
_PANEL = "Training-free methods"


def _defaults(name: str) -> str:
    """The official default of option ``name`` for --help: one value, or each value with its methods."""
    by_value: dict[object, list[str]] = {}
    for m, cls in OPTIONS.items():
        if hasattr(cls, name):
            by_value.setdefault(getattr(cls, name), []).append(m)
    if len(by_value) == 1:
        return str(next(iter(by_value)))
    return "; ".join(f"{', '.join(ms)}: {v}" for v, ms in by_value.items())


def predict(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or '-' for paths on stdin.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Output folder; masks keep the inputs' relative paths, as .png."
        ),
    ],
    method: Annotated[
        MethodChoice,
        typer.Option(
            "--method",
            help="move: a trained checkpoint (--weights: MOVE, Sempart, self-trained). tokencut, lost: "
            "training-free, one object per image as a 0/255 mask, from a DINO backbone (--backbone). maskcut: "
            "training-free, up to --max-objects objects per image in one instance PNG (palette, index k = object "
            "k), which boxes, corloc, eval and show read. Options: the 'Training-free methods' panel.",
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
    precision: PrecisionOpt = "fp32",
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
        RefineOutput,
        typer.Option("--refine-output", help="With --refine: the solver's soft output, or FOUND's object component."),
    ] = "soft",
    compile: Annotated[
        bool, typer.Option("--compile", metavar="", help="torch.compile the model (GPU; pays off on large runs).")
    ] = False,
    shard: ShardOpt = None,
    root: RootOpt = None,
    null: NullOpt = False,
    quiet: QuietOpt = False,
    backbone: Annotated[
        str | None,
        typer.Option(
            "--backbone",
            metavar="NAME|PATH",
            rich_help_panel=_PANEL,
            show_default=_defaults("backbone"),
            help="DINO ViT whose last-block keys are cut: a known name (dino-vits16, dino-vits8, dino-vitb8, ...; "
            "get it with `unseg weights fetch NAME`), DINO's own .pth or a timm file, or timm:NAME.",
        ),
    ] = None,
    tau: Annotated[
        float | None,
        typer.Option(
            "--tau",
            min=-1.0,
            max=1.0,
            rich_help_panel=_PANEL,
            show_default=_defaults("tau"),
            help="Cosine threshold of the patch graph: pairs above it get weight 1, the others --eps.",
        ),
    ] = None,
    eps: Annotated[
        float | None,
        typer.Option(
            "--eps",
            min=0.0,
            max=1.0,
            rich_help_panel=_PANEL,
            show_default=_defaults("eps"),
            help="Weight of the patch graph's dissimilar pairs.",
        ),
    ] = None,
    k_patches: Annotated[
        int | None,
        typer.Option(
            "--k-patches",
            min=1,
            rich_help_panel=_PANEL,
            show_default=_defaults("k_patches"),
            help="LOST: lowest-degree patches the seed may expand over.",
        ),
    ] = None,
    max_objects: Annotated[
        int | None,
        typer.Option(
            "--max-objects",
            min=1,
            max=255,
            rich_help_panel=_PANEL,
            show_default=_defaults("max_objects"),
            help="MaskCut: cuts per image, so the most objects one instance mask holds.",
        ),
    ] = None,
    max_iou: Annotated[
        float | None,
        typer.Option(
            "--max-iou",
            min=0.0,
            max=1.0,
            rich_help_panel=_PANEL,
            show_default=_defaults("max_iou"),
            help="MaskCut: drop a new mask whose IoU with the previous one is higher.",
        ),
    ] = None,
    min_fraction: Annotated[
        float | None,
        typer.Option(
            "--min-fraction",
            min=0.0,
            max=1.0,
            rich_help_panel=_PANEL,
            show_default=_defaults("min_fraction"),
            help="MaskCut: drop a mask covering at most this fraction of the patch grid.",
        ),
    ] = None,
    orientation: Annotated[
        Orientation | None,
        typer.Option(
            "--orientation",
            rich_help_panel=_PANEL,
            show_default=_defaults("orientation"),
            help="MaskCut: which side of the cut is the object. official: CutLER's rule, which tests the corners "
            "only under one eigenvector sign (with --eigensolver exact that sign is LAPACK's, exactly as in the "
            "official code; the fast solver makes the largest-|v| entry positive, and under that sign official "
            "equals symmetric). symmetric: the side touching >= 3 grid corners is background whatever the sign.",
        ),
    ] = None,
    eigensolver: Annotated[
        Eigensolver | None,
        typer.Option(
            "--eigensolver",
            rich_help_panel=_PANEL,
            show_default=_defaults("eigensolver"),
            help="TokenCut, MaskCut: exact = the official dense generalised eigh on the CPU (O(N^3): slow on large "
            "grids), with DINO's explicit attention, for parity with the official code; fast = batched Lanczos on "
            "the device. They agree up to sign and ~1e-10 except when the 2nd and 3rd eigenvalues (nearly) "
            "coincide, where the eigenvector is ill-defined, or when an entry sits on the partition threshold.",
        ),
    ] = None,
    geometry: Annotated[
        Geometry | None,
        typer.Option(
            "--geometry",
            rich_help_panel=_PANEL,
            show_default=_defaults("geometry"),
            help="How an image meets the patch grid. pad: the official CorLoc code, full resolution, zero-padded "
            "to a patch multiple (the mask's box equals the official box). resize: TokenCut's saliency code, "
            "resized to a patch multiple and the mask resized back. fixed: MaskCut's --fixed-size square.",
        ),
    ] = None,
    fixed_size: Annotated[
        int | None,
        typer.Option(
            "--fixed-size",
            min=8,
            rich_help_panel=_PANEL,
            show_default=_defaults("fixed_size"),
            help="Side of the square images are resized to with --geometry fixed.",
        ),
    ] = None,
) -> None:
    """Run a segmenter (a checkpoint, or a training-free method) on images and write one mask PNG per image
    (same relative path, .png)."""
    from ..inference import predict_files
    from ..prediction import PredictRequest, build_predictor, plan_prediction
    from ..runtime import close_shard
    from .console import Failures, console, notice, progress_bar
    from .outputs import flag

    options: dict[str, Any] = {"backbone": backbone, "tau": tau, "eps": eps, "k_patches": k_patches}
    options |= {"max_objects": max_objects, "max_iou": max_iou, "min_fraction": min_fraction}
    options |= {"orientation": orientation, "eigensolver": eigensolver, "geometry": geometry, "fixed_size": fixed_size}
    request = PredictRequest(
        method=method, weights=weights, options=options, size=size, max_size=max_size, branch=branch,
        compile=compile, precision=precision, device=device, binary=binary, threshold=threshold,
        refine=refine, refine_output=refine_output, overwrite=overwrite,
    )  # fmt: skip
    plan = plan_prediction(request, inputs, out, root=root, null=null, shard=shard, spell=flag)
    sh, dev, listing = plan.shard, plan.device, plan.listing
    quiet = quiet or not sh.shows_progress  # under torchrun, one progress bar and summary: rank 0's
    if device == "auto" and dev.type == "cpu" and not quiet:
        notice("no CUDA device found; running on CPU")
    if plan.precision != precision and not quiet:
        notice(f"--precision {precision} applies on GPU only; CPU runs fp32")
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
            + (f" {plan.precision}" if dev.type == "cuda" else "")
            + (f" · {sh.world} processes" if sh.world > 1 else "")
        )
    close_shard(sh)
    if summary.failed or listing.problems:
        raise typer.Exit(1)
