"""`unseg bench`: every method × backbone × benchmark under a data folder, beside the published numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..methods import predict_methods
from .options import BatchSizeOpt, DeviceOpt, QuietOpt, WorkersOpt, _check_shard

EXAMPLES = """
[bold]Examples[/bold]

  unseg bench --data ~/datasets --methods tokencut,lost,maskcut --out bench/

  unseg bench --data ~/datasets --methods tokencut --backbones dino-vits16,dino-vits8-300ep --out bench/

  unseg bench --data ~/datasets --weights move=weights/move-dino-vits8.pt --weights sempart=runs/sp/last.pt --out bench/

  unseg bench --data ~/datasets --pred mytool=path/to/masks/ --out bench/   # masks/<benchmark>/ in the table

  unseg bench --data ~/datasets --methods tokencut --limit 200 --out bench/  # a quick look; re-runs add, never redo
"""


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """NAME=VALUE options -> {NAME: VALUE}; a malformed or repeated NAME is a usage error."""
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, value = v.partition("=")
        if not sep or not name or not value:
            raise typer.BadParameter(f"'{v}' is not NAME=VALUE", param_hint=flag)
        if name in out:
            raise typer.BadParameter(f"{name} given twice", param_hint=flag)
        out[name] = value
    return out


def _method_options(values: list[str] | None) -> dict[str, dict[str, str]]:
    """METHOD.NAME=VALUE options -> {METHOD: {NAME: VALUE}} (NAME as the flag says it: max-objects or max_objects)."""
    out: dict[str, dict[str, str]] = {}
    for key, value in _pairs(values, "--option").items():
        method, dot, name = key.partition(".")
        if not dot or not method or not name:
            raise typer.BadParameter(f"'{key}' is not METHOD.NAME", param_hint="--option")
        out.setdefault(method, {})[name.replace("-", "_")] = value
    return out


def bench(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            metavar="DIR",
            help="Folder holding the benchmarks in their usual layouts: VOCdevkit/VOC2007, VOCdevkit/VOC2012, "
            "COCO/ (train2014, val2017, annotations/, coco_20k_filenames.txt), ECSSD/, DUTS-TE/, DUT-OMRON/.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="DIR", help="results.md, results.json, cells/, logs/ and masks/ go here."),
    ],
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            metavar=",".join(predict_methods()),
            show_default="every method run on a backbone (the training-free ones, FOUND), plus the --weights runs",
            help="Methods of the method table (move: a checkpoint, see --weights).",
        ),
    ] = None,
    backbones: Annotated[
        str | None,
        typer.Option(
            "--backbones",
            metavar="NAME,...",
            show_default="each method's own",
            help="Backbones for the training-free methods (known names or files); one row each.",
        ),
    ] = None,
    weights: Annotated[
        list[str] | None,
        typer.Option(
            "--weights",
            metavar="NAME=PATH",
            help="A checkpoint run named NAME (any family: MOVE, Sempart, self-trained); PATH a file or a known "
            "name. Repeat for several. NAME move or sempart is compared with that paper.",
        ),
    ] = None,
    pred: Annotated[
        list[str] | None,
        typer.Option(
            "--pred",
            metavar="NAME=DIR",
            help="Another tool's predictions: DIR/<benchmark>/ (mask PNGs) or DIR/<benchmark>.json (CorLoc box "
            "file), e.g. DIR/voc07/, DIR/ecssd/. Repeat for several.",
        ),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            metavar="METHOD.NAME=VALUE",
            help="A training-free method's option other than its official default (the flags of `unseg predict "
            "--method METHOD`, e.g. maskcut.max-objects=1). Repeat for several.",
        ),
    ] = None,
    datasets: Annotated[
        str | None,
        typer.Option(
            "--datasets",
            metavar="voc07,voc12,coco20k,ecssd,duts-te,dut-omron,coco-val2017",
            show_default="every one found",
            help="Only these benchmarks.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N images of each benchmark (a quick look).")
    ] = None,
    bilateral: Annotated[
        bool,
        typer.Option(
            "--bilateral/--no-bilateral",
            help="Also the +Bilateral rows (saliency, soft-mask methods), as MOVE Table 1 and TokenCut report.",
        ),
    ] = True,
    device: DeviceOpt = "auto",
    batch_size: BatchSizeOpt = 1,
    workers: WorkersOpt = 0,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            callback=_check_shard,
            help="Make only shard I of N (0-based) of every benchmark's masks and score nothing (e.g. a Slurm array "
            "task); then run without --shard to score. Under torchrun each rank makes its share and rank 0 scores.",
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Benchmark methods on the standard datasets (CorLoc, saliency, class-agnostic AP) beside the published
    numbers.

    Each cell runs through the same library calls as `unseg predict`, `unseg refine`, `unseg boxes`,
    `unseg corloc` and `unseg eval`; masks and scores are cached by settings, so a re-run computes nothing new
    and a larger --limit predicts only the missing images. Nothing is downloaded: missing datasets are listed
    with where to get them."""
    from ..pipelines.bench import BenchRequest, run_bench
    from .console import Failures, console, notice

    weight_runs = _pairs(weights, "--weights")
    named = _names(methods)
    if methods is None:  # the training-free methods, unless only checkpoints or external masks were asked for
        named = () if (weight_runs or pred) else tuple(predict_methods()[1:])
    request = BenchRequest(
        data=str(data), out=str(out), methods=named, backbones=_names(backbones), weights=weight_runs,
        preds=_pairs(pred, "--pred"), options=_method_options(option), datasets=_names(datasets), refine=bilateral,
        limit=limit, device=device, batch_size=batch_size, workers=workers, shard=shard,
    )  # fmt: skip
    failed = Failures()

    def on_cell(record: dict, computed: bool) -> None:
        if quiet:
            return
        m = record["metrics"]
        if record["protocol"] == "corloc":
            score = f"CorLoc {m['corloc']:.2f}"
        elif record["protocol"] == "detection":
            mask = "–" if m["mask_AP"] is None else f"{100 * m['mask_AP']:.1f}"
            score = f"box AP {100 * m['box_AP']:.1f} AP50 {100 * m['box_AP50']:.1f} · mask AP {mask}"
        else:
            score = f"Acc {m['accuracy']:.3f} IoU {m['iou']:.3f} maxFβ {m['max_fbeta']:.3f}"
        what = " · ".join(x for x in (record["benchmark"], record["method"], record["backbone"], record["refine"]) if x)
        console.print(f"{what}: {score}" + ("" if computed else " (cached)"))

    result = run_bench(request, on_cell=on_cell, on_error=failed)
    if not quiet:
        for spec in result.missing:
            notice(f"{spec.title} not found under {data}: {spec.how}")
    if result.results_md is None:  # a shard's share of the masks: scored by a run without --shard
        if not quiet:
            console.print(f"predicted {result.predicted} masks · failed {result.failed}")
        if shard is not None and not quiet:
            notice("scores come from a run without --shard once every shard is done")
        raise typer.Exit(1 if result.failed else 0)
    if not quiet:
        console.print(
            f"cells {len(result.cells)} · computed {result.computed} · cached {len(result.cells) - result.computed}"
            f" · failed {result.failed} · table {result.results_md}"
        )
    if result.failed:
        raise typer.Exit(1)
