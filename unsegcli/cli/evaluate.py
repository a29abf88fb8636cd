"""`unseg corloc` and `unseg eval saliency|detection`: the paper's evaluations."""

from __future__ import annotations

import os
from typing import Annotated, Literal

import typer

from ..config import DEFAULT_WORKERS
from ..evaluation.results import EvalResult
from ..io.files import write_output
from .console import Failures, notice, show_result
from .options import ConnectivityOpt, DatasetArg, JsonOpt, MissingOpt, PickOpt, ThresholdOpt, UnsegCommand, WorkersOpt

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

  unseg eval detection --gt instances_val2017.json --pred pseudo.json --iou-type segm   # mask AP
"""


def report(res: EvalResult, json_out: str | None) -> None:
    """Any evaluation result: a one-row table on stderr, and its JSON payload when asked."""
    show_result(res.title, res.columns(), json_out, res.to_dict())


def check_outputs(**outputs: str | None) -> None:
    """Every output location, before any input is read: one usage error (exit 2) for a folder where
    a file goes, a path under a file, a read-only folder, one file or '-' (stdout) asked twice."""
    from ..errors import UsageError
    from ..io.files import check_output_file

    given = {flag: path for flag, path in outputs.items() if path is not None}
    if list(given.values()).count("-") > 1:
        raise UsageError(f"only one of {', '.join(given)} can be '-' (stdout)")
    files = [os.path.abspath(p) for p in given.values() if p != "-"]
    if len(set(files)) < len(files):
        raise UsageError(f"{', '.join(given)} name the same file: one would overwrite the other")
    for flag, path in given.items():
        check_output_file(path, flag)


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
    """CorLoc (single-object discovery) by the LOST / TokenCut protocol.

    An image without a prediction is a miss (the protocol), counted as 'missing'; an unreadable
    prediction is named, scored as a miss, and makes the exit code 1. An unreadable VOC annotation is
    named and its image left out of the score (it cannot be judged), also with exit 1."""
    from ..errors import InputError, UsageError
    from ..evaluation.corloc import evaluate_corloc
    from ..io.datasets import COCO20K_HINT, DATASETS, load_gt

    check_outputs(**{"--json": json_out, "--per-image": per_image})
    kind, _ = DATASETS[dataset]
    if kind == "voc" and root is None:
        raise UsageError("--root is required for VOC datasets")
    if root is not None and not os.path.isdir(root):
        raise UsageError(f"--root must be a folder: {root}")
    if kind == "coco" and no_hard:
        raise UsageError("--no-hard applies to VOC only (COCO crowd boxes are always skipped)")
    if dataset == "coco20k" and image_list is None:
        raise UsageError("coco20k needs --list coco_20k_filenames.txt", COCO20K_HINT)
    if kind == "coco" and ann is None and root is None:
        raise UsageError("--ann (or --root holding annotations/instances_train2014.json) is required")
    if pred != "-" and not os.path.exists(pred):
        raise UsageError(f"--pred not found: {pred}")
    failed = Failures()
    gt = load_gt(dataset, root, split, ann, image_list, on_error=failed)
    if not gt:
        raise InputError("no image could be evaluated: every annotation of the split failed")
    res = evaluate_corloc(gt, pred, dataset, no_hard, pick, threshold, connectivity, workers, on_error=failed)
    res.failed = len(failed)
    if res.images == 0:
        raise InputError("no image to evaluate" + (" (every image is all hard with --no-hard)" if no_hard else ""))
    if res.missing:
        notice(
            f"{res.missing} of {res.images} images have no predicted box (no prediction, an empty mask or an "
            "unreadable file): scored as misses, as the CorLoc protocol does"
        )
    report(res, json_out)
    if per_image:
        write_output(per_image, res.per_image_csv())
    if failed:
        raise typer.Exit(1)


@eval_app.command(epilog=SALIENCY_EXAMPLES, cls=UnsegCommand)
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
    """Saliency Acc / IoU / maxFβ as MOVE's segmentation_eval.py.

    An unreadable GT mask is named and left out; an unreadable prediction is named and treated as a
    missing one (--missing). Either makes the exit code 1."""
    from ..errors import InputError, UsageError
    from ..evaluation.saliency import evaluate_saliency

    check_outputs(**{"--json": json_out, "--per-image": per_image})
    for flag, d in (("--gt", gt), ("--pred", pred)):
        if not os.path.isdir(d):
            raise UsageError(f"{flag} must be a folder: {d}")
    failed = Failures()
    res = evaluate_saliency(gt, pred, threshold, missing, workers, on_error=failed)
    res.failed = len(failed)
    if res.images == 0:
        if failed:
            raise InputError("no image could be scored")
        raise UsageError(f"no GT PNGs with predictions under {gt}")
    if res.missing:
        notice(
            f"{res.missing} GT masks have no prediction: "
            + ("skipped" if missing == "skip" else "scored as empty masks")
        )
    report(res, json_out)
    if per_image:
        write_output(per_image, res.per_image_csv())
    if failed:
        raise typer.Exit(1)


@eval_app.command(epilog=DETECTION_EXAMPLES, cls=UnsegCommand)
def detection(
    gt: Annotated[str, typer.Option("--gt", metavar="FILE", help="COCO instances JSON (GT), or '-' for stdin.")],
    pred: Annotated[
        str,
        typer.Option(
            "--pred",
            metavar="FILE",
            help="Detector results (JSON list) or an `unseg boxes` COCO file, or '-' for stdin.",
        ),
    ],
    iou_type: Annotated[
        Literal["bbox", "segm"],
        typer.Option(
            "--iou-type",
            help="bbox: box AP (MOVE Table 4); segm: mask AP (CutLER's APmask), from the predictions' "
            "segmentation against the GT's (`unseg boxes --format coco` writes one).",
        ),
    ] = "bbox",
    json_out: JsonOpt = None,
) -> None:
    """Class-agnostic AP / AR with pycocotools (MOVE Table 4; mask AP with --iou-type segm)."""
    from ..errors import UsageError
    from ..evaluation.detection import evaluate_detection

    check_outputs(**{"--json": json_out})
    if gt == "-" and pred == "-":
        raise UsageError("only one of --gt and --pred can be '-' (stdin)")
    for flag, f in (("--gt", gt), ("--pred", pred)):
        if f != "-" and not os.path.isfile(f):
            raise UsageError(
                f"{flag} " + ("must be a file, not a folder" if os.path.isdir(f) else "not found") + f": {f}"
            )
    res = evaluate_detection(gt, pred, iou_type)
    if res.unmatched_images:
        notice(f"{res.unmatched_images} images of {pred} are not in the ground truth; left out")
    report(res, json_out)
