"""Images -> soft masks at the original size. No file IO here except through the callbacks of
``run_prediction``; ``predict_masks`` is the pure array-in, array-out entry point.

Batching: images are bucketed by their exact padded input shape, and each image is reflect-padded
on its own (as the official batch-1 loop does), so a batch gives the same masks as batch 1 —
bucketing changes speed, never results. Most datasets have few aspect ratios (VOC: 500x375,
500x333, ...), so buckets fill quickly.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import PreprocessConfig
from .errors import InputError, UsageError
from .model.segmenter import Segmenter, pad_to_multiple

log = logging.getLogger(__name__)


def resized_size(w: int, h: int, size: int, max_size: int | None) -> tuple[int, int]:
    """Shorter side -> size, aspect kept, longer side capped at max_size: torchvision's Resize(int)
    rule, which the official infer.py uses. Returns (new_w, new_h)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    new_short = max(new_short, 1)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def preprocess(image: np.ndarray, cfg: PreprocessConfig, patch_size: int
               ) -> tuple[torch.Tensor, tuple[int, int]]:
    """HxWx3 uint8 -> (3, Hp, Wp) float32: PIL bicubic resize, ImageNet mean/std, reflect pad."""
    from PIL import Image

    h, w = image.shape[:2]
    nw, nh = resized_size(w, h, cfg.size, cfg.max_size)
    pil = Image.fromarray(image)
    if (nw, nh) != (w, h):
        pil = pil.resize((nw, nh), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(cfg.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(cfg.std, dtype=torch.float32)[:, None, None]
    x = (x - mean) / std
    return pad_to_multiple(x[None], patch_size)[0], (nh, nw)


@dataclass
class Prepared:
    index: int
    tensor: torch.Tensor | None  # (3, Hp, Wp), or None when decoding failed
    resized: tuple[int, int] = (0, 0)  # (h, w) before padding
    original: tuple[int, int] = (0, 0)  # (H, W) of the decoded image
    error: str | None = None


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device '{spec}'", "use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device '{spec}' requested but CUDA is not available", "use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"device '{spec}' does not exist: {torch.cuda.device_count()} CUDA devices")
    return dev


AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Predictor:
    """A segmenter on a device with a precision; turns prepared batches into soft masks."""

    def __init__(self, model: Segmenter, preprocess_cfg: PreprocessConfig, device: torch.device | str = "cpu",
                 precision: str = "fp32", fused_attention: bool = True, compile: bool = False):
        if precision not in AUTOCAST_DTYPES:
            raise UsageError(f"unknown precision '{precision}'", "use fp32, bf16 or fp16")
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.eval().to(self.device)
        self.cfg = preprocess_cfg
        for blk in self.model.backbone.vit.blocks:
            if hasattr(blk.attn, "fused_attn"):
                blk.attn.fused_attn = fused_attention
        self.model.use_channels_last()
        # torch.compile specialises per input shape; buckets keep the number of shapes small
        self.forward = torch.compile(self.model, dynamic=False) if compile else self.model

    @property
    def patch_size(self) -> int:
        return self.model.patch_size

    def prepare(self, index: int, image: np.ndarray) -> Prepared:
        tensor, resized = preprocess(image, self.cfg, self.patch_size)
        return Prepared(index, tensor, resized, image.shape[:2])

    @torch.inference_mode()
    def run(self, batch: Sequence[Prepared]) -> list[np.ndarray]:
        """Same-shape prepared images -> float32 masks in [0, 1] at each original size."""
        x = torch.stack([p.tensor for p in batch]).to(self.device, non_blocking=True)
        dtype = AUTOCAST_DTYPES[self.precision]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            logits = self.forward(x)
        probs = torch.sigmoid(logits.float())
        out = []
        for i, p in enumerate(batch):
            h, w = p.resized
            m = probs[i: i + 1, :, :h, :w]
            if (h, w) != tuple(p.original):
                m = F.interpolate(m, size=tuple(p.original), mode="bilinear", align_corners=False,
                                  antialias=True)
            out.append(m[0, 0].clamp_(0, 1).cpu().numpy())
        return out


def bucketed(prepared: Iterable[Prepared], batch_size: int, max_pending: int | None = None
             ) -> Iterator[list[Prepared]]:
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


def predict_masks(model: Segmenter, images: Sequence[np.ndarray], preprocess_cfg: PreprocessConfig | None = None,
                  batch_size: int = 1, device: str = "cpu", precision: str = "fp32") -> list[np.ndarray]:
    """HxWx3 uint8 images -> HxW float32 soft masks in [0, 1], in input order."""
    predictor = Predictor(model, preprocess_cfg or PreprocessConfig(), device, precision)
    results: dict[int, np.ndarray] = {}
    prepared = (predictor.prepare(i, img) for i, img in enumerate(images))
    for batch in bucketed(prepared, batch_size):
        for p, m in zip(batch, predictor.run(batch)):
            results[p.index] = m
    return [results[i] for i in range(len(images))]


class _DecodeDataset(torch.utils.data.Dataset):
    """Decode + preprocess in DataLoader workers; a bad file becomes a Prepared with an error."""

    def __init__(self, paths: Sequence[str], cfg: PreprocessConfig, patch_size: int):
        self.paths, self.cfg, self.patch_size = paths, cfg, patch_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Prepared:
        from .io.images import decode_image

        try:
            img = decode_image(self.paths[i])
            tensor, resized = preprocess(img, self.cfg, self.patch_size)
            return Prepared(i, tensor, resized, img.shape[:2])
        except InputError as e:
            return Prepared(i, None, error=e.message)
        except Exception as e:  # noqa: BLE001 - one bad image must never stop a run of thousands
            return Prepared(i, None, error=f"{self.paths[i]}: {type(e).__name__}: {e}")


def run_prediction(predictor: Predictor, paths: Sequence[str], on_mask: Callable[[int, np.ndarray], None],
                   on_error: Callable[[int, str], None], batch_size: int = 1, workers: int = 0,
                   on_progress: Callable[[int], None] | None = None) -> None:
    """Stream ``paths`` through decode workers, buckets and the model; call back per image."""
    if not paths:
        return
    ds = _DecodeDataset(paths, predictor.cfg, predictor.patch_size)
    # enough decoded images in flight to fill two batches, no more (each is ~3 MB at 448 px)
    prefetch = max(2, -(-2 * batch_size // workers)) if workers else None
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, shuffle=False, num_workers=workers, pin_memory=predictor.device.type == "cuda",
        prefetch_factor=prefetch, collate_fn=lambda x: x)
    for batch in bucketed(loader, batch_size):
        if batch[0].tensor is None:
            on_error(batch[0].index, batch[0].error)
        else:
            for p, m in zip(batch, predictor.run(batch)):
                on_mask(p.index, m)
        if on_progress:
            on_progress(len(batch))
