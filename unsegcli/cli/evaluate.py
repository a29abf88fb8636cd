"""`unseg corloc` and `unseg eval saliency|detection`: the paper's evaluations."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Optional

import typer

from .app import app
from .console import Failures, console, show_result

eval_app = typer.Typer(no_args_is_help=True, help="Saliency (Acc/IoU/maxFβ) and class-agnostic detection (AP).")
app.add_typer(eval_app, name="eval")

DATASETS = {"voc07": ("voc", "2007"), "voc12": ("voc", "2012"), "voc": ("voc", None), "coco20k": ("coco", None),
            "coco": ("coco", None)}
COCO20K_HINT = ("COCO20k is the 19,817 train2014 images listed in LOST's datasets/coco_20k_filenames.txt "
                "(github.com/valeoai/LOST); pass that file with --list")

CORLOC_EXAMPLES = """
[bold]Examples[/bold]

  unseg corloc voc07 --root ~/data/VOC2007 --pred masks/

  unseg corloc voc12 --root ~/data/VOC2012 --pred pseudo.json

  unseg corloc coco20k --root ~/data/COCO --list coco_20k_filenames.txt --pred coco_instances_results.json

  unseg corloc voc --root my_voc_style_set --split val --pred masks/ --json -
"""


@app.command(epilog=CORLOC_EXAMPLES)
def corloc(
    dataset: str = typer.Argument(..., help="voc07 | voc12 | coco20k | voc (any VOC-style folder) | coco (any instances JSON)."),
    pred: str = typer.Option(..., "--pred", help="A masks folder, an `unseg boxes` file (coco or jsonl), or a detector's "
                             "coco_instances_results.json."),
    root: Optional[str] = typer.Option(None, "--root", help="VOCdevkit/, VOCdevkit/VOC20xx/ or a VOC-style folder; for "
                                       "COCO the folder holding annotations/."),
    split: str = typer.Option("trainval", "--split", help="VOC ImageSets/Main/<split>.txt (CorLoc: trainval)."),
    ann: Optional[str] = typer.Option(None, "--ann", help="COCO instances JSON [coco20k default: ROOT/annotations/instances_train2014.json]."),
    image_list: Optional[str] = typer.Option(None, "--list", help="COCO image list (coco_20k_filenames.txt for coco20k)."),
    no_hard: bool = typer.Option(False, "--no-hard", help="VOC: ignore difficult/truncated objects and skip images left empty (LOST)."),
    pick: str = typer.Option("auto", "--pick", help="From box files: 'largest' box or highest 'score' [auto: score for "
                             "detector results, largest for `unseg boxes` files]."),
    threshold: float = typer.Option(0.5, "--threshold", help="Mask binarisation (masks folder)."),
    connectivity: int = typer.Option(8, "--connectivity", help="Components of masks: 8 or 4."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the result as JSON to FILE, or '-' for stdout."),
    per_image: Optional[str] = typer.Option(None, "--per-image", help="CSV of image, best IoU, hit (FILE or '-')."),
    workers: int = typer.Option(min(4, os.cpu_count() or 1), "--workers", "-j", min=0, help="Processes reading masks."),
) -> None:
    """CorLoc (single-object discovery) by the LOST / TokenCut protocol."""
    from ..errors import UsageError
    from ..evaluation.corloc import corloc as compute
    from ..evaluation.predictions import from_file, from_masks
    from ..io.datasets import read_coco, read_voc

    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset '{dataset}'", f"use one of {', '.join(DATASETS)}")
    if pick not in ("auto", "largest", "score"):
        raise UsageError("--pick must be 'auto', 'largest' or 'score'")
    kind, year = DATASETS[dataset]
    if kind == "voc":
        if root is None:
            raise UsageError("--root is required for VOC datasets")
        gt = read_voc(root, split, year)
    else:
        if no_hard:
            raise UsageError("--no-hard applies to VOC only (COCO crowd boxes are always skipped)")
        if dataset == "coco20k" and image_list is None:
            raise UsageError("coco20k needs --list coco_20k_filenames.txt", COCO20K_HINT)
        if ann is None:
            if root is None:
                raise UsageError("--ann (or --root holding annotations/instances_train2014.json) is required")
            ann = str(Path(root).expanduser() / "annotations" / "instances_train2014.json")
        gt = read_coco(ann, image_list)
    failed = Failures()
    if os.path.isdir(pred):
        boxes = from_masks(pred, gt, threshold, connectivity, workers, failed)
    elif pred == "-" or os.path.isfile(pred):
        boxes = from_file(pred, gt, pick)
    else:
        raise UsageError(f"--pred not found: {pred}")
    res = compute(gt, boxes, dataset, no_hard)
    columns = {"CorLoc %": f"{res.corloc:.2f}", "hits": str(res.hits), "images": str(res.images),
               "missing predictions": str(res.missing)}
    if no_hard:
        columns["skipped (all hard)"] = str(res.skipped_hard)
    show_result(f"CorLoc · {dataset}" + (" · no hard" if no_hard else ""), columns, json_out, res.to_dict())
    if per_image:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image", "best_iou", "hit"])
        w.writerows((i, f"{iou:.6f}", int(hit)) for i, iou, hit in res.per_image)
        from ..io.files import write_output

        write_output(per_image, buf.getvalue().encode())
    if failed:
        raise typer.Exit(1)


@eval_app.command(epilog="[bold]Examples[/bold]\n\n  unseg eval saliency --gt DUTS-TE/DUTS-TE-Mask --pred masks/\n\n"
                  "  unseg eval saliency --gt ECSSD/gt --pred masks/ --missing skip --json - | jq .max_fbeta")
def saliency(
    gt: str = typer.Option(..., "--gt", help="Folder of GT mask PNGs (recursive)."),
    pred: str = typer.Option(..., "--pred", help="Folder of predicted mask PNGs, matched by relative path, then stem."),
    threshold: float = typer.Option(0.5, "--threshold", help="Threshold for IoU and accuracy (official: 0.5)."),
    missing: str = typer.Option("empty", "--missing", help="A GT without prediction: 'empty' (scored as an empty mask) or 'skip'."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the result as JSON to FILE, or '-' for stdout."),
    workers: int = typer.Option(min(4, os.cpu_count() or 1), "--workers", "-j", min=0, help="Processes reading masks."),
) -> None:
    """Saliency Acc / IoU / maxFβ as MOVE's segmentation_eval.py."""
    from ..errors import UsageError
    from ..evaluation.saliency import evaluate_saliency

    if missing not in ("empty", "skip"):
        raise UsageError("--missing must be 'empty' or 'skip'")
    for d in (gt, pred):
        if not os.path.isdir(d):
            raise UsageError(f"not a folder: {d}")
    failed = Failures()
    res = evaluate_saliency(gt, pred, threshold, missing, workers, failed)
    if res.images == 0 and not failed:
        raise UsageError(f"no GT PNGs with predictions under {gt}")
    if res.missing:
        console.print(f"[yellow]note[/yellow] {res.missing} GT masks have no prediction: "
                      + ("skipped" if missing == "skip" else "scored as empty masks"))
    show_result("saliency", {"images": str(res.images), "Acc": f"{res.accuracy:.4f}", "IoU": f"{res.iou:.4f}",
                             "maxFβ": f"{res.max_fbeta:.4f}", "maxFβ per-image": f"{res.max_fbeta_per_image:.4f}",
                             "missing": str(res.missing)}, json_out, res.to_dict())
    if failed:
        raise typer.Exit(1)


@eval_app.command(epilog="[bold]Examples[/bold]\n\n  unseg eval detection --gt instances_val2017.json --pred coco_instances_results.json\n\n"
                  "  unseg eval detection --gt instances_val2017.json --pred pseudo.json --json metrics.json")
def detection(
    gt: str = typer.Option(..., "--gt", help="COCO instances JSON (GT)."),
    pred: str = typer.Option(..., "--pred", help="Detector results (JSON list) or an `unseg boxes` COCO file."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the result as JSON to FILE, or '-' for stdout."),
) -> None:
    """Class-agnostic AP / AR with pycocotools (MOVE Table 4)."""
    from ..errors import UsageError
    from ..evaluation.detection import evaluate_detection

    for f in (gt, pred):
        if not os.path.isfile(f):
            raise UsageError(f"file not found: {f}")
    res = evaluate_detection(gt, pred)
    columns = {k: f"{100 * res[k]:.2f}" for k in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100")}
    show_result("class-agnostic detection", {**columns, "detections": str(res["detections"])}, json_out, res)
