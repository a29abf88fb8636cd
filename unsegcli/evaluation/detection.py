"""Class-agnostic detection AP with pycocotools (MOVE Table 4 protocol): every GT category is
collapsed into one, crowd regions stay crowd, every prediction becomes that category."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from pathlib import Path

from ..errors import UsageError

STAT_NAMES = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5, "AR1": 6, "AR10": 7, "AR100": 8}


def class_agnostic_gt(data: dict) -> dict:
    data = copy.deepcopy(data)
    for a in data["annotations"]:
        a["category_id"] = 1
    data["categories"] = [{"id": 1, "name": "object", "supercategory": "object"}]
    return data


def predictions_as_results(pred, gt: dict) -> list[dict]:
    """Detector results (a list) as they are; an `unseg boxes` COCO file matched to GT images by
    file name (its own ids are its own)."""
    if isinstance(pred, list):
        results = [dict(r) for r in pred]
    elif isinstance(pred, dict) and "annotations" in pred:
        gt_ids = {os.path.basename(i["file_name"]): i["id"] for i in gt["images"]}
        own = {i["id"]: os.path.basename(i["file_name"]) for i in pred["images"]}
        results = []
        for a in pred["annotations"]:
            name = own.get(a["image_id"])
            if name in gt_ids:
                results.append({"image_id": gt_ids[name], "bbox": a["bbox"], "score": a.get("score", 1.0)})
    else:
        raise UsageError("predictions must be detector results (a JSON list) or an `unseg boxes` COCO file")
    for r in results:
        r["category_id"] = 1
    return results


def evaluate_detection(gt_file: str | Path, pred_file: str | Path, log: io.TextIOBase | None = None) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with open(gt_file) as f:
        gt_data = json.load(f)
    with open(pred_file) as f:
        pred = json.load(f)
    results = predictions_as_results(pred, gt_data)
    sink = log or io.StringIO()
    with contextlib.redirect_stdout(sink):  # pycocotools prints; stdout is for data
        gt = COCO()
        gt.dataset = class_agnostic_gt(gt_data)
        gt.createIndex()
        if not results:
            return {**{k: 0.0 for k in STAT_NAMES}, "images": len(gt_data["images"]), "detections": 0}
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out = {k: float(ev.stats[i]) for k, i in STAT_NAMES.items()}
    out.update(images=len(gt_data["images"]), detections=len(results))
    return out
