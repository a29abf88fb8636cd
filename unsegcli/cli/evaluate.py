"""`unseg corloc` and `unseg eval saliency|detection`: the paper's evaluations."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ..config import DEFAULT_WORKERS
from ..evaluation.results import EvalResult
from ..io.files import write_output
from .console import Failures, console, show_result
from .options import ConnectivityOpt, DatasetArg, JsonOpt, MissingOpt, PickOpt, ThresholdOpt, WorkersOpt

eval_app = typer.Typer(no_args_is_help=True, help="Saliency (Acc/IoU/maxFβ) and class-agnostic detection (AP).")

CORLOC_EXAMPLES = """
[bold]Examples[/bold]

  unseg corloc voc07 --root ~/data/VOC2007 --pred masks/

  unseg corloc voc12 --root ~/data/VOC2012 --pred pseudo.json

  unseg corloc coco20k --root ~/data/COCO --list coco_20k_filenames.txt --pred coco_instances_results.json

  unseg corloc voc --root my_voc_style_set --split val --pred masks/ --json -
"""
SALIENCY_EXAMPLES = """
[bold]Examples[/bold]

  unseg eval saliency --gt DUTS-TE/DUTS-TE-Mask --pred masks/

  unseg eval saliency --gt ECSSD/gt --pred masks/ --missing skip --json - | jq .max_fbeta
"""
DETECTION_EXAMPLES = """
[bold]Examples[/bold]

  unseg eval detection --gt instances_val2017.json --pred coco_instances_results.json

  unseg eval detection --gt instances_val2017.json --pred pseudo.json --json metrics.json
"""


def report(res: EvalResult, json_out: str | None) -> None:
    """Any evaluation result: a one-row table on stderr, and its JSON payload when asked."""
    show_result(res.title, res.columns(), json_out, res.to_dict())


def corloc(
    dataset: DatasetArg,
    pred: Annotated[
        str,
        typer.Option(
            "--pred",
            help="A masks folder, an `unseg boxes` file (coco or jsonl), a detector's "
            "coco_instances_results.json, or '-' for a box file on stdin.",
        ),
    ],
    root: Annotated[
        str | None,
        typer.Option(
            "--root",
            metavar="DIR",
            help="VOCdevkit/, VOCdevkit/VOC20xx/ or a VOC-style folder; for COCO the folder holding annotations/.",
        ),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="VOC ImageSets/Main/<split>.txt (CorLoc: trainval).")
    ] = "trainval",
    ann: Annotated[
        str | None,
        typer.Option(
            "--ann",
            metavar="FILE",
            help="COCO instances JSON \\[coco20k default: ROOT/annotations/instances_train2014.json].",
        ),
    ] = None,
    image_list: Annotated[
        str | None, typer.Option("--list", metavar="FILE", help="COCO image list (coco_20k_filenames.txt for coco20k).")
    ] = None,
    no_hard: Annotated[
        bool,
        typer.Option(
            "--no-hard", metavar="", help="VOC: ignore difficult/truncated objects and skip images left empty (LOST)."
        ),
    ] = False,
    pick: PickOpt = "auto",
    threshold: ThresholdOpt = 0.5,
    connectivity: ConnectivityOpt = 8,
    json_out: JsonOpt = None,
    per_image: Annotated[
        str | None, typer.Option("--per-image", metavar="FILE", help="CSV of image, best IoU, hit (FILE or '-').")
    ] = None,
    workers: WorkersOpt = DEFAULT_WORKERS,
) -> None:
    """CorLoc (single-object discovery) by the LOST / TokenCut protocol."""
    from ..errors import UsageError
    from ..evaluation.corloc import evaluate_corloc
    from ..io.datasets import COCO20K_HINT, DATASETS, load_gt

    kind, _ = DATASETS[dataset]
    if kind == "voc" and root is None:
        raise UsageError("--root is required for VOC datasets")
    if kind == "coco" and no_hard:
        raise UsageError("--no-hard applies to VOC only (COCO crowd boxes are always skipped)")
    if dataset == "coco20k" and image_list is None:
        raise UsageError("coco20k needs --list coco_20k_filenames.txt", COCO20K_HINT)
    if kind == "coco" and ann is None and root is None:
        raise UsageError("--ann (or --root holding annotations/instances_train2014.json) is required")
    gt = load_gt(dataset, root, split, ann, image_list)
    if pred != "-" and not os.path.exists(pred):
        raise UsageError(f"--pred not found: {pred}")
    failed = Failures()
    res = evaluate_corloc(gt, pred, dataset, no_hard, pick, threshold, connectivity, workers, on_error=failed)
    report(res, json_out)
    if per_image:
        write_output(per_image, res.per_image_csv())
    if failed:
        raise typer.Exit(1)


@eval_app.command(epilog=SALIENCY_EXAMPLES)
def saliency(
    gt: Annotated[str, typer.Option("--gt", metavar="DIR", help="Folder of GT mask PNGs (recursive).")],
    pred: Annotated[
        str,
        typer.Option(
            "--pred",
            metavar="DIR",
            help="Folder of predicted mask PNGs, matched by relative path, then by a unique stem.",
        ),
    ],
    threshold: ThresholdOpt = 0.5,
    missing: MissingOpt = "empty",
    json_out: JsonOpt = None,
    per_image: Annotated[
        str | None, typer.Option("--per-image", metavar="FILE", help="CSV of GT image, IoU (FILE or '-').")
    ] = None,
    workers: WorkersOpt = DEFAULT_WORKERS,
) -> None:
    """Saliency Acc / IoU / maxFβ as MOVE's segmentation_eval.py."""
    from ..errors import UsageError
    from ..evaluation.saliency import evaluate_saliency

    for d in (gt, pred):
        if not os.path.isdir(d):
            raise UsageError(f"not a folder: {d}")
    failed = Failures()
    res = evaluate_saliency(gt, pred, threshold, missing, workers, on_error=failed)
    if res.images == 0 and not failed:
        raise UsageError(f"no GT PNGs with predictions under {gt}")
    if res.missing:
        console.print(
            f"[yellow]note[/yellow] {res.missing} GT masks have no prediction: "
            + ("skipped" if missing == "skip" else "scored as empty masks")
        )
    report(res, json_out)
    if per_image:
        write_output(per_image, res.per_image_csv())
    if failed:
        raise typer.Exit(1)


@eval_app.command(epilog=DETECTION_EXAMPLES)
def detection(
    gt: Annotated[str, typer.Option("--gt", metavar="FILE", help="COCO instances JSON (GT).")],
    pred: Annotated[
        str, typer.Option("--pred", metavar="FILE", help="Detector results (JSON list) or an `unseg boxes` COCO file.")
    ],
    json_out: JsonOpt = None,
) -> None:
    """Class-agnostic AP / AR with pycocotools (MOVE Table 4)."""
    from ..errors import UsageError
    from ..evaluation.detection import evaluate_detection

    for f in (gt, pred):
        if not os.path.isfile(f):
            raise UsageError(f"file not found: {f}")
    report(evaluate_detection(gt, pred), json_out)
