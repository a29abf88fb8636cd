"""Class-agnostic detection AP with pycocotools (MOVE Table 4 protocol): every GT category is
collapsed into one, crowd regions stay crowd, every prediction becomes that category."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError, UsageError
from ..io.labels import CocoFile, DetectorResults, LabelFile, read_label_file

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")  # COCOeval.stats order


@dataclass
class DetectionResult:
    AP: float = 0.0
    AP50: float = 0.0
    AP75: float = 0.0
    APs: float = 0.0
    APm: float = 0.0
    APl: float = 0.0
    AR1: float = 0.0
    AR10: float = 0.0
    AR100: float = 0.0
    images: int = 0
    detections: int = 0

    @property
    def title(self) -> str:
        return "class-agnostic detection"

    def columns(self) -> dict[str, str]:
        d = self.to_dict()
        return {
            **{k: f"{100 * d[k]:.2f}" for k in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100")},
            "detections": str(self.detections),
        }

    def to_dict(self) -> dict:
        return asdict(self)


def class_agnostic_gt(data: dict) -> dict:
    data = copy.deepcopy(data)
    for a in data["annotations"]:
        a["category_id"] = 1
    data["categories"] = [{"id": 1, "name": "object", "supercategory": "object"}]
    return data


def predictions_as_results(pred: LabelFile, gt: dict) -> list[dict]:
    """Detector results as they are; an `unseg boxes` COCO file matched to GT images by file name
    (its own ids are its own)."""
    if isinstance(pred, DetectorResults):
        results = [dict(r) for r in pred.results]
    elif isinstance(pred, CocoFile):
        gt_ids = {os.path.basename(i["file_name"]): i["id"] for i in gt["images"]}
        own = {i["id"]: os.path.basename(i["file_name"]) for i in pred.data["images"]}
        results = []
        for a in pred.data["annotations"]:
            name = own.get(a["image_id"])
            if name in gt_ids:
                results.append({"image_id": gt_ids[name], "bbox": a["bbox"], "score": a.get("score", 1.0)})
    else:
        raise UsageError(
            f"{pred.path}: predictions must be detector results (a JSON list) or an `unseg boxes` "
            "COCO file, not JSON lines"
        )
    for r in results:
        r["category_id"] = 1
    return results


def evaluate_detection(gt_file: str | Path, pred_file: str | Path) -> DetectionResult:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    try:
        with open(gt_file) as f:
            gt_data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {gt_file}: {e}") from None
    results = predictions_as_results(read_label_file(str(pred_file)), gt_data)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints; stdout is for data
        gt = COCO()
        gt.dataset = class_agnostic_gt(gt_data)
        gt.createIndex()
        if not results:
            return DetectionResult(images=len(gt_data["images"]), detections=0)
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {k: float(ev.stats[i]) for i, k in enumerate(STAT_NAMES)}
    return DetectionResult(**stats, images=len(gt_data["images"]), detections=len(results))
