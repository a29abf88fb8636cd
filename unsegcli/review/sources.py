"""Inputs of `unseg show` -> ``ReviewItem``s: a masks folder, a pseudo-label file in any format
unseg writes (COCO, SelfMask, LOST-CAD, JSON lines) or a detector's results, and GT to compare with.

Only facts are read here (boxes, scores, sizes); images are decoded later, by the report's
workers, and only for the images the report shows.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputError, UsageError
from ..io.datasets import GTImage, coco_id_from_filename, read_coco, read_voc
from .records import ReviewItem

Advance = Callable[[], None]


def _stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


class ImageIndex:
    """Images under a root, found by relative path, by path without extension, by stem, or by the
    number at the end of the stem (COCO ids: COCO_train2014_000000000009.jpg -> 9)."""

    def __init__(self, root: str):
        from ..io.images import IMAGE_EXTENSIONS, scan_inputs

        if not os.path.isdir(root):
            raise UsageError(f"images must be a folder: {root}")
        self.root = root
        self.by_rel: dict[str, str | None] = {}  # None: ambiguous (a.jpg and a.png)
        self.by_stem: dict[str, str | None] = {}  # None: ambiguous stem
        self.by_number: dict[int, str | None] = {}
        self.rel_of: dict[str, str] = {}
        for it in scan_inputs([root], IMAGE_EXTENSIONS, key=lambda rel: rel).items:
            key = os.path.splitext(it.rel)[0]
            self.by_rel[key] = None if key in self.by_rel else it.path
            self.rel_of[it.path] = it.rel
            stem = _stem(it.rel)
            self.by_stem[stem] = None if stem in self.by_stem else it.path
            tail = stem.split("_")[-1]
            if tail.isdigit():
                num = coco_id_from_filename(stem)
                self.by_number[num] = None if num in self.by_number else it.path

    def find(self, file_name: str) -> str | None:
        direct = os.path.join(self.root, file_name)
        if os.path.isfile(direct):
            return direct
        return self.by_rel.get(os.path.splitext(file_name.replace("\\", "/"))[0]) or self.by_stem.get(_stem(file_name))

    def find_id(self, image_id: object) -> str | None:
        s = str(image_id)
        return self.by_stem.get(s) or (self.by_number.get(int(s)) if s.isdigit() else None)


# --- masks folders ---------------------------------------------------------------------------------


def read_mask_any(path: str) -> tuple[np.ndarray, bool]:
    """A mask PNG -> (uint8 HxW, is_instances): palette PNGs are instance label maps (``io/instances.py``),
    anything else a soft/binary mask."""
    from ..io.instances import decode_instances, is_instance_png
    from ..io.masks import read_mask

    if is_instance_png(path):
        return decode_instances(path), True
    return read_mask(path), False


def _mask_facts(
    args: tuple[str, float, int, float, bool],
) -> tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray]:
    """One mask -> ((width, height), boxes, scores, areas). Raises InputError for unreadable files."""
    path, threshold, connectivity, min_area, multi = args
    from ..labels.components import extract_boxes, instance_boxes

    mask, inst = read_mask_any(path)
    h, w = mask.shape
    if inst:  # every object, as the method decided them; instance masks carry no score
        objs, _ = instance_boxes(mask)
        boxes = np.asarray([o.xyxy for o in objs], np.float64).reshape(-1, 4)
        areas = np.asarray([o.area for o in objs], np.float64)
        scores = np.full(len(objs), np.nan)
    else:
        comps, _ = extract_boxes(mask, threshold, connectivity, min_area, multi)
        boxes = np.asarray([c.xyxy for c in comps], np.float64).reshape(-1, 4)
        areas = np.asarray([c.area for c in comps], np.float64)
        scores = np.asarray([c.score for c in comps], np.float64)
    return (w, h), boxes, scores, areas


def from_masks(
    folder: str,
    images: str | None,
    threshold: float = 0.5,
    connectivity: int = 8,
    min_area: float = 0.01,
    multi: bool = False,
    workers: int = 0,
    on_error: Callable[[str], None] = lambda m: None,
    on_start: Callable[[int], Advance] = lambda n: lambda: None,
) -> list[ReviewItem]:
    """Every mask PNG under ``folder`` (matched to ``images`` by relative path without extension),
    with the boxes `unseg boxes` would write for the same options. Masks that cannot be read are
    reported and left out; a mask without its image is kept, flagged failed, and reported.
    ``on_start(total)`` returns the per-mask progress callback."""
    from ..io.images import list_inputs
    from ..parallel import Failed, parallel_map

    masks = list_inputs([folder], (".png",))
    index = ImageIndex(images) if images else None
    jobs = [(m.path, threshold, connectivity, min_area, multi) for m in masks]
    advance = on_start(len(jobs))
    facts = []
    for r in parallel_map(_mask_facts, jobs, workers, describe=itemgetter(0)):
        facts.append(r)
        advance()
    items = []
    for m, f in zip(masks, facts, strict=True):
        if isinstance(f, Failed):
            on_error(f.message)
            continue
        size, boxes, scores, areas = f
        key = os.path.splitext(m.rel)[0]
        item = ReviewItem(
            name=m.rel, image_path=None, size=size, mask_path=m.path, boxes=boxes, scores=scores, areas=areas
        )
        if index is not None:
            found = index.by_rel.get(key)
            if found is None:
                what = "two images" if key in index.by_rel else "no image"
                item.error = f"{m.path}: {what} '{key}.*' under {images}"
                on_error(item.error)
            else:
                item.image_path, item.name = found, index.rel_of[found]
        items.append(item)
    return items


# --- label files -----------------------------------------------------------------------------------


def _xywh(b) -> list[float]:
    x, y, w, h = (float(v) for v in b)
    return [x, y, x + w, y + h]


def _item(
    name: str,
    size: tuple[int, int] | None,
    boxes: list,
    scores: list,
    areas: list,
    rles: list[dict] | None = None,
    image_id: object = None,
) -> ReviewItem:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    a = (
        np.asarray([x if x is not None else np.nan for x in areas], np.float64)
        if areas
        else (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    )
    s = np.asarray([np.nan if x is None else x for x in scores], np.float64) if scores else np.full(len(b), np.nan)
    return ReviewItem(
        name=name,
        image_path=None,
        image_id=None if image_id is None else str(image_id),
        size=size,
        boxes=b,
        scores=s,
        areas=a,
        rles=list(rles or []),
    )


def _rle_or_none(seg) -> dict | None:
    """A COCO segmentation we can draw: compressed or uncompressed RLE (polygons are skipped)."""
    return seg if isinstance(seg, dict) and "counts" in seg and "size" in seg else None


def _coco(data: dict) -> list[ReviewItem]:
    """A COCO file's own image ids are its own (`unseg boxes` numbers images 1..N): items match GT
    by file name, never by id."""
    per: dict[object, list[dict]] = {}
    for a in data["annotations"]:
        per.setdefault(a["image_id"], []).append(a)
    items = []
    for img in data["images"]:
        anns = per.get(img["id"], [])
        rles = [r for r in (_rle_or_none(a.get("segmentation")) for a in anns) if r is not None]
        items.append(
            _item(
                img["file_name"],
                (int(img["width"]), int(img["height"])),
                [_xywh(a["bbox"]) for a in anns],
                [a.get("score") for a in anns],
                [a.get("area") for a in anns],
                rles if len(rles) == len(anns) else [],
            )
        )
    return items


def _lost_cad(data: dict) -> list[ReviewItem]:
    items = []
    for r in data["dataset"]:
        # detectron2 BoxMode: 0 = XYXY_ABS (what unseg writes), 1 = XYWH_ABS
        boxes = [
            list(map(float, a["bbox"])) if a.get("bbox_mode", 0) == 0 else _xywh(a["bbox"])
            for a in r.get("annotations", [])
        ]
        items.append(_item(r["file_name"], (int(r["width"]), int(r["height"])), boxes, [], []))
    return items


def _selfmask(data: dict) -> list[ReviewItem]:
    """{basename: RLE of the union of objects}: one box around the union, the union tinted."""
    from pycocotools import mask as mask_utils

    items = []
    for name, rle in data.items():
        if _rle_or_none(rle) is None:
            raise ValueError(f"entry '{name}' is not an RLE")
        h, w = (int(v) for v in rle["size"])
        enc = {"size": [h, w], "counts": rle["counts"].encode() if isinstance(rle["counts"], str) else rle["counts"]}
        area = float(mask_utils.area(enc))
        boxes = [_xywh(mask_utils.toBbox(enc))] if area > 0 else []
        items.append(_item(name, (w, h), boxes, [], [area] if area > 0 else [], [rle]))
    return items


def _detector(data: list) -> list[ReviewItem]:
    per: dict[str, list[dict]] = {}
    for r in data:
        per.setdefault(str(r["image_id"]), []).append(r)
    items = []
    for image_id, rs in per.items():
        rles = [r for r in (_rle_or_none(d.get("segmentation")) for d in rs) if r is not None]
        items.append(
            _item(
                image_id,
                None,
                [_xywh(r["bbox"]) for r in rs],
                [r.get("score") for r in rs],
                [],
                rles if len(rles) == len(rs) else [],
                image_id,
            )
        )
    return items


def _jsonl(rows: list[dict]) -> list[ReviewItem]:
    return [
        _item(r["file_name"], (int(r["width"]), int(r["height"])), r["boxes"], r.get("scores", []), r.get("areas", []))
        for r in rows
    ]


def _one_json_document(path: str) -> object:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def read_labels(path: str) -> tuple[str, list[ReviewItem]]:
    """A label file -> (format name, items). COCO, JSON lines and detector results are told apart by
    ``io.labels.read_label_file``; what it refuses may be LOST-CAD ({"dataset": [...]}) or SelfMask
    ({basename: RLE})."""
    from ..io.labels import CocoFile, DetectorResults, read_label_file

    try:
        try:
            lf = read_label_file(path)
        except InputError as refused:
            doc = _one_json_document(path)
            if isinstance(doc, dict) and isinstance(doc.get("dataset"), list):
                return "lost-cad", _lost_cad(doc)
            if isinstance(doc, dict) and doc and all(_rle_or_none(v) for v in doc.values()):
                return "selfmask", _selfmask(doc)
            raise InputError(f"{refused.message} (nor LOST-CAD or SelfMask)") from None
        if isinstance(lf, DetectorResults):
            return "detector results", _detector(lf.results)
        if isinstance(lf, CocoFile):
            return "coco", _coco(lf.data)
        return "jsonl", _jsonl(lf.rows)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InputError(f"{path}: malformed label file ({type(e).__name__}: {e})") from None


def from_label_file(
    path: str, images: str | None, on_error: Callable[[str], None] = lambda m: None
) -> tuple[str, list[ReviewItem]]:
    """Items of a label file, each matched to its image under ``images`` (by relative path, stem or
    COCO id). An image that is not found is reported; its item stays in the report, flagged failed."""
    from ..labels.runner import displayed_size

    fmt, items = read_labels(path)
    if images is None:
        return fmt, items
    index = ImageIndex(images)
    for it in items:
        found = index.find_id(it.image_id) if fmt == "detector results" else index.find(it.name)
        if found is None:
            it.error = f"{path}: no image for '{it.name}' under {images}"
            on_error(it.error)
            continue
        it.image_path, it.name = found, index.rel_of.get(found, it.name)
        if it.size is None:  # detector results carry no size: the image header has it
            try:
                it.size = displayed_size(found)
            except InputError as e:
                it.error = e.message
                on_error(e.message)
    return fmt, items


# --- ground truth ----------------------------------------------------------------------------------


def load_gt(spec: str, split: str = "trainval") -> list[GTImage]:
    """A VOC-style folder (VOCdevkit/, VOC20xx/ or one laid out like it; ImageSets/Main/<split>.txt)
    or a COCO instances JSON."""
    if os.path.isdir(spec):
        return read_voc(spec, split)
    if os.path.isfile(spec):
        return read_coco(spec)
    raise UsageError(f"GT not found: {spec}", "pass a VOC folder or a COCO instances JSON")


def pick_index(boxes: np.ndarray, scores: np.ndarray, rule: Literal["largest", "score"]) -> int | None:
    """The box CorLoc scores: the largest (ties: higher score, then first) or the highest scoring
    (ties: larger, then first), as `unseg corloc --pick` does."""
    if not len(boxes):
        return None
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    s = np.nan_to_num(scores, nan=-math.inf)
    keys = [(area[k], s[k]) if rule == "largest" else (s[k], area[k]) for k in range(len(boxes))]
    return max(range(len(boxes)), key=lambda k: (keys[k], -k))


def attach_gt(items: list[ReviewItem], gt: list[GTImage], pick: Literal["largest", "score"]) -> int:
    """Give each item the GT boxes of its image (matched by stem, or by id for detector results),
    each box's best IoU (LOST's IoU, boxes scaled to the GT frame) and the box CorLoc scores.
    Returns how many GT images have no item (CorLoc counts them as misses)."""
    from ..evaluation.corloc import iou_lost
    from .overlay import scale_boxes

    by_stem = {g.stem: g for g in gt}
    by_id = {str(g.image_id): g for g in gt}
    used: set[int] = set()
    for it in items:
        g = by_id.get(it.image_id) if it.image_id is not None and it.image_id in by_id else by_stem.get(_stem(it.name))
        if g is None:
            continue
        used.add(id(g))
        it.gt_boxes, it.gt_size = g.boxes, (g.width, g.height)
        if it.size is None:  # detector results without --images: their boxes are in the image's (= GT's) frame
            it.size = it.gt_size
        pred = scale_boxes(it.boxes, it.size, it.gt_size)
        it.ious = np.asarray([float(iou_lost(b, g.boxes).max()) if len(g.boxes) else 0.0 for b in pred], np.float64)
        it.picked = pick_index(it.boxes, it.scores, pick)
    return sum(id(g) not in used for g in gt)
