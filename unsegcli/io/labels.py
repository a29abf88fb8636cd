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


def read_label_file(path: str) -> LabelFile:
    """Read ``path`` ('-' = stdin) and say which of the three shapes it is.

    A JSON list is detector results; one JSON object with ``images`` and ``annotations`` is COCO;
    anything else must be JSON lines of objects with ``file_name`` and ``boxes``. Raises InputError
    naming the file (and line) otherwise.
    """
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from None
    head = text.lstrip()[:1]
    if head == "[":
        try:
            results = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e})") from None
        if not all(isinstance(r, dict) and "image_id" in r and "bbox" in r for r in results):
            raise InputError(f"{path}: a JSON list, but not detector results (each needs image_id and bbox)")
        return DetectorResults(path, results)
    if head == "{":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None  # several objects: JSON lines
        if isinstance(doc, dict) and "annotations" in doc:
            if not isinstance(doc.get("images"), list) or not isinstance(doc["annotations"], list):
                raise InputError(f"{path}: a COCO file needs 'images' and 'annotations' lists")
            return CocoFile(path, doc)
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{path}:{n}: not JSON lines, a COCO file or detector results") from None
        if not isinstance(row, dict) or "file_name" not in row or "boxes" not in row:
            raise InputError(f"{path}:{n}: a JSON line needs 'file_name' and 'boxes'")
        rows.append(row)
    return JsonlRows(path, rows)
