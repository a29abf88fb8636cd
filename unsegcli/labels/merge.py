"""Combining pseudo-label part files (from sharded `unseg boxes` runs) into one.

Images are de-duplicated by file_name (the same image in two parts must carry the same size and
annotations, else it is an error naming both files); ids are renumbered from 1 with images in
file_name order and annotations in their image's order, so the merge of a complete set of shards
equals a single-process run.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError, UsageError
from ..io.files import dumps_json, dumps_jsonl, write_output
from ..io.labels import CocoFile, DetectorResults, JsonlRows, read_label_file
from .formats import coco_dataset


@dataclass(frozen=True)
class MergeCounts:
    files: int
    images: int
    boxes: int


def _ann_key(a: dict) -> str:
    return json.dumps(
        {k: a.get(k) for k in ("bbox", "area", "segmentation", "score", "category_id", "iscrowd")}, sort_keys=True
    )


def merge_coco(files: Sequence[CocoFile]) -> dict:
    """One COCO document from several, validated by loading it in pycocotools."""
    seen: dict[str, tuple[str, dict, list[dict]]] = {}
    for f in files:
        by_image: dict[int, list[dict]] = {}
        for a in f.data["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        for img in f.data["images"]:
            mine = by_image.get(img["id"], [])
            prev = seen.get(img["file_name"])
            if prev is None:
                seen[img["file_name"]] = (f.path, img, mine)
                continue
            other_path, other_img, other_anns = prev
            same_size = (img["width"], img["height"]) == (other_img["width"], other_img["height"])
            if not same_size or [_ann_key(a) for a in mine] != [_ann_key(a) for a in other_anns]:
                raise InputError(
                    f"'{img['file_name']}' differs between {other_path} and {f.path} (size or annotations)"
                )
    images: list[dict] = []
    annotations: list[dict] = []
    for new_id, name in enumerate(sorted(seen), 1):
        _, img, anns = seen[name]
        images.append({**img, "id": new_id})
        for a in anns:
            annotations.append({**a, "id": len(annotations) + 1, "image_id": new_id})
    merged = coco_dataset(images, annotations)
    categories = files[0].data.get("categories") if files else None
    if categories:
        merged["categories"] = categories
    _validate(merged)
    return merged


def merge_jsonl(files: Sequence[JsonlRows]) -> list[dict]:
    """Rows of several JSON-lines files, one per file_name, in file_name order."""
    seen: dict[str, tuple[str, dict]] = {}
    for f in files:
        for r in f.rows:
            prev = seen.get(r["file_name"])
            if prev is not None and prev[1] != r:
                raise InputError(f"'{r['file_name']}' differs between {prev[0]} and {f.path}")
            seen.setdefault(r["file_name"], (f.path, r))
    return [seen[k][1] for k in sorted(seen)]


def merge_files(paths: Sequence[str], out: str) -> MergeCounts:
    """Merge COCO files or JSON-lines files (not a mix) and write the result to ``out`` ('-' = stdout)."""
    loaded = [read_label_file(p) for p in paths]
    for f in loaded:
        if isinstance(f, DetectorResults):
            raise UsageError(f"{f.path}: detector results carry no file names and cannot be merged")
    coco = [f for f in loaded if isinstance(f, CocoFile)]
    jsonl = [f for f in loaded if isinstance(f, JsonlRows)]
    if coco and jsonl:
        raise UsageError(f"cannot merge a COCO file with JSON lines ({coco[0].path} and {jsonl[0].path})")
    if coco:
        doc = merge_coco(coco)
        write_output(out, dumps_json(doc))
        return MergeCounts(len(paths), len(doc["images"]), len(doc["annotations"]))
    rows = merge_jsonl(jsonl)
    write_output(out, dumps_jsonl(rows))
    return MergeCounts(len(paths), len(rows), sum(len(r["boxes"]) for r in rows))


def _validate(dataset: dict) -> None:
    """Load the result in pycocotools, as every consumer will."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        for a in dataset["annotations"][:1000]:
            coco.annToRLE(a)
