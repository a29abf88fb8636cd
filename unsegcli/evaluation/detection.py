"""Class-agnostic detection AP with pycocotools (MOVE Table 4 protocol): every GT category is
collapsed into one, crowd regions stay crowd, every prediction becomes that category. Box AP (``iou_type
"bbox"``) or mask AP (``"segm"``: CutLER's APmask, the predictions' RLE or polygons against the GT's)."""

from __future__ import annotations

import contextlib
import copy
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError, UsageError
from ..io.labels import CocoFile, DetectorResults, LabelFile, read_coco_document, read_label_file

IouType = Literal["bbox", "segm"]  # pycocotools COCOeval's iouType: boxes, or masks
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
    unmatched_images: int = 0  # images of an `unseg boxes` COCO prediction file that the GT does not have
    iou_type: str = "bbox"  # what was matched: boxes, or masks ("segm")

    @property
    def title(self) -> str:
        return "class-agnostic detection" + (" (mask AP)" if self.iou_type == "segm" else "")

    def columns(self) -> dict[str, str]:
        d = self.to_dict()
        return {
            **{k: f"{100 * d[k]:.2f}" for k in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100")},
            "detections": str(self.detections),
        }

    def to_dict(self) -> dict:
        return asdict(self)


def class_agnostic_gt(data: dict, iou_type: IouType = "bbox", path: str | Path = "") -> dict:
    """The GT with one category; mask AP needs every annotation's segmentation (InputError naming the file)."""
    if iou_type == "segm":
        bare = [a.get("id") for a in data["annotations"] if not a.get("segmentation")]
        if bare:
            raise InputError(
                f"{path}: {len(bare)} annotations have no segmentation (e.g. id {bare[0]!r}); mask AP needs "
                "masks in the ground truth (box AP does not)"
            )
    data = copy.deepcopy(data)
    for a in data["annotations"]:
        a["category_id"] = 1
        if "area" not in a:  # box-only GT: COCOeval's area ranges need one; the box's is the only one there is
            a["area"] = a["bbox"][2] * a["bbox"][3]
    data["categories"] = [{"id": 1, "name": "object", "supercategory": "object"}]
    return data


def predictions_as_results(pred: LabelFile, gt: dict, iou_type: IouType = "bbox") -> tuple[list[dict], int]:
    """Detector results as they are; an `unseg boxes` COCO file matched to GT images by file name
    (its own ids are its own). Returns (results, images of a COCO prediction file not in the GT).
    Detections on image ids the GT does not have are an InputError: the files do not belong together;
    so is a prediction without the segmentation mask AP ranks."""
    unmatched = 0
    if isinstance(pred, DetectorResults):
        known = {i["id"] for i in gt["images"]}
        results = [dict(r) for r in pred.results]
        unscored = [n for n, r in enumerate(results) if "score" not in r]
        if unscored:  # AP ranks detections by score; inventing one would make the number arbitrary
            raise InputError(f"{pred.path}: {len(unscored)} detections have no score (e.g. item {unscored[0]})")
        stray = [r["image_id"] for r in results if r["image_id"] not in known]
        if stray:
            raise InputError(
                f"{pred.path}: {len(stray)} detections are on image ids that the ground truth does not have "
                f"(e.g. {stray[0]!r}); are these results for another annotation file?"
            )
    elif isinstance(pred, CocoFile):
        gt_ids = {os.path.basename(i["file_name"]): i["id"] for i in gt["images"]}
        own = {i["id"]: os.path.basename(i["file_name"]) for i in pred.data["images"]}
        unmatched = sum(name not in gt_ids for name in own.values())
        results = []
        for a in pred.data["annotations"]:
            name = own.get(a["image_id"])
            if name in gt_ids:
                r = {"image_id": gt_ids[name], "bbox": a["bbox"], "score": a.get("score", 1.0)}
                if "segmentation" in a:
                    r["segmentation"] = a["segmentation"]
                results.append(r)
    else:
        raise UsageError(
            f"{pred.path}: predictions must be detector results (a JSON list) or an `unseg boxes` "
            "COCO file, not JSON lines"
        )
    if iou_type == "segm":
        bare = [n for n, r in enumerate(results) if not r.get("segmentation")]
        if bare:  # `unseg boxes --format coco` writes one; boxes alone cannot give mask AP
            raise InputError(f"{pred.path}: {len(bare)} detections have no segmentation (e.g. item {bare[0]})")
        results = _masks_only(results, gt)
    for r in results:
        r["category_id"] = 1
    return results, unmatched


def _masks_only(results: list[dict], gt: dict) -> list[dict]:
    """Mask-AP results as detectron2's COCO evaluator gives them to pycocotools: without ``bbox`` (with one,
    ``loadRes`` takes the box area as the instance's area, which moves detections between the small / medium /
    large ranges: detectron2 evaluation/coco_evaluation.py, ``_evaluate_predictions_on_coco``), and polygons as
    RLE (``loadRes`` computes the mask area from RLE only)."""
    from pycocotools import mask as mask_utils

    sizes = {i["id"]: (i.get("height"), i.get("width")) for i in gt["images"]}
    out = []
    for r in results:
        r = {k: v for k, v in r.items() if k != "bbox"}
        seg = r["segmentation"]
        if isinstance(seg, list):
            h, w = sizes[r["image_id"]]
            if not h or not w:
                raise InputError(f"image id {r['image_id']!r} of the ground truth has no height/width for polygons")
            r["segmentation"] = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        out.append(r)
    return out


def evaluate_detection(gt_file: str | Path, pred_file: str | Path, iou_type: IouType = "bbox") -> DetectionResult:
    """Class-agnostic COCO AP of ``pred_file`` against ``gt_file`` (either may be '-' for stdin), matching
    boxes or, with ``iou_type="segm"``, masks. A file that is not what it should be is an InputError naming it
    and what it lacks."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_data = read_coco_document(str(gt_file))
    if not gt_data["images"]:
        raise InputError(f"{gt_file}: the ground truth holds no images")
    gt_agnostic = class_agnostic_gt(gt_data, iou_type, gt_file)
    results, unmatched = predictions_as_results(read_label_file(str(pred_file)), gt_data, iou_type)
    n_images = len(gt_data["images"])
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints; stdout is for data
            gt = COCO()
            gt.dataset = gt_agnostic
            gt.createIndex()
            if not results:
                return DetectionResult(images=n_images, detections=0, unmatched_images=unmatched, iou_type=iou_type)
            dt = gt.loadRes(results)
            ev = COCOeval(gt, dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    except Exception as e:  # noqa: BLE001 - pycocotools asserts on inputs our checks did not foresee
        raise InputError(
            f"{gt_file} / {pred_file}: pycocotools cannot evaluate these files ({type(e).__name__}: {e})"
        ) from None
    stats = {k: float(ev.stats[i]) for i, k in enumerate(STAT_NAMES)}
    return DetectionResult(
        **stats, images=n_images, detections=len(results), unmatched_images=unmatched, iou_type=iou_type
    )
