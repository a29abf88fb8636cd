"""Images -> masks at the original size.

``predict_masks`` is the array-in, array-out entry point; ``predict_files`` runs a predictor over image
files and writes one mask PNG per image (decoding in worker processes, writing in background threads).
Both work with any ``MaskPredictor``: MOVE's ``Predictor`` (soft masks) is the first.

Batching: images are bucketed by their exact padded input shape, and each image is reflect-padded
on its own (as the official batch-1 loop does), so a batch gives the same masks as batch 1 —
bucketing changes speed, never results. Most datasets have few aspect ratios (VOC: 500x375,
500x333, ...), so buckets fill quickly.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .config import PreprocessConfig
from .errors import InputError, UsageError
from .io.files import BackgroundWriter, atomic_write_bytes, remove_stale_temps
from .io.images import TOO_LARGE, InputItem, InputListing, decode_image, normalize, scan_inputs
from .io.masks import binary_to_uint8, mask_path_for, soft_to_uint8, with_tag, write_mask
from .model.segmenter import Segmenter, pad_to_multiple
from .parallel import held_signals
from .runtime import AUTOCAST_DTYPES, Shard, sum_across

if TYPE_CHECKING:
    from .refine import RefineOptions


def resized_size(w: int, h: int, size: int, max_size: int | None) -> tuple[int, int]:
    """Shorter side -> size, aspect kept, longer side capped at max_size: torchvision's Resize(int)
    rule, which the official infer.py uses. Returns (new_w, new_h)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    new_short = max(new_short, 1)
    return (new_short, new_long) if w <= h else (new_long, new_short)


# The largest model input accepted after resizing: a 448 shorter side allows a 37:1 aspect ratio. Without it a
# 1x300 strip becomes a 134,400x448 input that runs for minutes and fills memory instead of failing as one input.
MAX_MODEL_PIXELS = 7_500_000


def preprocess(image: np.ndarray, cfg: PreprocessConfig, patch_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """HxWx3 uint8 -> (3, Hp, Wp) float32: PIL bicubic resize, ImageNet mean/std, reflect pad."""
    from PIL import Image

    h, w = image.shape[:2]
    nw, nh = resized_size(w, h, cfg.size, cfg.max_size)
    if nw * nh > MAX_MODEL_PIXELS:
        raise InputError(
            f"resized for the model to {nw}x{nh} ({nw * nh:,} pixels, over {MAX_MODEL_PIXELS:,}): its aspect ratio "
            f"is extreme for a shorter side of {cfg.size}",
            "cap the longer side with max_size",
        )
    pil = Image.fromarray(image)
    if (nw, nh) != (w, h):
        pil = pil.resize((nw, nh), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = normalize(x, cfg.mean, cfg.std)
    return pad_to_multiple(x[None], patch_size)[0], (nh, nw)


@dataclass
class Prepared:
    index: int
    tensor: torch.Tensor | None  # model input (C, H, W), or None when decoding failed
    resized: tuple[int, int] = (0, 0)  # (h, w) before padding
    original: tuple[int, int] = (0, 0)  # (H, W) of the decoded image
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific, CPU arrays/tensors only


class MaskPredictor(Protocol):
    """Anything that turns images into masks for ``predict_files`` (which never branches on the method).

    ``prepare`` runs in forked DataLoader decode workers: CPU only, no CUDA. Items with equal
    ``tensor.shape`` are batched together. ``run`` returns one array per item at its ORIGINAL (H, W):
    kind "soft": float32 in [0, 1]; kind "instances": uint8 label map, 0 = background, k = object k."""

    kind: Literal["soft", "instances"]
    device: torch.device

    def prepare(self, index: int, image: np.ndarray) -> Prepared: ...

    def run(self, batch: Sequence[Prepared]) -> list[np.ndarray]: ...


class Predictor:
    """MOVE's segmenter on a device with a precision: prepared batches -> soft masks.

    It takes the model over: eval mode, moved to ``device``, conv head in channels-last layout, fused
    attention as asked. Pass ``copy.deepcopy(model)`` to keep yours as it was (``predict_masks`` does)."""

    kind: Literal["soft", "instances"] = "soft"

    def __init__(
        self,
        model: Segmenter,
        preprocess_cfg: PreprocessConfig,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        fused_attention: bool = True,
        compile: bool = False,
    ):
        if precision not in AUTOCAST_DTYPES:
            raise UsageError(f"unknown precision '{precision}'", f"use one of {', '.join(AUTOCAST_DTYPES)}")
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.eval().to(self.device).set_fused_attention(fused_attention).use_channels_last()
        self.cfg = preprocess_cfg
        self.patch_size = model.patch_size  # read here so that decode workers never touch the model
        # torch.compile specialises per input shape; buckets keep the number of shapes small
        self.forward = torch.compile(self.model, dynamic=False) if compile else self.model

    def prepare(self, index: int, image: np.ndarray) -> Prepared:
        tensor, resized = preprocess(image, self.cfg, self.patch_size)
        return Prepared(index, tensor, resized, (image.shape[0], image.shape[1]))

    @torch.inference_mode()
    def run(self, batch: Sequence[Prepared]) -> list[np.ndarray]:
        """Same-shape prepared images -> float32 masks in [0, 1] at each original size."""
        x = torch.stack([p.tensor for p in batch if p.tensor is not None]).to(self.device, non_blocking=True)
        dtype = AUTOCAST_DTYPES[self.precision]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            logits = self.forward(x)
        probs = torch.sigmoid(logits.float())
        out = []
        for i, p in enumerate(batch):
            h, w = p.resized
            m = probs[i : i + 1, :, :h, :w]
            if (h, w) != tuple(p.original):
                m = F.interpolate(m, size=p.original, mode="bilinear", align_corners=False, antialias=True)
            out.append(m[0, 0].clamp_(0, 1).cpu().numpy())
        return out


def bucketed(prepared: Iterable[Prepared], batch_size: int, max_pending: int | None = None) -> Iterator[list[Prepared]]:
    """Group items of identical tensor shape into batches; failed items pass through alone.

    A bucket is emitted when full; when more than ``max_pending`` items wait in partial buckets,
    the fullest is emitted early, so memory stays bounded for datasets with many shapes.
    """
    max_pending = max_pending or 4 * batch_size
    buckets: dict[tuple[int, ...], list[Prepared]] = {}
    pending = 0
    for p in prepared:
        if p.tensor is None:
            yield [p]
            continue
        key = tuple(p.tensor.shape)
        bucket = buckets.setdefault(key, [])
        bucket.append(p)
        pending += 1
        if len(bucket) >= batch_size:
            pending -= len(bucket)
            yield buckets.pop(key)
        elif pending > max_pending:
            key = max(buckets, key=lambda k: len(buckets[k]))
            pending -= len(buckets[key])
            yield buckets.pop(key)
    for key in sorted(buckets):
        yield buckets.pop(key)


def predict_masks(
    model: Segmenter,
    images: Sequence[np.ndarray],
    preprocess_cfg: PreprocessConfig | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    precision: str = "fp32",
) -> list[np.ndarray]:
    """HxWx3 uint8 images -> HxW float32 soft masks in [0, 1], in input order. ``model`` is left as
    it was (the predictor works on a copy)."""
    predictor = Predictor(copy.deepcopy(model), preprocess_cfg or PreprocessConfig(), device, precision)
    results: dict[int, np.ndarray] = {}
    prepared = (predictor.prepare(i, img) for i, img in enumerate(images))
    for batch in bucketed(prepared, batch_size):
        for p, m in zip(batch, predictor.run(batch), strict=True):
            results[p.index] = m
    return [results[i] for i in range(len(images))]


class _DecodeDataset(torch.utils.data.Dataset):
    """Decode + ``predictor.prepare`` in DataLoader workers; a bad file becomes a Prepared with an error."""

    def __init__(self, paths: Sequence[str], predictor: MaskPredictor, max_pixels: int | None):
        self.paths, self.predictor, self.max_pixels = paths, predictor, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Prepared:
        try:
            return self.predictor.prepare(i, decode_image(self.paths[i], self.max_pixels))
        except InputError as e:  # decoding names the file; a predictor's prepare may not
            message = str(e) if self.paths[i] in e.message else f"{self.paths[i]}: {e}"
            return Prepared(i, None, error=message)
        except Exception as e:  # noqa: BLE001 - one bad image must never stop a run of thousands
            return Prepared(i, None, error=f"{self.paths[i]}: {type(e).__name__}: {e}")


def run_prediction(
    predictor: MaskPredictor,
    paths: Sequence[str],
    on_mask: Callable[[int, np.ndarray], None],
    on_error: Callable[[int, str], None],
    batch_size: int = 1,
    workers: int = 0,
    on_progress: Callable[[int], None] | None = None,
    max_pixels: int | None = None,
) -> None:
    """Stream ``paths`` through decode workers, buckets and the predictor; call back per image."""
    if not paths:
        return
    ds = _DecodeDataset(paths, predictor, max_pixels)
    # enough decoded images in flight to fill two batches, no more (each is ~3 MB at 448 px)
    prefetch = max(2, -(-2 * batch_size // workers)) if workers else None
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=predictor.device.type == "cuda",
        prefetch_factor=prefetch,
        collate_fn=lambda x: x,
    )
    # Decode workers never see the process group's signals (Slurm, `timeout`, Ctrl-C signal the group): they
    # would die first and torch would report each death as an error; this process stops and stops them.
    with held_signals():
        batches = iter(loader)
    try:
        for batch in bucketed(batches, batch_size):
            first = batch[0]
            if first.tensor is None:
                on_error(first.index, first.error or "cannot be read")
            else:
                for p, m in zip(batch, predictor.run(batch), strict=True):
                    on_mask(p.index, m)
            if on_progress is not None:
                on_progress(len(batch))
    finally:
        # now, not when the iterator is collected: after a signal that may be at exit, where multiprocessing
        # would wait for ever for workers that ignore its SIGTERM
        shutdown = getattr(batches, "_shutdown_workers", None)  # multi-process iterators only
        if shutdown is not None:
            shutdown()


def list_prediction_inputs(
    inputs: Sequence[str], out_dir: str | Path, *, root: str | None = None, null: bool = False, stdin: Any = None
) -> InputListing:
    """The images of ``inputs`` (files, folders, '-'), without any under ``out_dir``: an output folder
    inside an input folder must not feed its own masks back in on a re-run. Inputs whose names collide
    are left out and listed in ``problems`` (see ``io.images.scan_inputs``)."""
    out_real = os.path.realpath(out_dir)
    listing = scan_inputs(inputs, stdin=stdin, root=root, null=null)
    listing.items = [it for it in listing.items if not os.path.realpath(it.path).startswith(out_real + os.sep)]
    if not listing.items and not listing.problems:
        raise UsageError("no images found in the inputs", "accepted extensions: jpg jpeg png bmp webp tif tiff")
    return listing


@dataclass
class PredictSummary:
    """Counts of one ``predict_files`` run, summed over all ranks under torchrun."""

    images: int  # inputs this run was responsible for
    written: int
    skipped: int  # outputs that existed already
    failed: int
    too_large: int  # failures because an image exceeded the pixel limit
    seconds: float

    @property
    def rate(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def _write_instances(path: str, labels: np.ndarray, tag: str | None) -> None:
    from .io.instances import encode_instances  # only instance predictors need it

    atomic_write_bytes(path, with_tag(encode_instances(labels), tag))


def predict_files(
    predictor: MaskPredictor,
    items: Sequence[InputItem],
    out_dir: str | Path,
    *,
    shard: Shard | None = None,
    binary: bool = False,
    threshold: float = 0.5,
    overwrite: bool = False,
    batch_size: int = 1,
    workers: int = 0,
    max_pixels: int | None = None,
    refine: RefineOptions | None = None,
    tag: str | None = None,
    on_error: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> PredictSummary:
    """Write the mask of each item to ``out_dir/mask_path_for(item.rel)``.

    ``shard`` selects this process's share of ``items`` (and sums the counts over torchrun's ranks).
    Existing outputs are skipped unless ``overwrite``, so a re-run resumes. Soft masks are written as
    floor(m * 255), or 0/255 at ``threshold`` when ``binary``; instance label maps as palette PNGs.
    ``on_error(message)`` is called per failed image; ``on_progress(n, total)`` once with n = 0 when
    ``total`` is known, then per finished batch. ``refine``: each soft mask is refined with its image
    (bilateral solver or dense CRF) before it is written, in the writer threads. ``tag``: the settings tag
    every written PNG carries (``io.masks.settings_tag``).
    """
    if binary and predictor.kind != "soft":
        raise UsageError("binary applies to soft masks; this predictor writes instance label maps")
    if refine is not None and (binary or predictor.kind != "soft"):
        raise UsageError("refine applies to soft masks written without binary")
    shard = shard or Shard()
    mine = shard.take(items)
    outputs = [os.path.join(out_dir, mask_path_for(it.rel)) for it in mine]
    todo = [i for i, o in enumerate(outputs) if overwrite or not os.path.exists(o)]
    for folder in sorted({os.path.dirname(o) for o in outputs}):  # temps a killed run left (SIGKILL)
        remove_stale_temps(folder)
    failures: list[str] = []

    def failed(message: str) -> None:
        failures.append(message)
        if on_error is not None:
            on_error(message)

    def encode(mask: np.ndarray) -> np.ndarray:
        return binary_to_uint8(mask, threshold) if binary else soft_to_uint8(mask)

    if on_progress is not None:
        on_progress(0, len(todo))
    written = 0
    start = time.perf_counter()
    with BackgroundWriter() as writer:

        def on_mask(j: int, mask: np.ndarray) -> None:
            nonlocal written
            if refine is not None:
                from .refine.runner import refine_image_file

                writer.submit(refine_image_file, outputs[todo[j]], mask, mine[todo[j]].path, refine, max_pixels, tag)
            elif predictor.kind == "instances":
                writer.submit(_write_instances, outputs[todo[j]], mask, tag)
            else:
                writer.submit(write_mask, outputs[todo[j]], encode(mask), tag)
            written += 1

        run_prediction(
            predictor,
            [mine[i].path for i in todo],
            on_mask,
            lambda j, message: failed(message),
            batch_size=batch_size,
            workers=workers if len(todo) > 1 else 0,
            on_progress=(lambda n: on_progress(n, len(todo))) if on_progress is not None else None,
            max_pixels=max_pixels,
        )
    written -= len(writer.errors)
    for message in writer.errors:
        failed(message)
    seconds = time.perf_counter() - start
    too_large = sum(TOO_LARGE in m for m in failures)
    images, written, skipped, failed_total, too_large = sum_across(
        shard, [len(mine), written, len(mine) - len(todo), len(failures), too_large]
    )
    return PredictSummary(images, written, skipped, failed_total, too_large, seconds)
