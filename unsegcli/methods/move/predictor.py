"""MOVE's prediction: the official preprocessing (infer.py) and the segmenter as a ``MaskPredictor``."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ...config import PreprocessConfig
from ...engine.predictor import Prepared, bucketed
from ...errors import InputError
from ...io.images import normalize
from ...model.forward import inference_forward
from .segmenter import Segmenter, pad_to_multiple


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


class Predictor:
    """MOVE's segmenter on a device with a precision and an engine (``model.forward.inference_forward``):
    prepared batches -> soft masks.

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
        engine: str = "torch",
    ):
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.eval().to(self.device).set_fused_attention(fused_attention).use_channels_last()
        self.cfg = preprocess_cfg
        self.patch_size = model.patch_size  # read here so that decode workers never touch the model
        self.forward = inference_forward(self.model, self.device, precision, engine, compile)

    def prepare(self, index: int, image: np.ndarray) -> Prepared:
        tensor, resized = preprocess(image, self.cfg, self.patch_size)
        return Prepared(index, tensor, resized, (image.shape[0], image.shape[1]))

    @torch.inference_mode()
    def run(self, batch: Sequence[Prepared]) -> list[np.ndarray]:
        """Same-shape prepared images -> float32 masks in [0, 1] at each original size."""
        x = torch.stack([p.tensor for p in batch if p.tensor is not None])
        probs = torch.sigmoid(self.forward(x).to(self.device))
        out = []
        for i, p in enumerate(batch):
            h, w = p.resized
            m = probs[i : i + 1, :, :h, :w]
            if (h, w) != tuple(p.original):
                m = F.interpolate(m, size=p.original, mode="bilinear", align_corners=False, antialias=True)
            out.append(m[0, 0].clamp_(0, 1).cpu().numpy())
        return out


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
