"""Label rows: one image's labels as a flat record of columns, what the Ray Data step (``unsegcli.ray.Boxes``)
writes to parquet and ``unseg merge`` reads back into every label format.

One row per image (an image without boxes keeps its row, so it stays in the COCO ``images`` list), list columns
per object, largest first as ``unseg boxes`` orders them:

- ``key`` (str): the image's file name relative to its root (COCO ``file_name``); ``height``, ``width`` (int);
- ``boxes`` (list of [x, y, w, h], 0-based pixels), ``areas`` (list of int, pixel counts), ``scores`` (list of
  float), ``rles`` (list of str: each object's COCO compressed-RLE ``counts``; its ``size`` is [height, width]);
- ``settings`` (str): the settings tag of the masks (``io.masks.settings_tag``, as ``unseg predict`` records it);
- ``error`` (str): why this image has no labels (it failed; its other label columns are then empty), or "".

The same rows come as parquet parts (the Ray Data step) or as label shards (`unseg boxes` from mask shards): a
WebDataset tar per mask shard whose member ``<key>.json`` is one image's row as a JSON object. Parquet (pyarrow) is
imported only when a part is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.files import staging_folder
from ..io.shards import extract_shard
from .formats import ImageLabels, xyxy_to_xywh

COLUMNS = ("key", "height", "width", "boxes", "areas", "scores", "rles", "settings", "error")


def labels_to_row(labels: ImageLabels, settings: str) -> dict[str, Any]:
    """An image's labels (with ``rles``) -> its row."""
    return {
        "key": labels.file_name,
        "height": labels.height,
        "width": labels.width,
        "boxes": [xyxy_to_xywh(b) for b in labels.boxes],
        "areas": [int(a) for a in labels.areas],
        "scores": [float(s) for s in labels.scores],
        "rles": [r["counts"] for r in labels.rles],
        "settings": settings,
        "error": "",
    }


def failed_row(key: str, message: str, settings: str) -> dict[str, Any]:
    """The row of an image that could not be labelled: its key and why."""
    return {
        "key": key,
        "height": 0,
        "width": 0,
        "boxes": [],
        "areas": [],
        "scores": [],
        "rles": [],
        "settings": settings,
        "error": message,
    }


def row_to_labels(row: dict[str, Any], index: int) -> ImageLabels:
    """A row -> the image's labels at position ``index`` (image id ``index + 1``), with its RLEs and their union."""
    import numpy as np
    from pycocotools import mask as mask_utils

    h, w = int(row["height"]), int(row["width"])
    rles = [{"size": [h, w], "counts": c} for c in row["rles"]]
    if rles:
        union = mask_utils.merge([{"size": [h, w], "counts": c.encode("ascii")} for c in row["rles"]], intersect=False)
    else:
        union = mask_utils.encode(np.zeros((h, w, 1), np.uint8, order="F"))[0]
    return ImageLabels(
        index,
        row["key"],
        w,
        h,
        [[x, y, x + bw, y + bh] for x, y, bw, bh in row["boxes"]],
        [int(a) for a in row["areas"]],
        [float(s) for s in row["scores"]],
        rles,
        {"size": [h, w], "counts": union["counts"].decode("ascii")},
    )


def is_parquet(path: str) -> bool:
    """A parquet file: its first four bytes are ``PAR1``."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False


@dataclass
class RowParts:
    """Rows of several parquet parts: ``rows[i]`` came from ``paths[sources[i]]``."""

    paths: list[str]
    rows: list[dict[str, Any]]
    sources: list[int]


def read_rows(paths: Sequence[str], fail: Callable[[str], None]) -> RowParts:
    """Every row of the parquet parts; a part that cannot be read, or lacks a column of ``COLUMNS``, goes to
    ``fail`` (named, with the missing columns) and gives no rows."""
    import pyarrow.parquet as pq

    out = RowParts(list(paths), [], [])
    for i, path in enumerate(paths):
        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a damaged file
            fail(f"{path}: not a readable parquet file ({type(e).__name__}: {e})")
            continue
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            fail(f"{path}: not a label part of unsegcli.ray.Boxes: no column {', '.join(missing)}")
            continue
        rows = table.select(list(COLUMNS)).to_pylist()
        out.rows.extend(rows)
        out.sources.extend([i] * len(rows))
    return out


ROW_SUFFIX = ".json"  # a label shard's member: one image's row


def _not_a_row(row: Any) -> str:
    """Why a JSON value read from a label shard is not a row (its columns' types, as ``labels_to_row`` writes
    them), or "" when it is one."""
    if not isinstance(row, dict):
        return "not a JSON object"
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        return "no " + ", ".join(missing)
    ints = all(isinstance(row[c], int) and row[c] >= 0 for c in ("height", "width"))
    strs = all(isinstance(row[c], str) for c in ("key", "settings", "error"))
    lists = [row[c] for c in ("boxes", "areas", "scores", "rles")]
    if not (ints and strs and all(isinstance(v, list) and len(v) == len(lists[0]) for v in lists)):
        return "a column of the wrong type, or object lists of different lengths"
    boxes = all(isinstance(b, list) and len(b) == 4 and all(isinstance(x, int | float) for x in b) for b in lists[0])
    numbers = all(isinstance(x, int | float) for x in lists[1] + lists[2])
    if not (boxes and numbers and all(isinstance(r, str) for r in lists[3])):
        return "a box, area, score or RLE of the wrong type"
    return ""


def read_shard_rows(specs: Sequence[str], fail: Callable[[str], None]) -> RowParts:
    """Every row of the label shards ``specs`` (paths or URLs), member by member in their sorted order. A shard
    that cannot be read (to its end), and a member that is not a row (not JSON, not an object with every column of
    ``COLUMNS``), go to ``fail``, named as ``shard.tar:member``; the other members' rows are kept."""
    out = RowParts(list(specs), [], [])
    for i, spec in enumerate(specs):
        with staging_folder() as tmp:
            try:
                contents = extract_shard(spec, tmp, (ROW_SUFFIX,))
            except InputError as e:
                fail(e.message)
                continue
            for message in contents.problems + ([contents.damaged] if contents.damaged else []):
                fail(message)
            for path in sorted(Path(tmp).rglob("*" + ROW_SUFFIX)):
                name = path.relative_to(tmp).as_posix()
                try:
                    row = json.loads(path.read_bytes())
                except (ValueError, UnicodeDecodeError) as e:
                    fail(f"{spec}:{name}: not a label row (not JSON: {e})")
                    continue
                why = _not_a_row(row)
                if why:
                    fail(f"{spec}:{name}: not a label row of `unseg boxes`: {why}")
                    continue
                out.rows.append({c: row[c] for c in COLUMNS})
                out.sources.append(i)
    return out


def merge_rows(parts: RowParts) -> tuple[list[ImageLabels], list[str]]:
    """Rows -> (labels in key order, image ids from 1; the messages of failed images). A key in two rows must
    carry the same labels, and all rows with labels one settings tag, else an InputError naming both parts."""
    seen: dict[str, tuple[int, dict[str, Any]]] = {}
    first_settings: tuple[int, str] | None = None
    for row, src in zip(parts.rows, parts.sources, strict=True):
        if row["error"]:  # no labels to mix (a mask that failed may not even hold its tag)
            pass
        elif first_settings is None:
            first_settings = (src, row["settings"])
        elif row["settings"] != first_settings[1]:
            raise InputError(
                f"{parts.paths[src]} holds labels of other settings ({row['settings']}) than "
                f"{parts.paths[first_settings[0]]} ({first_settings[1]}): merging would mix two settings"
            )
        prev = seen.get(row["key"])
        if prev is not None and json.dumps(prev[1], sort_keys=True) != json.dumps(row, sort_keys=True):
            raise InputError(f"'{row['key']}' differs between {parts.paths[prev[0]]} and {parts.paths[src]}")
        seen.setdefault(row["key"], (src, row))
    errors = [str(r["error"]) for _, (_, r) in sorted(seen.items()) if r["error"]]
    good = [r for _, (_, r) in sorted(seen.items()) if not r["error"]]
    return [row_to_labels(r, i) for i, r in enumerate(good)], errors
