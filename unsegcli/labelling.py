"""Mask files -> pseudo-label files: masks are decoded and labelled in worker processes and
streamed, in sorted order, to a format writer (memory holds only the annotations themselves)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator

from .config import IMAGE_EXTENSIONS
from .errors import InputError, UsageError
from .io.images import InputItem, list_inputs
from .postprocess import coco as fmt
from .postprocess.components import DEFAULT_MIN_AREA, extract_boxes

FORMATS = ("coco", "selfmask", "lost-cad", "jsonl")


@dataclass(frozen=True)
class BoxOptions:
    threshold: float = 0.5
    connectivity: int = 8
    min_area: float = DEFAULT_MIN_AREA
    multi: bool = False
    with_rle: bool = True  # per-component RLE (coco)
    with_union: bool = False  # RLE of the union of kept components (selfmask)


def index_images(root: str) -> dict[str, InputItem]:
    """Images under ROOT keyed by relative path without extension (how masks are named)."""
    return {os.path.splitext(it.rel)[0]: it for it in list_inputs([root], IMAGE_EXTENSIONS)}


def displayed_size(path: str) -> tuple[int, int]:
    """(width, height) as displayed, read from the header only: EXIF rotations swap the sides."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: cannot read image size ({type(e).__name__}: {e})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


@dataclass(frozen=True)
class MaskTask:
    index: int
    mask_path: str
    file_name: str
    image_path: str | None


def label_one(task: MaskTask, opts: BoxOptions) -> fmt.ImageLabels:
    """One mask file -> its labels. Raises InputError for unreadable masks and size mismatches."""
    from .io.masks import read_mask

    mask = read_mask(task.mask_path)
    h, w = mask.shape
    if task.image_path is not None:
        iw, ih = displayed_size(task.image_path)
        if (iw, ih) != (w, h):
            raise InputError(f"{task.mask_path}: mask is {w}x{h} but image {task.image_path} is {iw}x{ih}")
    boxes, labels = extract_boxes(mask, opts.threshold, opts.connectivity, opts.min_area, opts.multi)
    out = fmt.ImageLabels(task.index, task.file_name, w, h, [list(b.box) for b in boxes], [b.area for b in boxes],
                          [b.score for b in boxes])
    if opts.with_rle or opts.with_union:
        from .postprocess.components import component_masks

        comps = component_masks(labels, boxes)
        if opts.with_rle:
            out.rles = fmt.rle_encode_many(comps)
        if opts.with_union:
            out.union_rle = fmt.rle_encode(comps.any(axis=2))
    return out


def _work(args: tuple[MaskTask, BoxOptions]) -> fmt.ImageLabels | str:
    task, opts = args
    try:
        return label_one(task, opts)
    except InputError as e:
        return e.message
    except Exception as e:  # noqa: BLE001 - one bad mask never stops the run
        return f"{task.mask_path}: {type(e).__name__}: {e}"


def plan_tasks(masks: list[str], images_root: str | None) -> list[MaskTask | str]:
    """Sorted mask inputs -> tasks; a mask without its image becomes an error string."""
    if images_root and not os.path.isdir(images_root):
        raise UsageError(f"--images must be a folder: {images_root}")
    items = list_inputs(masks, (".png",))
    index = index_images(images_root) if images_root else None
    tasks: list[MaskTask | str] = []
    for i, it in enumerate(items):
        if index is None:
            tasks.append(MaskTask(i, it.path, it.rel, None))
            continue
        img = index.get(os.path.splitext(it.rel)[0])
        if img is None:
            tasks.append(f"{it.path}: no image '{os.path.splitext(it.rel)[0]}.*' under {images_root}")
        else:
            tasks.append(MaskTask(i, it.path, img.rel, img.path))
    return tasks


def run_labelling(tasks: list[MaskTask | str], opts: BoxOptions, workers: int,
                  on_error: Callable[[str], None]) -> Iterator[fmt.ImageLabels]:
    """Yield labels in input order; errors go to ``on_error``."""
    todo = [(t, opts) for t in tasks if not isinstance(t, str)]
    for t in tasks:
        if isinstance(t, str):
            on_error(t)
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            for r in pool.imap(_work, todo, chunksize=16):
                if isinstance(r, str):
                    on_error(r)
                else:
                    yield r
    else:
        for args in todo:
            r = _work(args)
            if isinstance(r, str):
                on_error(r)
            else:
                yield r


def write_labels(labels: Iterable[fmt.ImageLabels], out: BinaryIO, format: str, dirname: str = "",
                 first_ann_id: int = 1) -> dict[str, int]:
    """Write one format to a binary stream; jsonl streams, the others are one JSON document."""
    if format not in FORMATS:
        raise UsageError(f"unknown format '{format}'", f"use one of {', '.join(FORMATS)}")
    counts = {"images": 0, "boxes": 0, "empty": 0}
    images, anns, selfmask, cad = [], [], {}, []
    for img in labels:
        counts["images"] += 1
        counts["boxes"] += len(img.boxes)
        counts["empty"] += not img.boxes
        if format == "jsonl":
            out.write((json.dumps(fmt.jsonl_record(img), separators=(",", ":")) + "\n").encode())
            out.flush()
        elif format == "coco":
            images.append(fmt.coco_image(img))
            anns.extend(fmt.coco_annotations(img, first_ann_id + len(anns)))
        elif format == "selfmask":
            key, rle = fmt.selfmask_entry(img)
            if key in selfmask:
                raise UsageError(f"two images share the basename '{key}', which SelfMask's format keys by")
            selfmask[key] = rle
        else:
            cad.append(fmt.lost_cad_record(img))
    doc = {"coco": lambda: fmt.coco_dataset(images, anns), "selfmask": lambda: selfmask,
           "lost-cad": lambda: fmt.lost_cad_dataset(cad, "unseg_pseudo", dirname)}.get(format)
    if doc is not None:
        out.write((json.dumps(doc(), separators=(",", ":")) + "\n").encode())
    return counts
