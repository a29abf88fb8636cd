"""Combining pseudo-label part files (from `unseg boxes --shard i/N`) into one.

Images are de-duplicated by file_name (the same image in two parts must carry the same size and
annotations, else it is an error naming both files); ids are renumbered from 1 with images in
file_name order and annotations in their image's order, so the merge of a complete set of shards
equals a single-process run."""
from __future__ import annotations

import contextlib
import io
import json

from .errors import InputError, UsageError
from .postprocess.coco import coco_dataset


def _load(path: str):
    try:
        text = open(path).read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    s = text.lstrip()
    if s.startswith("{") and '"annotations"' in s:
        return "coco", json.loads(text)
    try:
        return "jsonl", [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError:
        raise InputError(f"{path}: neither a COCO file nor JSON lines") from None


def _ann_key(a: dict) -> str:
    return json.dumps({k: a.get(k) for k in ("bbox", "area", "segmentation", "score", "category_id", "iscrowd")},
                      sort_keys=True)


def merge_files(paths: list[str]) -> tuple[str, object]:
    kinds = {}
    loaded = []
    for p in paths:
        kind, data = _load(p)
        kinds.setdefault(kind, p)
        loaded.append((p, data))
    if len(kinds) > 1:
        raise UsageError(f"cannot merge a COCO file with JSON lines ({kinds['coco']} and {kinds['jsonl']})")
    kind = next(iter(kinds))
    return kind, (_merge_coco(loaded) if kind == "coco" else _merge_jsonl(loaded))


def _merge_coco(loaded: list[tuple[str, dict]]) -> dict:
    seen: dict[str, tuple[str, dict, list[dict]]] = {}
    for path, data in loaded:
        anns: dict[int, list[dict]] = {}
        for a in data["annotations"]:
            anns.setdefault(a["image_id"], []).append(a)
        for img in data["images"]:
            mine = anns.get(img["id"], [])
            prev = seen.get(img["file_name"])
            if prev is None:
                seen[img["file_name"]] = (path, img, mine)
                continue
            other_path, other_img, other_anns = prev
            same_size = (img["width"], img["height"]) == (other_img["width"], other_img["height"])
            if not same_size or [_ann_key(a) for a in mine] != [_ann_key(a) for a in other_anns]:
                raise InputError(f"'{img['file_name']}' differs between {other_path} and {path} "
                                 "(size or annotations)")
    images, annotations = [], []
    for new_id, name in enumerate(sorted(seen), 1):
        _, img, anns = seen[name]
        images.append({**img, "id": new_id})
        for a in anns:
            annotations.append({**a, "id": len(annotations) + 1, "image_id": new_id})
    merged = coco_dataset(images, annotations)
    categories = loaded[0][1].get("categories")
    if categories:
        merged["categories"] = categories
    _validate(merged)
    return merged


def _merge_jsonl(loaded: list[tuple[str, list[dict]]]) -> list[dict]:
    seen: dict[str, tuple[str, dict]] = {}
    for path, rows in loaded:
        for r in rows:
            prev = seen.get(r["file_name"])
            if prev is not None and prev[1] != r:
                raise InputError(f"'{r['file_name']}' differs between {prev[0]} and {path}")
            seen.setdefault(r["file_name"], (path, r))
    return [seen[k][1] for k in sorted(seen)]


def _validate(dataset: dict) -> None:
    """Load the result in pycocotools, as every consumer will."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        for a in dataset["annotations"][:1000]:
            coco.annToRLE(a)
