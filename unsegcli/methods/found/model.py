"""FOUND's network (model.py FoundModel): a frozen DINO ViT and a 1x1 convolution on its last block's keys."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ...model.backbone import build_vit
from .config import FoundConfig
from .core import features


class FoundModel(nn.Module):
    """``vit`` (frozen, eval) + ``decoder`` = Conv2d(width, 1, 1x1) with bias (model.py: nn.Conv2d(384, 1, (1, 1)))."""

    def __init__(self, cfg: FoundConfig, vit: Any = None):
        super().__init__()
        self.cfg = cfg
        self.vit = (vit if vit is not None else build_vit(cfg.backbone)).eval().requires_grad_(False)
        self.decoder = nn.Conv2d(cfg.backbone.embed_dim, 1, (1, 1))
        self.patch_size = cfg.backbone.patch_size

    def train(self, mode: bool = True) -> FoundModel:
        super().train(mode)
        self.vit.eval()  # frozen: DINO has no dropout or BN, but keep it in eval as the official code
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.decoder.parameters())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, H, W), multiples of the patch size -> (patch logits (B, 1, h, w), keys (B, D, h, w), CLS
        attention (B, heads, h*w)); the ViT runs without gradients (model.py forward_step: torch.no_grad)."""
        keys, att = features(self.vit, x)
        return self.decoder(keys), keys, att
