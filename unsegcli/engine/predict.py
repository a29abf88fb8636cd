"""Streaming prediction: image files -> masks written at the original size, for any ``MaskPredictor``.

``predict_files`` decodes in DataLoader workers (``prepare`` runs there), groups equal shapes
(``engine.predictor.bucketed``), runs the predictor and writes one PNG per image in background threads: 8-bit
soft masks, or palette PNGs for instance label maps with the objects' scores when the predictor gives them
(``io.instances``). It never asks which method it runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError, UsageError
from ..io.features import encode_features, features_path_for
from ..io.files import BackgroundWriter, atomic_write_bytes, remove_stale_temps
from ..io.images import IMAGE_EXTENSIONS, TOO_LARGE, InputItem, InputListing, decode_image, scan_inputs
from ..io.masks import binary_to_uint8, mask_path_for, mask_png, soft_to_uint8, with_tag, write_mask
from ..parallel import loader_workers
from ..runtime import Shard, sum_across
from .predictor import DeferredPredictor, MaskPredictor, Output, Prepared, bucketed

if TYPE_CHECKING:
    from ..refine import RefineOptions


Decode = Callable[[str, int | None], Any]  # (path, max_pixels) -> what the predictor's prepare takes


def output_path_for(kind: str, rel: str) -> str:
    """Where ``predict_files`` writes the output of the input at relative path ``rel``: its mask PNG, or its
    feature file for a predictor of kind "features" (the GPU stage of a split run, ``io.features``)."""
    return features_path_for(rel) if kind == "features" else mask_path_for(rel)


class _DecodeDataset(torch.utils.data.Dataset):
    """Decode + ``predictor.prepare`` in DataLoader workers; a bad file becomes a Prepared with an error."""

    def __init__(self, paths: Sequence[str], predictor: MaskPredictor, max_pixels: int | None, decode: Decode):
        self.paths, self.predictor, self.max_pixels, self.decode = paths, predictor, max_pixels, decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Prepared:
        try:
            return self.predictor.prepare(i, self.decode(self.paths[i], self.max_pixels))
        except InputError as e:  # decoding names the file; a predictor's prepare may not
            message = str(e) if self.paths[i] in e.message else f"{self.paths[i]}: {e}"
            return Prepared(i, None, error=message)
        except Exception as e:  # noqa: BLE001 - one bad image must never stop a run of thousands
            return Prepared(i, None, error=f"{self.paths[i]}: {type(e).__name__}: {e}")


def run_prediction(
    predictor: MaskPredictor,
    paths: Sequence[str],
    on_mask: Callable[[int, Output], None],
    on_error: Callable[[int, str], None],
    batch_size: int = 1,
    workers: int = 0,
    on_progress: Callable[[int], None] | None = None,
    max_pixels: int | None = None,
    decode: Decode = decode_image,
) -> None:
    """Stream ``paths`` through decode workers, buckets and the predictor; call back per image. ``decode``
    reads one input for ``predictor.prepare`` (an image; a feature file in the CPU stage of a split run)."""
    if not paths:
        return
    ds = _DecodeDataset(paths, predictor, max_pixels, decode)
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
    with loader_workers(loader) as batches:
        for batch in bucketed(batches, batch_size):
            first = batch[0]
            if first.tensor is None:
                on_error(first.index, first.error or "cannot be read")
            else:
                for p, m in zip(batch, predictor.run(batch), strict=True):
                    on_mask(p.index, m)
            if on_progress is not None:
                on_progress(len(batch))


def list_prediction_inputs(
    inputs: Sequence[str],
    out_dir: str | Path,
    *,
    root: str | None = None,
    null: bool = False,
    stdin: Any = None,
    exts: tuple[str, ...] = IMAGE_EXTENSIONS,
) -> InputListing:
    """The images of ``inputs`` (files, folders, '-'), without any under ``out_dir``: an output folder
    inside an input folder must not feed its own masks back in on a re-run. Inputs whose names collide
    are left out and listed in ``problems`` (see ``io.images.scan_inputs``)."""
    out_real = os.path.realpath(out_dir)
    listing = scan_inputs(inputs, exts, stdin=stdin, root=root, null=null)
    listing.items = [it for it in listing.items if not os.path.realpath(it.path).startswith(out_real + os.sep)]
    if not listing.items and not listing.problems:
        what = "images" if exts == IMAGE_EXTENSIONS else "inputs"
        raise UsageError(f"no {what} found in the inputs", f"accepted extensions: {' '.join(e[1:] for e in exts)}")
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


def soft_score(output: Output) -> tuple[np.ndarray, float | None]:
    """A soft predictor's output -> (the mask, its method's score for the mask's one object, or None)."""
    if isinstance(output, tuple):
        mask, scores = output
        return mask, scores.get(1)
    return output, None


def encode_output(kind: str, output: Output, tag: str | None) -> bytes:
    """One predictor output -> the PNG bytes ``predict_files`` writes for it (a soft mask as floor(m * 255) with
    its score when the method gives one; an instance map as a palette PNG with its objects' scores), carrying
    the settings ``tag``."""
    if kind != "instances":
        mask, score = soft_score(output)
        return mask_png(soft_to_uint8(mask), tag, score)
    from ..io.instances import encode_instances  # only instance predictors need it

    labels, scores = output if isinstance(output, tuple) else (output, None)
    return with_tag(encode_instances(labels, scores), tag)


def _write_features(path: str, record: Any, settings: dict[str, Any], tag: str | None) -> None:
    atomic_write_bytes(path, encode_features(record, settings, tag))


def _write_instances(path: str, output: Output, tag: str | None) -> None:
    atomic_write_bytes(path, encode_output("instances", output, tag))


def predict_files(
    predictor: MaskPredictor | DeferredPredictor,
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
    decode: Decode = decode_image,
    settings: dict[str, Any] | None = None,
) -> PredictSummary:
    """Write the mask of each item to ``out_dir/mask_path_for(item.rel)``.

    ``shard`` selects this process's share of ``items`` (and sums the counts over torchrun's ranks).
    Existing outputs are skipped unless ``overwrite``, so a re-run resumes. Soft masks are written as
    floor(m * 255), or 0/255 at ``threshold`` when ``binary``; instance label maps as palette PNGs.
    ``on_error(message)`` is called per failed image; ``on_progress(n, total)`` once with n = 0 when
    ``total`` is known, then per finished batch. ``refine``: each soft mask is refined with its image
    (bilateral solver or dense CRF) before it is written, in the writer threads. ``tag``: the settings tag
    every written PNG carries (``io.masks.settings_tag``). A predictor of kind "features" (the GPU stage of a
    split run) writes feature files instead (``io.features``), recording ``settings`` (what ``tag`` hashes);
    ``decode`` reads each input (``run_prediction``). A ``DeferredPredictor`` is loaded only when an output is
    missing.
    """
    if binary and predictor.kind != "soft":
        raise UsageError("binary applies to soft masks; this predictor writes instance label maps")
    if refine is not None and (binary or predictor.kind != "soft"):
        raise UsageError("refine applies to soft masks written without binary")
    shard = shard or Shard()
    mine = shard.take(items)
    outputs = [os.path.join(out_dir, output_path_for(predictor.kind, it.rel)) for it in mine]
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

    if todo and isinstance(predictor, DeferredPredictor):
        predictor.get()  # now, as an eager predictor was: before the progress starts and outside the timed run
    if on_progress is not None:
        on_progress(0, len(todo))
    written = 0
    start = time.perf_counter()
    with BackgroundWriter() as writer:

        def on_mask(j: int, output: Output) -> None:
            nonlocal written
            out = outputs[todo[j]]
            written += 1
            if predictor.kind == "instances":
                writer.submit(_write_instances, out, output, tag)
                return
            if predictor.kind == "features":
                writer.submit(_write_features, out, output, settings or {}, tag)
                return
            mask, score = soft_score(output)
            if refine is not None:
                from ..refine.runner import refine_image_file

                writer.submit(refine_image_file, out, mask, mine[todo[j]].path, refine, max_pixels, tag, score)
            else:
                writer.submit(write_mask, out, encode(mask), tag, score)

        if todo:
            run_prediction(
                predictor.get() if isinstance(predictor, DeferredPredictor) else predictor,
                [mine[i].path for i in todo],
                on_mask,
                lambda j, message: failed(message),
                batch_size=batch_size,
                workers=workers if len(todo) > 1 else 0,
                on_progress=(lambda n: on_progress(n, len(todo))) if on_progress is not None else None,
                max_pixels=max_pixels,
                decode=decode,
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
