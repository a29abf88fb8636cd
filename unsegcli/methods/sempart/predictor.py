"""Sempart masks for `unseg predict`: a MaskPredictor (``engine.predictor.MaskPredictor``) of kind "soft".

Preprocessing is the training distribution: every image is resized to input_size x input_size (320², aspect
not kept, our choice S#13), so no padding is needed and the mask corners are the image corners. The loss cannot
tell a mask from its inverse (eq. 6 and 8 are symmetric under S <-> 1 - S), so the foreground is chosen per
image by the paper's rule (d): binarise at 0.5, the partition touching fewer of the four corners is the
foreground, a tie goes to the smaller partition [P §4.1, Table 4]; the soft map is flipped to match (S#15).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ...config import PreprocessConfig
from ...engine.predictor import Prepared
from ...errors import UsageError
from ...model.forward import inference_forward
from .config import BRANCHES
from .model import SempartModel


def corner_flip(probs: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) probabilities -> (B,) bool, True where the foreground is the S <= 0.5 side: rule (d),
    fewest corners, tie (2 against 2) -> the smaller partition; a tie in area too keeps S."""
    binary = probs[:, 0] > 0.5
    fg_corners = binary[:, [0, 0, -1, -1], [0, -1, 0, -1]].sum(1)
    area = binary.flatten(1).float().mean(1)
    keep = (fg_corners < 2) | ((fg_corners == 2) & (area <= 0.5))
    return ~keep


def apply_polarity(probs: torch.Tensor) -> torch.Tensor:
    """Flip each image's soft mask whose foreground, by rule (d), is the low side."""
    flip = corner_flip(probs)[:, None, None, None]
    return torch.where(flip, 1 - probs, probs)


class BranchForward(torch.nn.Module):
    """A Sempart model's logits of one branch, as ``inference_forward`` runs them: the coarse branch skips the
    fine one, which is most of the head's cost."""

    def __init__(self, model: SempartModel, branch: str):
        super().__init__()
        self.model, self.branch = model, branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.backbone(x)
        if self.branch == "coarse":
            return self.model.coarse(self.model.encoder(feats))
        return self.model.heads(x, feats)[1]


class SempartPredictor:
    """A Sempart model on a device with a precision; ``branch`` "fine" (Sempart-Fine, the paper's headline) or
    "coarse" (the patch-grid mask, bilinearly upsampled, our choice S#14). ``preprocess`` gives the square side
    (``size``; default the model's input_size) and the normalisation; its ``max_size`` does not apply."""

    kind: Literal["soft", "instances"] = "soft"

    def __init__(
        self,
        model: SempartModel,
        preprocess: PreprocessConfig | None = None,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        branch: str = "fine",
        compile: bool = False,
        engine: str = "torch",
    ):
        if branch not in BRANCHES:
            raise UsageError(f"unknown Sempart branch '{branch}'", f"use one of {', '.join(BRANCHES)}")
        self.device = torch.device(device)
        self.precision = precision
        self.branch = branch
        self.model = model.eval().to(self.device)
        prep = preprocess or PreprocessConfig(size=model.cfg.input_size)
        self.size = prep.size
        if self.size % model.patch_size:
            raise UsageError(f"size {self.size} is not a multiple of the patch size {model.patch_size}")
        self._mean = np.array(prep.mean, np.float32)
        self._std = np.array(prep.std, np.float32)
        self.forward = inference_forward(BranchForward(self.model, branch), self.device, precision, engine, compile)

    def prepare(self, index: int, image: np.ndarray) -> Prepared:
        """HxWx3 uint8 -> (3, S, S) normalised, PIL bicubic as the training crops. CPU only."""
        from PIL import Image

        pil = Image.fromarray(image)
        if pil.size != (self.size, self.size):
            pil = pil.resize((self.size, self.size), Image.Resampling.BICUBIC)
        x = (np.asarray(pil, np.float32) / 255.0 - self._mean) / self._std
        tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        return Prepared(index, tensor, (self.size, self.size), image.shape[:2])

    @torch.inference_mode()
    def run(self, batch: Sequence[Prepared]) -> list[np.ndarray]:
        """Same-shape prepared images -> float32 foreground masks in [0, 1] at each original size."""
        tensors = [p.tensor for p in batch if p.tensor is not None]
        if len(tensors) != len(batch):
            raise ValueError("run() takes prepared images only; failed items have no tensor")
        probs = apply_polarity(torch.sigmoid(self.forward(torch.stack(tensors)).to(self.device)))
        out = []
        for i, p in enumerate(batch):
            m = F.interpolate(
                probs[i : i + 1], size=tuple(p.original), mode="bilinear", align_corners=False, antialias=True
            )
            out.append(m[0, 0].clamp_(0, 1).cpu().numpy())
        return out
