"""The one interface every mask method implements for prediction, and exact-shape bucketing.

``engine.predict`` streams any ``MaskPredictor`` over files and never asks which method it runs.
Batching: items are bucketed by their exact input shape, and each image is prepared on its own (as the
official batch-1 loops do), so a batch gives the same masks as batch 1: bucketing changes speed, never
results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch

# one item's result: a mask, or an instance label map with its objects' scores (MaskPredictor)
Output = np.ndarray | tuple[np.ndarray, Mapping[int, float]]


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
    ``tensor.shape`` are batched together. ``run`` returns one output per item at its ORIGINAL (H, W):
    kind "soft": a float32 array in [0, 1]; kind "instances": a uint8 label map (0 = background, k = object
    k), or ``(labels, scores)`` with ``scores[k]`` the score in [0, 1] of object k, which ``predict_files``
    stores with the mask (``io.instances``) for ``boxes``, ``--min-score`` and ``show`` to read. Kind
    "features" is the GPU stage of a split run: one ``io.features.FeatureRecord`` per item, which
    ``predict_files`` writes as a feature file instead of a mask."""

    kind: Literal["soft", "instances", "features"]
    device: torch.device

    def prepare(self, index: int, image: np.ndarray) -> Prepared: ...

    def run(self, batch: Sequence[Prepared]) -> Sequence[Output]: ...


class DeferredPredictor:
    """A predictor loaded on first use. ``predict_files`` asks for it only when some output is missing, so a
    re-run of a finished run (a resubmitted Slurm array, an output folder already complete) loads no model:
    six ViTs for VoteCut. ``kind`` is known without loading, as where the outputs go depends on it."""

    def __init__(self, kind: Literal["soft", "instances", "features"], build: Callable[[], MaskPredictor]):
        self.kind = kind
        self._build = build
        self._built: MaskPredictor | None = None

    def get(self) -> MaskPredictor:
        if self._built is None:
            self._built = self._build()
        return self._built


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
