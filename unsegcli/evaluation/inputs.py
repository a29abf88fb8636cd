"""Evaluation inputs: which prediction belongs to which ground truth, and reading predictions.

One matching rule for every evaluation (``match_predictions``): a prediction PNG at the GT's own
relative path wins; else the one PNG anywhere under the predictions folder with the GT's stem. A
stem found more than once (and no exact path) is an error naming the files, never a choice made by
file-system order.

CorLoc's single boxes come from any of: a masks folder, an `unseg boxes` file (coco or jsonl), or a
detector's coco_instances_results.json. All map to {str(GT image id): XYXY box in the GT image's
pixel coordinates}.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import InputError, UsageError
from ..io.datasets import GTImage
from ..io.images import list_inputs
from ..io.labels import CocoFile, DetectorResults, read_label_file
from ..io.pairing import FileIndex, stem
from ..parallel import Failed, parallel_map

Pick = Literal["auto", "largest", "score"]  # which box of a box file CorLoc scores
Missing = Literal["empty", "skip"]  # saliency: a GT mask without prediction

# ------------------------------------------------------------------------------------- matching


@dataclass
class Matches:
    found: dict[str, str] = field(default_factory=dict)  # key -> prediction path
    errors: dict[str, str] = field(default_factory=dict)  # key -> why no prediction was chosen


def match_predictions(keys: Sequence[str], pred_dir: str) -> Matches:
    """Prediction PNGs under ``pred_dir`` for GT ``keys`` (POSIX relative paths without extension), by
    ``io.pairing``: the relative path, else a unique stem.

    A key without any prediction is in neither ``found`` nor ``errors``.
    """
    index = FileIndex(pred_dir, (".png",))
    out = Matches()
    for key in keys:
        found = index.by_key(key)
        if found.item is None and not found.ambiguous:
            found = index.by_stem(key)
        if found.item is not None:
            out.found[key] = found.item.path
        elif found.ambiguous:
            out.errors[key] = found.problem(key, "prediction", pred_dir)
    return out


# ----------------------------------------------------------------------------- CorLoc predictions


def scale_box(box, from_wh: tuple[int, int], to_wh: tuple[int, int]) -> np.ndarray:
    """Boxes from masks or files made at another resolution (e.g. the official infer.py writes
    masks at the resized size) are scaled to the GT image size."""
    sx, sy = to_wh[0] / from_wh[0], to_wh[1] / from_wh[1]
    x0, y0, x1, y1 = box
    return np.array([x0 * sx, y0 * sy, x1 * sx, y1 * sy], np.float64)


@dataclass(frozen=True)
class MaskBox:
    box: np.ndarray | None  # the box CorLoc scores, in the mask's frame (None: an empty mask)
    wh: tuple[int, int]  # the mask's (width, height)


def corloc_box(kind: str, mask: np.ndarray, threshold: float, connectivity: int) -> np.ndarray | None:
    """The single box CorLoc scores for a decoded mask (``labels.components.read_box_mask``'s ``kind``
    and array), in the mask's frame: MOVE sec. 4.2's connected components -> boxes -> the biggest one,
    with no 1% filter; of an instance mask, the biggest piece of its largest object."""
    from ..io.instances import instances_to_mask_u8
    from ..labels.components import extract_boxes

    if kind == "instances":  # one object is the single box: the largest (MOVE's biggest component)
        mask = instances_to_mask_u8(mask, "largest")
    comps, _ = extract_boxes(mask, threshold, connectivity, min_area=0.0, multi=False)
    return np.asarray(comps[0].xyxy, np.float64) if comps else None


def read_corloc_box(path: str, threshold: float, connectivity: int) -> MaskBox:
    """One mask file -> its ``corloc_box``; raises InputError for unreadable files and photos."""
    from ..labels.components import read_box_mask

    kind, mask = read_box_mask(path)
    return MaskBox(corloc_box(kind, mask, threshold, connectivity), (mask.shape[1], mask.shape[0]))


def match_masks(gt: list[GTImage], folder: str) -> tuple[dict[str, str], list[str]]:
    """str(GT image id) -> its mask under ``folder`` (``match_predictions``), in GT order, and one error
    per GT image whose mask is ambiguous (it has no prediction)."""
    matches = match_predictions([g.stem for g in gt], folder)
    found: dict[str, str] = {}
    errors = []
    for g in gt:
        if g.stem in matches.errors:
            errors.append(matches.errors[g.stem])
        elif g.stem in matches.found:
            found[str(g.image_id)] = matches.found[g.stem]
    return found, errors


def boxes_from_mask_boxes(
    gt: list[GTImage], matched: dict[str, str], boxes: dict[str, MaskBox]
) -> dict[str, np.ndarray]:
    """``match_masks``' pairs and each mask's ``MaskBox`` (by path; an unreadable mask has none) ->
    {str(GT image id): the CorLoc box in the GT image's pixels}; an empty mask gives no box."""
    sizes = {str(g.image_id): (g.width, g.height) for g in gt}
    out = {}
    for key, path in matched.items():
        found = boxes.get(path)
        if found is not None and found.box is not None:
            out[key] = scale_box(found.box, found.wh, sizes[key])
    return out


def boxes_from_masks(
    folder: str,
    gt: list[GTImage],
    threshold: float,
    connectivity: int,
    workers: int,
    on_error: Callable[[str], None],
) -> dict[str, np.ndarray]:
    """The biggest component box of each GT image's mask; unreadable or ambiguous masks go to ``on_error``."""
    matched, errors = match_masks(gt, folder)
    for message in errors:
        on_error(message)
    paths = list(dict.fromkeys(matched.values()))
    work = functools.partial(read_corloc_box, threshold=threshold, connectivity=connectivity)
    boxes = {}
    for path, r in zip(paths, parallel_map(work, paths, workers, describe=str, chunksize=32), strict=True):
        if isinstance(r, Failed):
            on_error(r.message)
        else:
            boxes[path] = r
    return boxes_from_mask_boxes(gt, matched, boxes)


def _pick(cands: list[tuple[list[float], float]], pick: str) -> list[float]:
    """Biggest box (ties: higher score, then first) or highest score (ties: bigger, then first)."""

    def area(b: list[float]) -> float:
        return (b[2] - b[0]) * (b[3] - b[1])

    if pick == "largest":
        return max(cands, key=lambda c: (area(c[0]), c[1]))[0]
    return max(cands, key=lambda c: (c[1], area(c[0])))[0]


def pick_rule(pick: Pick, detector_results: bool) -> Literal["largest", "score"]:
    """``pick`` "auto": the highest-scoring box of detector results (LOST / MOVE evaluate CAD that
    way), the largest box of `unseg boxes` files (the paper's single-object rule)."""
    if pick != "auto":
        return pick
    return "score" if detector_results else "largest"


def _norm_id(i: object) -> str:
    s = str(i)
    return str(int(s)) if s.isdigit() else s


class GTIndex:
    """The GT image a prediction of a box file belongs to: detector results by image id, every other
    format by the stem of its file name (`unseg boxes` numbers its images 1..N, ids that mean nothing)."""

    def __init__(self, gt: list[GTImage]):
        self.by_stem = {g.stem: g for g in gt}
        self.by_id = {_norm_id(g.image_id): g for g in gt}

    def of_name(self, file_name: str) -> GTImage | None:
        return self.by_stem.get(stem(file_name))

    def of_id(self, image_id: object) -> GTImage | None:
        return self.by_id.get(_norm_id(image_id))


# one predicted box: (its GT image or None, XYXY box, score, (width, height) of the box's frame or None for
# the GT image's pixels)
Candidate = tuple["GTImage | None", Sequence[float], float, "tuple[int, int] | None"]


def pick_boxes(cands: Iterable[Candidate], pick: Literal["largest", "score"]) -> dict[str, np.ndarray]:
    """Every predicted box of a box file -> {str(GT image id): the box ``pick`` chooses, in GT pixels}.
    Raises ValueError for a frame without pixels."""
    per: dict[str, list[tuple[list[float], float]]] = {}
    frames: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
    for g, box, score, wh in cands:
        if g is None:
            continue
        if wh is not None and not (wh[0] > 0 and wh[1] > 0):
            raise ValueError(f"image size {wh[0]}x{wh[1]}")
        key = str(g.image_id)
        per.setdefault(key, []).append((list(box), float(score)))
        frames[key] = (wh or (g.width, g.height), (g.width, g.height))
    return {k: scale_box(_pick(c, pick), *frames[k]) for k, c in per.items()}


def boxes_from_file(path: str, gt: list[GTImage], pick: Pick = "auto") -> dict[str, np.ndarray]:
    """`unseg boxes` coco or jsonl output (matched by file stem), or detector results (by image id);
    ``pick`` as ``pick_rule``."""
    labels = read_label_file(path)
    index = GTIndex(gt)

    def candidates() -> Iterator[Candidate]:
        if isinstance(labels, DetectorResults):  # [{image_id, bbox xywh, score, ...}], in GT pixels
            for r in labels.results:
                x, y, w, h = r["bbox"]
                yield index.of_id(r["image_id"]), (x, y, x + w, y + h), r.get("score", 1.0), None
        elif isinstance(labels, CocoFile):
            imgs = {i["id"]: i for i in labels.data["images"]}
            for a in labels.data["annotations"]:
                img = imgs[a["image_id"]]
                x, y, w, h = a["bbox"]
                wh = (img["width"], img["height"])
                yield index.of_name(img["file_name"]), (x, y, x + w, y + h), a.get("score", 1.0), wh
        else:
            for r in labels.rows:
                for b, s in zip(r["boxes"], r.get("scores", [1.0] * len(r["boxes"])), strict=False):
                    yield index.of_name(r["file_name"]), b, s, (r["width"], r["height"])

    try:
        return pick_boxes(candidates(), pick_rule(pick, isinstance(labels, DetectorResults)))
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path}: malformed {type(labels).__name__} ({type(e).__name__}: {e})") from None


def read_box_predictions(
    pred: str,
    gt: list[GTImage],
    pick: Pick = "auto",
    threshold: float = 0.5,
    connectivity: int = 8,
    workers: int = 0,
    on_error: Callable[[str], None] = lambda message: None,
) -> dict[str, np.ndarray]:
    """``pred`` is a masks folder (``threshold``, ``connectivity``, ``workers`` apply), a box file
    (``pick`` applies) or '-' for a box file on stdin."""
    if os.path.isdir(pred):
        return boxes_from_masks(pred, gt, threshold, connectivity, workers, on_error)
    if pred == "-" or os.path.isfile(pred):
        return boxes_from_file(pred, gt, pick)
    raise UsageError(f"predictions not found: {pred}")


# ------------------------------------------------------------------------------ saliency inputs


@dataclass(frozen=True)
class MaskPair:
    rel: str  # the GT's path relative to its folder
    gt_path: str
    pred_path: str | None  # None: no prediction (scored as an empty mask, or skipped: ``Missing``)


def pair_masks_for_saliency(gt_dir: str, pred_dir: str) -> tuple[list[MaskPair], list[str]]:
    """GT PNGs (recursive, sorted) with their predictions by the matching rule, and the errors of
    GT masks whose prediction is ambiguous (those are not paired). Non-PNG files are ignored."""
    for name, d in (("gt_dir", gt_dir), ("pred_dir", pred_dir)):
        if not os.path.isdir(d):
            raise UsageError(f"{name} is not a folder: {d}")
    gts = list_inputs([gt_dir], (".png",))
    keys = [os.path.splitext(g.rel)[0] for g in gts]
    matches = match_predictions(keys, pred_dir)
    pairs = [
        MaskPair(g.rel, g.path, matches.found.get(k)) for g, k in zip(gts, keys, strict=True) if k not in matches.errors
    ]
    return pairs, list(matches.errors.values())


def read_saliency_gt(path: str) -> np.ndarray:
    """A GT mask -> HxW bool, the official reading for 8-bit files: raw values (first channel if
    several) / 255 > 0.5. Other modes, which the official script misreads, by their meaning: 1-bit
    as is, 16-bit and wider scaled to 8 bits first, a palette PNG's non-zero indices as foreground."""
    from PIL import Image

    from ..io.images import pil_errors, to_uint8_gray

    with pil_errors(path, "GT mask"), Image.open(path) as img:
        img.load()
        if img.mode == "1":
            return np.asarray(img, dtype=bool).copy()
        if img.mode == "P":
            return np.asarray(img) > 0
        wide = to_uint8_gray(img)
        gt = wide if wide is not None else np.asarray(img)
    if gt.ndim > 2:
        gt = gt[:, :, 0]
    if gt.size == 0:
        raise InputError(f"{path}: GT mask has no pixels")
    return gt.astype(np.float32) / 255.0 > 0.5


def read_saliency_prediction(path: str, size_hw: tuple[int, ...]) -> np.ndarray:
    """A predicted mask -> HxW uint8 at the GT size: as the official .convert("L") for 8-bit files
    (``io.masks.read_mask``, which also scales 16-bit), a palette PNG as the union of its objects."""
    from ..io.instances import read_mask_or_instances

    pred = read_mask_or_instances(path, "union")
    if pred.size == 0:
        raise InputError(f"{path}: predicted mask has no pixels")
    return resize_prediction(pred, size_hw)


def resize_prediction(pred_u8: np.ndarray, size_hw: tuple[int, ...]) -> np.ndarray:
    """PIL bilinear resize of the 8-bit prediction to the GT size, as the official script does."""
    from PIL import Image

    if pred_u8.shape == tuple(size_hw):
        return pred_u8
    img = Image.fromarray(pred_u8, "L").resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
    return np.asarray(img)
