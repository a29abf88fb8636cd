"""Mask files -> pseudo-label files: masks are decoded and labelled in worker processes and streamed,
in sorted order, to a format writer (memory holds only the annotations themselves).

Under torchrun every rank labels its share and rank 0 gathers and writes them all in input order, so
the file equals a single-process run; with independent shards each process writes a part file for
``merge``. Image ids are positions in the full sorted input list either way.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..errors import InputError, UsageError
from ..io.files import open_output
from ..io.images import IMAGE_EXTENSIONS, scan_inputs
from ..io.instances import instance_scores
from ..io.pairing import FileIndex, key_of
from ..parallel import Failed, parallel_map
from .components import (
    DEFAULT_MIN_AREA,
    Component,
    Connectivity,
    component_masks,
    extract_boxes,
    instance_components,
    read_box_mask,
    rle_encode,
    rle_encode_many,
    scored_by_method,
)
from .formats import ImageLabels, LabelWriter, Segmentation, writer_class

if TYPE_CHECKING:
    from ..runtime import Shard


@dataclass(frozen=True)
class BoxOptions:
    threshold: float = 0.5  # foreground where mask / 255 > threshold
    connectivity: Connectivity = 8
    min_area: float = DEFAULT_MIN_AREA  # fraction of the image a box must cover
    multi: bool = False  # keep every component (else the largest)
    min_score: float = 0.0  # drop boxes whose score is lower: mean soft mask value inside, or the stored object score
    max_boxes: int | None = None  # keep at most this many boxes per image, the highest scores
    allow_color: bool = False  # box colour images by their luminance instead of refusing them as masks
    max_pixels: int | None = None  # largest mask / image accepted (default: Pillow's decompression-bomb limit)
    split_components: bool = False  # instance masks: a box per connected piece of an object (else per object)

    def __post_init__(self) -> None:
        if self.connectivity not in (4, 8):
            raise UsageError(f"connectivity must be 4 or 8, not {self.connectivity}")
        if self.max_boxes is not None and self.max_boxes < 1:
            raise UsageError(f"max_boxes must be at least 1, not {self.max_boxes}")


@dataclass(frozen=True)
class MaskTask:
    index: int  # position in the full sorted mask list (image id - 1)
    mask_path: str
    file_name: str
    image_path: str | None


class Plan(NamedTuple):
    tasks: list[MaskTask]
    errors: list[str]  # masks that cannot be labelled (no image for them), one message each
    unpaired: list[tuple[str, str]]  # of those, each mask without its image: (relative name, its message)
    ignored: str | None = None  # "ignored N files with other extensions (...)" in the mask folders, or None


FILTERS = ("min_area", "min_score", "max_boxes")  # in the order they apply


@dataclass
class LabelCounts:
    images: int = 0
    boxes: int = 0
    empty: int = 0  # images without any box
    failed: int = 0  # inputs that failed, over all ranks
    stale: int = 0  # files of an earlier export into the same folder, removed (folder formats)
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTERS, 0))  # boxes per filter


def displayed_size(path: str, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) as displayed, read from the header only: EXIF rotations swap the sides.
    ``max_pixels`` as ``io.images.decode_image`` takes it."""
    from PIL import Image

    from ..io.images import TOO_LARGE, _pixel_limit

    try:
        with _pixel_limit(max_pixels), Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: {TOO_LARGE} ({e}); raise max_pixels if the file is trusted") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure is this input's problem
        raise InputError(f"{path}: cannot read image size ({type(e).__name__}: {e})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def check_mask_size(mask_path: str, wh: tuple[int, int], image_path: str, max_pixels: int | None = None) -> None:
    """A mask must have its image's displayed size (boxes are in its pixels): InputError naming both if not."""
    iw, ih = displayed_size(image_path, max_pixels)
    if (iw, ih) != wh:
        raise InputError(f"{mask_path}: mask is {wh[0]}x{wh[1]} but image {image_path} is {iw}x{ih}")


def plan_tasks(
    masks: Sequence[str],
    images_root: str | None,
    shard: Shard | None = None,
    *,
    root: str | None = None,
    null: bool = False,
) -> Plan:
    """Sorted mask inputs -> this shard's tasks, and an error for each of its masks without an image.

    ``images_root``: file names become image paths relative to it (and sizes are checked); without it
    they are the masks' relative paths. ``root`` / ``null`` name and read mask inputs as
    ``io.images.scan_inputs`` does. Masks whose names collide, and masks whose image name is ambiguous
    (``a.jpg`` and ``a.png`` under the root), are errors of the plan, not of the run.
    """
    if images_root and not os.path.isdir(images_root):
        raise UsageError(f"images_root must be a folder: {images_root}")
    listing = scan_inputs(masks, (".png",), root=root, null=null)
    items = listing.items
    if not items and not listing.problems:
        raise UsageError("no mask PNGs found in the inputs")
    index = FileIndex(images_root, IMAGE_EXTENSIONS) if images_root else None
    mine = list(enumerate(items)) if shard is None else shard.take(list(enumerate(items)))
    plan = Plan(
        [], [] if shard is not None and not shard.is_main else list(listing.problems), [], listing.ignored_summary()
    )
    for i, it in mine:
        if index is None:
            plan.tasks.append(MaskTask(i, it.path, it.rel, None))
            continue
        found = index.by_key(key_of(it.rel))
        if found.item is None:
            plan.errors.append(found.problem(it.path, "image", index.root))
            plan.unpaired.append((it.rel, plan.errors[-1]))
        else:
            plan.tasks.append(MaskTask(i, it.path, found.item.rel, found.item.path))
    return plan


def select_components(
    comps: list[Component], n_components: int, opts: BoxOptions
) -> tuple[list[Component], dict[str, int]]:
    """Apply the filters to every component that passed ``min_area`` (as ``extract_boxes(multi=True)``
    sorts them), then single-object mode's largest: -> (kept, boxes each filter removed).

    ``max_boxes`` keeps the highest scores (ties: the earlier, larger box) in their original order.
    """
    removed = {"min_area": n_components - len(comps)}
    scored = [c for c in comps if c.score >= opts.min_score]
    removed["min_score"] = len(comps) - len(scored)
    if not opts.multi:
        scored = scored[:1]
    kept = scored
    if opts.max_boxes is not None and len(scored) > opts.max_boxes:
        best = sorted(range(len(scored)), key=lambda k: -scored[k].score)[: opts.max_boxes]
        kept = [scored[k] for k in sorted(best)]
    removed["max_boxes"] = len(scored) - len(kept)
    return kept, removed


def label_one(task: MaskTask, opts: BoxOptions, rle: bool = False, union: bool = False) -> ImageLabels:
    """One mask file -> its labels (with per-component / union RLEs when asked). Raises InputError for
    unreadable masks, colour images (unless ``opts.allow_color``) and size mismatches. A palette PNG
    is an instance map (io/instances.py): one component per object."""
    kind, mask = read_box_mask(task.mask_path, opts.allow_color, opts.max_pixels)
    h, w = mask.shape
    if task.image_path is not None:
        check_mask_size(task.mask_path, (w, h), task.image_path, opts.max_pixels)
    scores = instance_scores(task.mask_path)  # the method's own, stored with the mask (a soft mask's: object 1)
    return label_mask(kind, mask, scores, opts, task.index, task.file_name, rle, union)


def label_png(data: bytes, file_name: str, opts: BoxOptions, index: int = 0, rle: bool = False) -> ImageLabels:
    """A mask PNG as ``unseg predict`` writes it, in memory (8-bit grayscale, or a palette instance map with its
    scores) -> its labels, as ``label_one`` gives them for the same file. Anything else is an InputError."""
    import io

    from PIL import Image

    from ..io.images import pil_errors
    from ..io.instances import decode_instances

    with pil_errors(file_name, "mask"), Image.open(io.BytesIO(data)) as img:
        mode = img.mode
        if mode == "L":
            img.load()
            mask = np.asarray(img, dtype=np.uint8).copy()
    if mode == "P":
        return label_mask("instances", decode_instances(data), instance_scores(data), opts, index, file_name, rle)
    if mode != "L":
        raise InputError(f"{file_name}: not a mask PNG of `unseg predict` (mode {mode}, not L or P)")
    return label_mask("mask", mask, instance_scores(data), opts, index, file_name, rle)


def label_mask(
    kind: str,
    mask: np.ndarray,
    scores: dict[int, float] | None,
    opts: BoxOptions,
    index: int,
    file_name: str,
    rle: bool = False,
    union: bool = False,
) -> ImageLabels:
    """A decoded mask (``read_box_mask``'s kind and array; the ``scores`` stored with it: an instance map's per
    object, a soft mask's for its one object) -> its labels."""
    h, w = mask.shape
    if kind == "instances":  # one box per object (or per piece), largest first like components
        every, labels, n_objects = instance_components(
            mask, opts.min_area, opts.split_components, opts.connectivity, scores
        )
    else:  # a soft mask: its components, scored by their mean value and the method's stored score if any
        every, labels = extract_boxes(mask, opts.threshold, opts.connectivity, opts.min_area, multi=True)
        every = scored_by_method(every, (scores or {}).get(1))
        n_objects = int(labels.max(initial=0))
    comps, removed = select_components(every, n_objects, opts)
    out = ImageLabels(
        index,
        file_name,
        w,
        h,
        [list(c.xyxy) for c in comps],
        [c.area for c in comps],
        [c.score for c in comps],
        removed=removed,
    )
    if rle or union:
        stack = component_masks(labels, comps)
        if rle:
            out.rles = rle_encode_many(stack)
        if union:
            out.union_rle = rle_encode(np.asarray(stack.any(axis=2)))
    return out


def _mask_path(task: MaskTask) -> str:
    return task.mask_path


def labelled(
    tasks: Sequence[MaskTask], opts: BoxOptions, workers: int, rle: bool = False, union: bool = False
) -> Iterator[tuple[MaskTask, ImageLabels | Failed]]:
    """Each task with its labels, or the ``Failed`` that says why it has none, in task order."""
    work = functools.partial(label_one, opts=opts, rle=rle, union=union)
    return zip(tasks, parallel_map(work, tasks, workers, describe=_mask_path), strict=True)


def run_labelling(
    tasks: Sequence[MaskTask],
    opts: BoxOptions,
    workers: int,
    on_error: Callable[[str], None],
    rle: bool = False,
    union: bool = False,
) -> Iterator[ImageLabels]:
    """Labels in task order; failures go to ``on_error``."""
    for _, r in labelled(tasks, opts, workers, rle, union):
        if isinstance(r, Failed):
            on_error(r.message)
        else:
            yield r


def _writer_for(format: str, out: str) -> type[LabelWriter]:
    cls = writer_class(format)
    if cls.writes_folder and out == "-":
        raise UsageError(f"the {format} format writes a folder, so out cannot be '-' (stdout)")
    return cls


def write_labels(
    labels: Iterable[ImageLabels],
    out: str,
    format: str,
    dirname: str = "",
    segmentation: Segmentation = "rle",
    on_error: Callable[[str], None] | None = None,
    part: str = "",
) -> LabelCounts:
    """Feed labels to ``format``'s writer: one file (atomic, or stdout for '-') or a folder. An image
    the format cannot hold (``add`` raises InputError) goes to ``on_error`` (raised without one), is
    counted in ``failed`` and left out; the rest go on. ``part``: an independent shard's name."""
    cls = _writer_for(format, out)
    counts = LabelCounts()

    def feed(writer: LabelWriter) -> None:
        for img in labels:
            try:
                writer.add(img)
            except InputError as e:
                if on_error is None:
                    raise
                counts.failed += 1
                on_error(e.message)
                continue
            counts.images += 1
            counts.boxes += len(img.boxes)
            counts.empty += not img.boxes
            for name, n in img.removed.items():
                counts.removed[name] += n
        writer.finish()
        counts.stale = writer.removed_stale

    if cls.writes_folder:
        feed(cls(Path(out), dirname, segmentation, part))
    else:
        with open_output(out) as stream:
            feed(cls(stream, dirname, segmentation, part))
    return counts


def label_files(
    plan: Plan,
    out: str,
    format: str,
    opts: BoxOptions,
    workers: int = 0,
    shard: Shard | None = None,
    dirname: str = "",
    segmentation: Segmentation = "rle",
    on_error: Callable[[str], None] = lambda message: None,
    on_progress: Callable[[], None] = lambda: None,
) -> LabelCounts:
    """Label ``plan``'s masks and write ``format`` to ``out``; returns the counts (``failed`` summed
    over all ranks, the rest as written by this process: zeros on torchrun ranks other than 0).

    ``dirname`` is the image root the file names are relative to (LOST-CAD records it, the yolo
    formats link the images from it); ``segmentation`` is the coco format's mask encoding. Errors of
    the plan and of labelling each go to ``on_error``; ``on_progress`` ticks once per labelled mask.
    """
    cls = _writer_for(format, out)  # checked before any work
    n_failed = len(plan.errors)
    for message in plan.errors:
        on_error(message)

    def failed(message: str) -> None:
        nonlocal n_failed
        n_failed += 1
        on_error(message)

    def ticking() -> Iterator[ImageLabels]:
        for r in run_labelling(plan.tasks, opts, workers, failed, rle=cls.needs_rle, union=cls.needs_union):
            on_progress()
            yield r

    counts = LabelCounts()
    if shard is not None and shard.torchrun:
        from ..runtime import gather_to_main, sum_across

        parts = gather_to_main(shard, list(ticking()))
        if parts is not None:  # rank 0 writes every rank's labels in input order
            ordered = sorted((r for p in parts for r in p), key=lambda r: r.index)
            counts = write_labels(ordered, out, format, dirname, segmentation, failed)
        (n_failed,) = sum_across(shard, [n_failed])
    else:
        part = f"{shard.rank}of{shard.world}" if shard is not None and shard.world > 1 else ""
        counts = write_labels(ticking(), out, format, dirname, segmentation, failed, part)
    counts.failed = n_failed
    return counts
