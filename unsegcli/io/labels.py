"""Reading box and label files: the one rule that tells the three JSON shapes apart.

- ``CocoFile``: a COCO document (``images`` + ``annotations``), as `unseg boxes --format coco` and
  `unseg merge` write it, or any instances JSON.
- ``JsonlRows``: JSON lines, one image per line with ``file_name`` and XYXY ``boxes``
  (`unseg boxes --format jsonl`).
- ``DetectorResults``: detectron2's ``coco_instances_results.json``: a JSON list of
  ``{image_id, bbox (XYWH), score, ...}``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError


@dataclass(frozen=True)
class CocoFile:
    path: str
    data: dict  # the whole document: images, annotations, categories, ...


@dataclass(frozen=True)
class JsonlRows:
    path: str
    rows: list[dict]  # one per image: file_name, width, height, boxes (XYXY), areas, scores


@dataclass(frozen=True)
class DetectorResults:
    path: str
    results: list[dict]  # image_id, bbox (XYWH), score, category_id


LabelFile = CocoFile | JsonlRows | DetectorResults


def _is_number(v: object) -> bool:
    """A finite JSON number: Python's json reads NaN and Infinity, which no box or score can be (a NaN
    score would win or lose every comparison arbitrarily, a NaN coordinate cannot be rounded)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_box(v: object) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(_is_number(x) for x in v)


def _xywh_problem(v: object) -> str | None:
    """What is wrong with a COCO [x, y, w, h] box (4 finite numbers, no negative size), or None."""
    if not _is_box(v):
        return f"bbox must be 4 numbers [x, y, w, h], not {v!r}"
    if v[2] < 0 or v[3] < 0:  # type: ignore[index]
        return f"bbox width and height cannot be negative: {v!r}"
    return None


def coco_problem(doc: object) -> str | None:
    """What makes ``doc`` unusable as a COCO document, or None: 'images' and 'annotations' lists, each
    image with id, file_name, width and height, each annotation with an image_id among them and an
    XYWH bbox of 4 numbers. The first problem found is named (with the item's position)."""
    if not isinstance(doc, dict):
        return f"a COCO file is a JSON object, not a {type(doc).__name__}"
    lacking = [k for k in ("images", "annotations") if not isinstance(doc.get(k), list)]
    if lacking:
        return "a COCO file needs " + " and ".join(f"an '{k}' list" for k in lacking) + f" (it has no {lacking[0]!r})"
    ids = set()
    for n, img in enumerate(doc["images"]):
        if not isinstance(img, dict):
            return f"images[{n}] is not an object"
        gone = [k for k in ("id", "file_name", "width", "height") if k not in img]
        if gone:
            return f"images[{n}] has no {', '.join(repr(k) for k in gone)}"
        if not isinstance(img["file_name"], str) or not _is_number(img["width"]) or not _is_number(img["height"]):
            return f"images[{n}]: file_name must be a string, width and height numbers"
        if img["width"] <= 0 or img["height"] <= 0:
            return f"images[{n}]: size {img['width']}x{img['height']}"
        if img["id"] in ids:
            return f"images[{n}]: image id {img['id']!r} appears twice"
        ids.add(img["id"])
    for n, a in enumerate(doc["annotations"]):
        if not isinstance(a, dict):
            return f"annotations[{n}] is not an object"
        if "image_id" not in a or "bbox" not in a:
            return f"annotations[{n}] has no {'image_id' if 'image_id' not in a else 'bbox'!r}"
        if a["image_id"] not in ids:
            return f"annotations[{n}]: image_id {a['image_id']!r} is not among the images"
        problem = _xywh_problem(a["bbox"])
        if problem:
            return f"annotations[{n}]: {problem}"
        if "score" in a and not _is_number(a["score"]):
            return f"annotations[{n}]: score must be a number, not {a['score']!r}"
    return None


def _read_text(path: str) -> str:
    try:
        # utf-8-sig: files saved by Windows tools start with a byte-order mark, which json refuses
        return sys.stdin.read().removeprefix("\ufeff") if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def read_coco_document(path: str) -> dict:
    """A COCO document (ground truth), checked by ``coco_problem``; InputError naming the file otherwise."""
    text = _read_text(path)
    if not text.strip():
        raise InputError(f"{path}: empty file, not a COCO file")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    problem = coco_problem(doc)
    if problem:
        raise InputError(f"{path}: {problem}")
    return doc


def _detector_problem(results: list) -> str | None:
    for n, r in enumerate(results):
        if not isinstance(r, dict) or "image_id" not in r or "bbox" not in r:
            return f"item {n} is not a detection (each needs image_id and bbox)"
        problem = _xywh_problem(r["bbox"])
        if problem:
            return f"item {n}: {problem}"
        if "score" in r and not _is_number(r["score"]):
            return f"item {n}: score must be a number, not {r['score']!r}"
    return None


def _row_problem(row: object) -> str | None:
    if not isinstance(row, dict):
        return f"a JSON line is an object with 'file_name' and 'boxes', not a {type(row).__name__}"
    gone = [k for k in ("file_name", "boxes") if k not in row]
    if gone:
        return f"a JSON line needs 'file_name' and 'boxes' (no {' and '.join(repr(k) for k in gone)})"
    if not isinstance(row["boxes"], list) or not all(_is_box(b) for b in row["boxes"]):
        return "'boxes' must be a list of [x0, y0, x1, y1] boxes of finite numbers"
    if "scores" in row and (not isinstance(row["scores"], list) or not all(_is_number(v) for v in row["scores"])):
        return "'scores' must be a list of finite numbers"
    return None


def read_label_file(path: str) -> LabelFile:
    """Read ``path`` ('-' = stdin) and say which of the three shapes it is.

    A JSON list is detector results; one JSON object with ``images`` or ``annotations`` is COCO;
    objects with ``file_name`` and ``boxes``, one per line, are JSON lines. Anything else (an empty
    file, other JSON, a shape with missing or mistyped fields) raises InputError naming the file
    (and line or item) and what it lacks.
    """
    text = _read_text(path)
    if not text.strip():
        raise InputError(f"{path}: empty file (not a COCO file, JSON lines or detector results)")
    head = text.lstrip()[:1]
    doc: object = None
    try:
        doc = json.loads(text)
        whole = True
    except json.JSONDecodeError as e:
        whole = False
        if head != "{":
            raise InputError(f"{path}: not valid JSON ({e})") from None
    if whole:
        if isinstance(doc, list):
            problem = _detector_problem(doc)
            if problem:
                raise InputError(f"{path}: a JSON list, but not detector results: {problem}")
            return DetectorResults(path, doc)
        if isinstance(doc, dict) and ("annotations" in doc or "images" in doc):
            problem = coco_problem(doc)
            if problem:
                raise InputError(f"{path}: {problem}")
            return CocoFile(path, doc)
        if not isinstance(doc, dict) or not ({"file_name", "boxes"} & doc.keys()):
            if isinstance(doc, dict):
                keys = f"keys {', '.join(sorted(doc)[:5])}" if doc else "an empty object"
            else:
                keys = f"a JSON {type(doc).__name__}"
            raise InputError(
                f"{path}: not a COCO file ('images' and 'annotations'), JSON lines ('file_name' and 'boxes') "
                f"or detector results (a list); it holds {keys}"
            )
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{path}:{n}: not JSON lines, a COCO file or detector results") from None
        problem = _row_problem(row)
        if problem:
            raise InputError(f"{path}:{n}: {problem}")
        rows.append(row)
    return JsonlRows(path, rows)
