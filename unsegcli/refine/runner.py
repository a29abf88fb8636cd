"""Mask files + their images -> refined mask PNGs, streamed through worker processes.

Pairing is ``unseg boxes --images``'s (``io.pairing``): a mask's relative path without extension names the
image's relative path without extension under the images folder. Masks are read as ``boxes`` reads them: a
colour photo or an instance (palette) mask is refused, named, as one failed input. Outputs keep the mask's
relative path (as .png), are written atomically, and existing ones are skipped unless ``overwrite``, so an
interrupted run resumes. Each bad input (no image, unreadable file) is reported through ``on_error`` and the
rest go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError
from ..io.images import IMAGE_EXTENSIONS, scan_inputs
from ..io.pairing import FileIndex, key_of
from ..parallel import Failed, parallel_map
from . import RefineOptions

if TYPE_CHECKING:
    from ..runtime import Shard

MASK_EXTENSIONS = (".png",)
# Read as grey levels, a palette PNG's object indices (1, 2, ...) are all below any foreground cut, so the
# solver would silently empty it: refused per file instead. The bilateral solver and the CRF refine one soft
# foreground (TokenCut, MOVE, CutLER refine single-object masks); give each object as its own mask.
INSTANCE_MASK = (
    "an instance (palette) mask: refine takes soft or binary masks (one foreground), "
    "so its objects cannot be refined together; refine a soft mask of each object"
)


@dataclass(frozen=True)
class RefineTask:
    mask_path: str
    image_path: str
    out_path: str
    tag: str | None = None  # the settings tag the output carries (io.masks.settings_tag)


@dataclass
class RefineSummary:
    masks: int = 0  # tasks in this shard, unpaired masks included
    written: int = 0
    skipped: int = 0  # outputs that existed already
    failed: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def output_path(out_dir: str, rel: str) -> str:
    return os.path.join(out_dir, os.path.splitext(rel)[0] + ".png")


def plan_refine(
    masks: Sequence[str],
    images_root: str,
    out_dir: str,
    *,
    root: str | None = None,
    null: bool = False,
    tag: str | None = None,
) -> list[RefineTask | str]:
    """Sorted mask inputs (files, folders, '-'; named as ``io.images.scan_inputs`` names them, relative to
    ``root`` if given) -> tasks; a mask without its image (``io.pairing``: by relative path), whose image is
    ambiguous, or whose name collides with another's, becomes an error string. No mask at all is a UsageError.
    Files already under ``out_dir`` are left out, so an output folder inside the mask folder is never re-read."""
    if not os.path.isdir(images_root):
        raise UsageError(f"the images folder does not exist or is not a folder: {images_root}")
    out_real = os.path.realpath(out_dir) + os.sep
    listing = scan_inputs(masks, MASK_EXTENSIONS, root=root, null=null)
    items = [it for it in listing.items if not os.path.realpath(it.path).startswith(out_real)]
    if not items and not listing.problems:  # as `unseg boxes`: nothing to do is a usage error, not a success
        raise UsageError("no mask PNGs found in the inputs")
    images = FileIndex(images_root, IMAGE_EXTENSIONS)
    tasks: list[RefineTask | str] = list(listing.problems)
    for it in items:
        found = images.by_key(key_of(it.rel))
        if found.item is None:
            tasks.append(found.problem(it.path, "image", images_root))
        else:
            tasks.append(RefineTask(it.path, found.item.path, output_path(out_dir, it.rel), tag))
    return tasks


def encode(refined: np.ndarray, options: RefineOptions) -> np.ndarray:
    """Refined mask -> uint8 PNG levels: soft as MOVE's infer.py writes it (floor(m·255)), binary as 0/255."""
    from ..io.masks import soft_to_uint8

    return (refined * 255).astype(np.uint8) if options.binary else soft_to_uint8(refined)


def write_refined(
    out_path: str,
    mask: np.ndarray,
    image: np.ndarray,
    options: RefineOptions,
    tag: str | None = None,
    score: float | None = None,
) -> None:
    """Refine a [0, 1] mask against its decoded image and write the PNG atomically (with the method's ``score``
    of its object, if it has one: refining moves pixels, not the method's confidence in the object)."""
    from ..io.masks import write_mask
    from . import refine_mask

    write_mask(out_path, encode(refine_mask(mask, image, options), options), tag, score)


def refine_image_file(
    out_path: str,
    mask: np.ndarray,
    image_path: str,
    options: RefineOptions,
    max_pixels: int | None = None,
    tag: str | None = None,
    score: float | None = None,
) -> None:
    """One-pass ``predict --refine``: a predicted [0, 1] mask (at the image's size) and its image file -> the
    refined PNG. Shaped for ``BackgroundWriter.submit(refine_image_file, out_path, mask, image_path, options)``."""
    from ..io.images import decode_image

    write_refined(out_path, mask, decode_image(image_path, max_pixels), options, tag, score)


def refine_one(task: RefineTask, options: RefineOptions, max_pixels: int | None = None) -> str | None:
    """Read, refine, write one pair. Returns a notice (the mask was resized) or None; raises InputError
    (also for a colour photo or an instance mask, which have no one soft foreground to refine).
    ``max_pixels``: largest image decoded (default: Pillow's decompression-bomb limit)."""
    from ..errors import InputError
    from ..io.images import decode_image
    from ..labels.components import read_box_mask

    kind, levels = read_box_mask(task.mask_path, max_pixels=max_pixels)  # a photo is refused, as `boxes` does
    if kind == "instances":
        raise InputError(f"{task.mask_path}: {INSTANCE_MASK}")
    mask = levels.astype(np.float32) / 255.0
    image = decode_image(task.image_path, max_pixels)
    notice = None
    if mask.shape != image.shape[:2]:
        notice = (
            f"{task.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image {task.image_path} is "
            f"{image.shape[1]}x{image.shape[0]}; mask resized bilinearly to the image, as MOVE's solver does"
        )
    write_refined(task.out_path, mask, image, options, task.tag)
    return notice


Job = tuple[RefineTask, RefineOptions, int | None]  # (pair, options, max_pixels)


def _work(job: Job) -> str | None:
    return refine_one(*job)


def _describe(job: Job) -> str:
    return job[0].mask_path


def split_tasks(
    tasks: Sequence[RefineTask | str], overwrite: bool = False, shard: Shard | None = None
) -> tuple[list[RefineTask], list[str], int]:
    """This shard's part (every N-th of the sorted list) -> (pairs to compute, unpaired-mask errors, skipped
    count: outputs that exist already and are kept unless ``overwrite``)."""
    todo: list[RefineTask] = []
    unpaired: list[str] = []
    skipped = 0
    for t in shard.take(tasks) if shard is not None else tasks:
        if isinstance(t, str):
            unpaired.append(t)
        elif not overwrite and os.path.exists(t.out_path):
            skipped += 1
        else:
            todo.append(t)
    return todo, unpaired, skipped


def refine_files(
    tasks: Sequence[RefineTask | str],
    options: RefineOptions,
    workers: int = 0,
    overwrite: bool = False,
    shard: Shard | None = None,
    max_pixels: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> RefineSummary:
    """Refine this shard's tasks (``split_tasks``). ``on_progress(n, total)``: (0, total) once the pairs to
    compute are known, then (1, total) after each, as ``predict_files`` reports."""
    if options.method == "crf":
        from .crf import require_crf

        require_crf()  # a missing extra is one usage error before the run, not one failure per mask
    todo, unpaired, skipped = split_tasks(tasks, overwrite, shard)
    summary = RefineSummary(masks=len(todo) + len(unpaired) + skipped, skipped=skipped)

    def error(message: str) -> None:
        summary.failed.append(message)
        if on_error is not None:
            on_error(message)

    for message in unpaired:
        error(message)
    if on_progress is not None:
        on_progress(0, len(todo))

    jobs: list[Job] = [(t, options, max_pixels) for t in todo]
    # one pair takes 0.1-1 s, so chunks of one keep both workers busy to the end
    for result in parallel_map(_work, jobs, workers, _describe, chunksize=1):
        if isinstance(result, Failed):
            error(result.message)
        else:
            summary.written += 1
            if result is not None:
                summary.notices.append(result)
                if on_notice is not None:
                    on_notice(result)
        if on_progress is not None:
            on_progress(1, len(todo))
    return summary
