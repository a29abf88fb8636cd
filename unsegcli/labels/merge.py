"""Combining pseudo-label part files (from sharded `unseg boxes` runs, the label shards `unseg boxes` writes from
mask shards, or the parquet parts of the Ray Data step) into one.

Images are de-duplicated by file_name (the same image in two parts must carry the same size and
annotations, else it is an error naming both files); ids are renumbered from 1 with images in
file_name order and annotations in their image's order, so the merge of a complete set of shards
equals a single-process run. Label rows (``labels.rows``: parquet parts, label shards) are converted to any label
format through the writers of ``unseg boxes`` (``labels.runner.write_labels``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import InputError, UsageError
from ..io.files import dumps_json, dumps_jsonl, write_output
from ..io.labels import CocoFile, DetectorResults, JsonlRows, read_label_file
from ..io.shards import is_shard
from .formats import LabelFormat, Segmentation, coco_dataset
from .rows import is_parquet


@dataclass(frozen=True)
class MergeCounts:
    files: int
    images: int
    boxes: int
    failed: int = 0  # images whose rows carry an error, unreadable label shards and members, each named


def _ann_key(a: dict) -> str:
    return json.dumps(
        {k: a.get(k) for k in ("bbox", "area", "segmentation", "score", "category_id", "iscrowd")}, sort_keys=True
    )


def merge_coco(files: Sequence[CocoFile]) -> dict:
    """One COCO document from several (``merge_files`` checks each part first)."""
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


def _raise(message: str) -> None:
    raise InputError(message)


def _is_empty_file(path: str) -> bool:
    try:
        return path != "-" and os.path.getsize(path) == 0
    except OSError:
        return False


def merge_files(
    paths: Sequence[str],
    out: str,
    on_error: Callable[[str], None] = _raise,
    *,
    format: LabelFormat | None = None,
    images: str = "",
    segmentation: Segmentation = "rle",
) -> MergeCounts:
    """Merge COCO files or JSON-lines files (not a mix), parquet parts, or label shards (.tar, paths or URLs),
    and write the result to ``out`` ('-' = stdout).

    Every part is read before anything is written: each one that cannot be merged (unreadable, not
    one of our formats, detector results, a parquet part without the label columns) goes to ``on_error``,
    and then nothing is written (an InputError says how many). A zero-byte part is an empty JSON-lines
    part (a shard without masks writes one); beside COCO parts, or alone, it is an error. Label shards are read
    as `unseg boxes` reads mask shards: a shard or member that cannot be read goes to ``on_error`` and the rest
    is merged. COCO and JSON-lines parts merge to their own format (``format`` may only repeat it); parquet parts
    and label shards to ``format`` (default coco), ``images`` being the image root the keys are relative to (the
    yolo and voc formats link or name the images from it), ``segmentation`` the coco format's mask encoding."""
    if paths and any(p != "-" and (is_shard(p) or is_parquet(p)) for p in paths):
        return _merge_rows(paths, out, on_error, format or "coco", images, segmentation)
    loaded: list[CocoFile | JsonlRows] = []
    empty: list[str] = []
    bad = 0

    def fail(message: str) -> None:
        nonlocal bad
        bad += 1
        on_error(message)

    for p in paths:
        if _is_empty_file(p):
            empty.append(p)
            continue
        try:
            f = read_label_file(p)
        except InputError as e:
            fail(e.message)
            continue
        if isinstance(f, DetectorResults):
            fail(f"{f.path}: detector results (a JSON list) carry no file names and cannot be merged")
            continue
        if isinstance(f, CocoFile):
            try:
                _check_segmentations(f)
            except InputError as e:
                fail(e.message)
                continue
        loaded.append(f)
    coco = [f for f in loaded if isinstance(f, CocoFile)]
    jsonl = [f for f in loaded if isinstance(f, JsonlRows)]
    if coco and jsonl:
        raise UsageError(
            f"cannot merge COCO files with JSON-lines files ({coco[0].path} is COCO, {jsonl[0].path} JSON lines)"
        )
    kind = "coco" if coco else "jsonl"
    if format is not None and format != kind and not bad:
        raise UsageError(
            f"format {format}: {kind} parts merge to {kind}; other formats come from parquet parts or `unseg boxes`"
        )
    if empty and not jsonl:
        for p in empty:
            fail(f"{p}: empty file" + (", not a COCO part" if coco else " (no labels in it)"))
    if bad:
        raise InputError(f"{bad} of {len(paths)} parts cannot be merged; nothing written")
    if coco:
        doc = merge_coco(coco)
        write_output(out, dumps_json(doc))
        return MergeCounts(len(paths), len(doc["images"]), len(doc["annotations"]))
    rows = merge_jsonl(jsonl)
    write_output(out, dumps_jsonl(rows))
    return MergeCounts(len(paths), len(rows), sum(len(r["boxes"]) for r in rows))


def _merge_rows(
    paths: Sequence[str],
    out: str,
    on_error: Callable[[str], None],
    format: LabelFormat,
    images: str,
    segmentation: Segmentation,
) -> MergeCounts:
    """Parquet parts (a bad one: nothing written) or label shards (a bad shard or member: named, the rest
    merged) -> their rows -> ``format``."""
    from .rows import merge_rows, read_rows, read_shard_rows
    from .runner import write_labels

    kinds: dict[str, str] = {}  # kind of part -> its first part
    for p in paths:
        kind = "label shards" if p != "-" and is_shard(p) else "parquet parts" if is_parquet(p) else "other files"
        kinds.setdefault(kind, p)
    if len(kinds) > 1:
        raise UsageError("cannot merge " + " with ".join(f"{k} ({p})" for k, p in kinds.items()))
    shards = "label shards" in kinds
    bad = 0

    def fail(message: str) -> None:
        nonlocal bad
        bad += 1
        on_error(message)

    parts = read_shard_rows(paths, fail) if shards else read_rows(paths, fail)
    if bad and not shards:
        raise InputError(f"{bad} of {len(paths)} parts cannot be merged; nothing written")
    labels, errors = merge_rows(parts)
    for message in errors:
        on_error(message)
    counts = write_labels(labels, out, format, images, segmentation, on_error)
    return MergeCounts(len(paths), counts.images, counts.boxes, bad + len(errors) + counts.failed)


def _check_segmentations(part: CocoFile, limit: int = 1000) -> None:
    """Decode (up to ``limit``) segmentations of a part in pycocotools, as every consumer will; a box-only
    annotation has none to check. An undecodable one is an InputError naming the part."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = part.data
        try:
            coco.createIndex()
        except Exception as e:  # noqa: BLE001 - pycocotools indexes with bare subscripts (KeyError, TypeError)
            raise InputError(
                f"{part.path}: pycocotools cannot index it ({type(e).__name__}: {e}); "
                "every annotation needs an id and a category_id, every category an id"
            ) from None
        checked = 0
        for n, a in enumerate(part.data["annotations"]):
            if checked >= limit:
                break
            if "segmentation" not in a:
                continue
            checked += 1
            try:
                coco.annToMask(a)
            except Exception as e:  # noqa: BLE001 - pycocotools raises anything on a malformed segmentation
                raise InputError(
                    f"{part.path}: annotations[{n}]: segmentation cannot be decoded ({type(e).__name__}: {e})"
                ) from None
