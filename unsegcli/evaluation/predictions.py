"""Single-box predictions for CorLoc from any of: a masks folder, an `unseg boxes` file (coco or
jsonl), or a detector's coco_instances_results.json. All map to {str(GT image id): XYXY box in
the GT image's pixel coordinates}."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError, UsageError
from ..io.datasets import GTImage


def _scale(box, from_wh, to_wh) -> np.ndarray:
    """Boxes from masks or files made at another resolution (e.g. the official infer.py writes
    masks at the resized size) are scaled to the GT image size."""
    sx, sy = to_wh[0] / from_wh[0], to_wh[1] / from_wh[1]
    x0, y0, x1, y1 = box
    return np.array([x0 * sx, y0 * sy, x1 * sx, y1 * sy], np.float64)


def _biggest_box_of_mask(args) -> tuple[str, np.ndarray | None, str | None]:
    key, path, gt_wh, threshold, connectivity = args
    from ..io.masks import read_mask
    from ..postprocess.components import extract_boxes

    try:
        mask = read_mask(path)
    except InputError as e:
        return key, None, e.message
    # MOVE sec. 4.2: connected components -> boxes -> the biggest one; no 1% filter for CorLoc.
    boxes, _ = extract_boxes(mask, threshold, connectivity, min_area=0.0, multi=False)
    if not boxes:
        return key, None, None
    return key, _scale(boxes[0].box, mask.shape[::-1], gt_wh), None


def from_masks(folder: str, gt: list[GTImage], threshold: float, connectivity: int, workers: int,
               on_error: Callable[[str], None]) -> dict[str, np.ndarray]:
    index: dict[str, str] = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            if f.lower().endswith(".png"):
                index.setdefault(os.path.splitext(f)[0], os.path.join(dirpath, f))
    jobs = [(str(g.image_id), index[g.stem], (g.width, g.height), threshold, connectivity)
            for g in gt if g.stem in index]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            results = list(pool.imap(_biggest_box_of_mask, jobs, chunksize=32))
    else:
        results = [_biggest_box_of_mask(j) for j in jobs]
    out = {}
    for key, box, err in results:
        if err:
            on_error(err)
        elif box is not None:
            out[key] = box
    return out


def _pick(cands: list[tuple[list[float], float]], pick: str) -> list[float]:
    """Biggest box (ties: higher score, then first) or highest score (ties: bigger, then first)."""
    def area(b):
        return (b[2] - b[0]) * (b[3] - b[1])
    order = (lambda c: (area(c[0]), c[1])) if pick == "largest" else (lambda c: (c[1], area(c[0])))
    return max(cands, key=order)[0]


def from_file(path: str, gt: list[GTImage], pick: str = "auto") -> dict[str, np.ndarray]:
    """`unseg boxes` coco or jsonl output (matched by file stem), or detector results (by image id).

    ``pick`` "auto": the highest-scoring box of detector results (LOST / MOVE evaluate CAD that
    way), the largest box of `unseg boxes` files (the paper's single-object rule)."""
    text = Path(path).read_text() if path != "-" else sys.stdin.read()
    stripped = text.lstrip()
    by_stem = {g.stem: g for g in gt}
    by_id = {_norm_id(g.image_id): g for g in gt}
    cands: dict[str, list] = {}
    sizes: dict[str, tuple[int, int]] = {}

    def add(g: GTImage | None, box_xyxy, score, wh):
        if g is None:
            return
        cands.setdefault(str(g.image_id), []).append((list(box_xyxy), float(score)))
        sizes[str(g.image_id)] = wh or (g.width, g.height)

    if stripped.startswith("["):  # detector results: [{image_id, bbox xywh, score, ...}]
        pick = "score" if pick == "auto" else pick
        for r in json.loads(text):
            x, y, w, h = r["bbox"]
            add(by_id.get(_norm_id(r["image_id"])), (x, y, x + w, y + h), r.get("score", 1.0), None)
    elif _is_coco(stripped):
        data = json.loads(text)
        imgs = {i["id"]: i for i in data["images"]}
        for a in data["annotations"]:
            img = imgs[a["image_id"]]
            x, y, w, h = a["bbox"]
            add(by_stem.get(_stem(img["file_name"])), (x, y, x + w, y + h), a.get("score", 1.0),
                (img["width"], img["height"]))
    else:  # jsonl
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                raise UsageError(f"{path}:{n}: not JSON lines, a COCO file or detector results") from None
            for b, s in zip(r["boxes"], r.get("scores", [1.0] * len(r["boxes"]))):
                add(by_stem.get(_stem(r["file_name"])), b, s, (r["width"], r["height"]))
    pick = "largest" if pick == "auto" else pick
    return {k: _scale(_pick(c, pick), sizes[k], _gt_wh(by_id, k)) for k, c in cands.items()}


def _is_coco(text: str) -> bool:
    return text.startswith("{") and '"annotations"' in text


def _stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


def _norm_id(i) -> str:
    s = str(i)
    return str(int(s)) if s.isdigit() else s


def _gt_wh(by_id, key: str) -> tuple[int, int]:
    g = by_id[_norm_id(key)]
    return g.width, g.height
