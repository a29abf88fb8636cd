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

import numpy as np

from ..errors import InputError, UsageError
from ..evaluation.corloc import CorLocResult, iou_lost
from ..evaluation.inputs import MaskBox, Pick
from ..io.datasets import GTImage
from ..io.pairing import FileIndex, Found, key_of
from .overlay import scale_boxes
from .records import ReviewItem

DETECTOR = "detector results"
CORLOC_FORMATS = ("coco", "jsonl", DETECTOR)  # the box files `unseg corloc` reads (io.labels.read_label_file)

Advance = Callable[[], None]
Format = str  # "masks", or read_labels' format name

# --- masks folders ---------------------------------------------------------------------------------


def _mask_facts(
    args: tuple[str, str | None, float, int, float, bool],
) -> tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray, MaskBox, str | None]:
    """One mask (and its image, if paired) -> ((width, height), boxes, scores, areas, the box CorLoc scores,
    the image's problem or None). Raises InputError for unreadable files and colour photos (as `unseg boxes`)."""
    path, image_path, threshold, connectivity, min_area, multi = args
    from ..evaluation.inputs import corloc_box
    from ..io.instances import instance_scores
    from ..labels.components import extract_boxes, instance_boxes, read_box_mask, scored_by_method
    from ..labels.runner import check_mask_size

    kind, mask = read_box_mask(path)
    h, w = mask.shape
    if kind == "instances":  # every object, as the method decided them, with its stored score (NaN: none)
        stored = instance_scores(path)
        objs, _ = instance_boxes(mask)
        boxes = np.asarray([o.xyxy for o in objs], np.float64).reshape(-1, 4)
        areas = np.asarray([o.area for o in objs], np.float64)
        scores = np.asarray([stored.get(o.label, np.nan) for o in objs], np.float64)
    else:
        comps, _ = extract_boxes(mask, threshold, connectivity, min_area, multi)
        comps = scored_by_method(comps, instance_scores(path).get(1))  # as `unseg boxes` scores them
        boxes = np.asarray([c.xyxy for c in comps], np.float64).reshape(-1, 4)
        areas = np.asarray([c.area for c in comps], np.float64)
        scores = np.asarray([c.score for c in comps], np.float64)
    single = MaskBox(corloc_box(kind, mask, threshold, connectivity), (w, h))
    problem = None
    if image_path is not None:
        try:  # a mask of another size would be stretched over its image: refused, as `unseg boxes` does
            check_mask_size(path, (w, h), image_path)
        except InputError as e:
            problem = e.message
    return (w, h), boxes, scores, areas, single, problem


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
    """Every mask PNG under ``folder`` (paired with ``images`` by ``io.pairing``'s relative path rule), with
    the boxes `unseg boxes` would write for the same options. A mask that cannot be read (or is a colour
    photo), has no image, an ambiguous one or one of another size is kept, flagged failed, and reported.
    ``on_start(total)`` returns the per-mask progress callback."""
    from ..io.images import IMAGE_EXTENSIONS, list_inputs
    from ..parallel import Failed, parallel_map

    masks = list_inputs([folder], (".png",))
    index = FileIndex(images, IMAGE_EXTENSIONS) if images else None
    found = [index.by_key(key_of(m.rel)) if index is not None else None for m in masks]
    jobs = [
        (
            m.path,
            f.item.path if f is not None and f.item is not None else None,
            threshold,
            connectivity,
            min_area,
            multi,
        )
        for m, f in zip(masks, found, strict=True)
    ]
    advance = on_start(len(jobs))
    facts = []
    for r in parallel_map(_mask_facts, jobs, workers, describe=itemgetter(0)):
        facts.append(r)
        advance()
    items = []
    for m, f, fact in zip(masks, found, facts, strict=True):
        item = ReviewItem(name=m.rel, image_path=None, mask_path=m.path)
        items.append(item)
        if isinstance(fact, Failed):
            item.error = fact.message
        else:
            item.size, item.boxes, item.scores, item.areas, item.corloc_box, problem = fact
            if f is not None and f.item is None:
                item.error = f.problem(m.path, "image", str(images))
            elif f is not None and f.item is not None:
                item.image_path, item.name, item.error = f.item.path, f.item.rel, problem
        if item.error is not None:
            on_error(item.error)
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
            return DETECTOR, _detector(lf.results)
        if isinstance(lf, CocoFile):
            return "coco", _coco(lf.data)
        return "jsonl", _jsonl(lf.rows)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InputError(f"{path}: malformed label file ({type(e).__name__}: {e})") from None


def _find_by_id(index: FileIndex, image_id: object) -> Found:
    """Detector results without COCO GT: the image whose stem is the id, else whose name ends with it."""
    s = str(image_id)
    found = index.by_stem(s)
    return index.by_number(int(s)) if found.item is None and not found.ambiguous and s.isdigit() else found


def from_label_file(
    path: str,
    images: str | None,
    on_error: Callable[[str], None] = lambda m: None,
    gt: list[GTImage] | None = None,
) -> tuple[str, list[ReviewItem]]:
    """Items of a label file, each matched to its image under ``images`` (``io.pairing``: by relative path,
    else a unique stem). Detector results go by image id: to the GT image of that id and its file name when
    ``gt`` is given (COCO ids need not be file-name numbers), else to the image whose stem or COCO number
    is the id. An image that is not found (or is ambiguous) is reported; its item stays, flagged failed."""
    from ..evaluation.inputs import GTIndex
    from ..io.images import IMAGE_EXTENSIONS
    from ..labels.runner import displayed_size

    fmt, items = read_labels(path)
    if images is None:
        return fmt, items
    index = FileIndex(images, IMAGE_EXTENSIONS)
    by_id = GTIndex(gt).of_id if gt is not None else None
    for it in items:
        if fmt == DETECTOR:
            g = by_id(it.image_id) if by_id is not None else None
            found = index.find(g.file_name) if g is not None else _find_by_id(index, it.image_id)
        else:
            found = index.find(it.name)
        if found.item is None:
            it.error = found.problem(f"{path}: '{it.name}'", "image", images)
            on_error(it.error)
            continue
        it.image_path, it.name = found.item.path, found.item.rel
        if it.size is None:  # detector results carry no size: the image header has it
            try:
                it.size = displayed_size(found.item.path)
            except InputError as e:
                it.error = e.message
                on_error(e.message)
    return fmt, items


# --- ground truth: asked of io.datasets and evaluation/, as `unseg corloc` asks them -----------------


def load_gt(spec: str, split: str = "trainval", on_error: Callable[[str], None] = lambda m: None) -> list[GTImage]:
    """A VOC-style folder (VOCdevkit/, VOC20xx/ or one laid out like it; ImageSets/Main/<split>.txt) or a
    COCO instances JSON, read by ``io.datasets.load_gt``: an unreadable VOC annotation goes to ``on_error``
    and its image is left out, as `unseg corloc` does. No image left is an InputError."""
    from ..io.datasets import load_gt as load_dataset

    if os.path.isdir(spec):
        gt = load_dataset("voc", spec, split, on_error=on_error)
    elif os.path.isfile(spec):
        gt = load_dataset("coco", ann=spec)
    else:
        raise UsageError(f"GT not found: {spec}", "pass a VOC folder or a COCO instances JSON")
    if not gt:
        raise InputError("no image could be evaluated: every annotation of the split failed")
    return gt


def score_against_gt(
    items: list[ReviewItem],
    fmt: str,
    labels: str,
    gt: list[GTImage],
    pick: Pick = "auto",
    threshold: float = 0.5,
    connectivity: int = 8,
    on_error: Callable[[str], None] = lambda m: None,
) -> CorLocResult:
    """CorLoc of the items' source by `unseg corloc`'s own path (matching, pick rule, scaling, IoU, the
    count over GT images), and each item given its GT image's boxes, its boxes' IoUs and that image's hit.

    Masks: the box CorLoc scores was read with the mask (``evaluation.inputs.corloc_box``); a GT image
    whose mask is ambiguous goes to ``on_error`` and is a miss, as in `unseg corloc`. Box files corloc
    reads (coco, jsonl, detector results) are read by it; LOST-CAD and SelfMask boxes go through its pick."""
    from ..evaluation import inputs as ev
    from ..evaluation.corloc import corloc

    index = ev.GTIndex(gt)
    if fmt == "masks":
        matched, errors = ev.match_masks(gt, labels)
        for message in errors:
            on_error(message)
        boxes = {it.mask_path: it.corloc_box for it in items if it.mask_path and it.corloc_box is not None}
        predictions = ev.boxes_from_mask_boxes(gt, matched, boxes)
        by_path = {path: index.of_id(key) for key, path in matched.items()}

        def gt_of(it: ReviewItem) -> GTImage | None:
            return by_path.get(it.mask_path or "")
    else:

        def gt_of(it: ReviewItem) -> GTImage | None:
            return index.of_id(it.image_id) if fmt == DETECTOR else index.of_name(it.name)

        if fmt in CORLOC_FORMATS:
            predictions = ev.boxes_from_file(labels, gt, pick)
        else:  # a box without a score counts as 1.0, as corloc counts it
            cands = (
                (gt_of(it), box, 1.0 if math.isnan(score) else float(score), it.size)
                for it in items
                for box, score in zip(it.boxes.tolist(), it.scores.tolist(), strict=True)
            )
            predictions = ev.pick_boxes(cands, ev.pick_rule(pick, False))
    result = corloc(gt, predictions, "gt")
    per_image = {key: (iou, hit) for key, iou, hit in result.per_image}
    for it in items:
        g = gt_of(it)
        if g is None:
            continue
        it.gt_boxes, it.gt_size = g.boxes, (g.width, g.height)
        if it.size is None:  # detector results without --images: their boxes are in the image's (= GT's) frame
            it.size = it.gt_size
        pred = scale_boxes(it.boxes, it.size, it.gt_size)
        it.ious = np.asarray([float(iou_lost(b, g.boxes).max()) if len(g.boxes) else 0.0 for b in pred], np.float64)
        it.corloc = per_image.get(str(g.image_id))
    return result
