"""Pseudo-label records: COCO (what CutLER / detectron2's register_coco_instances read),
SelfMask's {basename: RLE}, LOST's CAD list-of-dicts, and one JSON line per image.

COCO boxes are XYWH here and only here; everything upstream is XYXY.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

CATEGORY = {"id": 1, "name": "fg", "supercategory": "fg"}


def _jsonable(rle: dict) -> dict:
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_encode(mask: np.ndarray) -> dict:
    """bool HxW -> compressed RLE with counts as str (JSON-serialisable; pycocotools decodes it)."""
    from pycocotools import mask as mask_utils

    return _jsonable(mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8)))


def rle_encode_many(masks: np.ndarray) -> list[dict]:
    """(H, W, N) uint8 Fortran array -> N RLEs in one pycocotools call."""
    from pycocotools import mask as mask_utils

    if masks.shape[2] == 0:
        return []
    return [_jsonable(r) for r in mask_utils.encode(np.asfortranarray(masks, dtype=np.uint8))]


def xyxy_to_xywh(box) -> list[float]:
    x0, y0, x1, y1 = box
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


@dataclass
class ImageLabels:
    """Everything one mask yields, independent of the output format."""

    index: int  # position in the sorted input list: image id = index + 1 (stable across re-runs)
    file_name: str
    width: int
    height: int
    boxes: list[list[float]] = field(default_factory=list)  # XYXY
    areas: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    rles: list[dict] = field(default_factory=list)  # per kept component
    union_rle: dict | None = None  # union of the kept components (SelfMask)


def coco_image(img: ImageLabels) -> dict:
    # key order as COCO's own files: id, file_name, width, height
    return {"id": img.index + 1, "file_name": img.file_name, "width": img.width, "height": img.height}


def coco_annotations(img: ImageLabels, first_id: int) -> list[dict]:
    return [{"id": first_id + k, "image_id": img.index + 1, "category_id": CATEGORY["id"],
             "bbox": xyxy_to_xywh(b), "area": int(a), "iscrowd": 0, "segmentation": rle, "score": float(s)}
            for k, (b, a, s, rle) in enumerate(zip(img.boxes, img.areas, img.scores, img.rles))]


def coco_dataset(images: list[dict], annotations: list[dict]) -> dict:
    return {"info": {"description": "unseg pseudo-labels (MOVE)"}, "images": images,
            "annotations": annotations, "categories": [dict(CATEGORY)]}


def selfmask_entry(img: ImageLabels) -> tuple[str, dict]:
    return os.path.basename(img.file_name), img.union_rle


def lost_cad_record(img: ImageLabels) -> dict:
    return {"file_name": img.file_name, "image_id": os.path.splitext(os.path.basename(img.file_name))[0],
            "height": img.height, "width": img.width,
            "annotations": [{"bbox": [float(v) for v in b], "bbox_mode": 0, "category_id": 0, "iscrowd": 0}
                            for b in img.boxes]}


def lost_cad_dataset(records: list[dict], name: str, dirname: str) -> dict:
    return {"dataset": records, "meta_data": {"name": name, "dirname": dirname, "evaluator_type": "coco",
                                              "thing_classes": ["object"]}}


def jsonl_record(img: ImageLabels) -> dict:
    return {"file_name": img.file_name, "width": img.width, "height": img.height, "boxes": img.boxes,
            "areas": img.areas, "scores": img.scores}
