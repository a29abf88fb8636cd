"""Backbone + head: normalised images -> mask logits at the input resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import ModelConfig
from ...model.backbone import FeatureExtractor
from .head import ConvHead

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad right and bottom to a multiple (official infer.py). Reflection needs the pad to
    be smaller than the side, so sides shorter than that (tiny images) are padded by replication."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class Segmenter(nn.Module):
    def __init__(self, cfg: ModelConfig, vit: VisionTransformer | None = None):
        super().__init__()
        self.cfg = cfg
        self.backbone = FeatureExtractor(cfg.backbone, vit)
        self.head = ConvHead(cfg.backbone.embed_dim, cfg.head)
        self.channels_last = False

    def use_channels_last(self) -> Segmenter:
        """Run the conv head in channels-last layout (weights and input): ~25% faster on CPU
        (oneDNN) and the layout tensor cores want on GPU. Converting only the weights is slower."""
        self.head.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def set_fused_attention(self, enabled: bool) -> Segmenter:
        """Use (or not) PyTorch's fused scaled-dot-product attention in the timm ViT blocks: faster,
        and equal to the explicit softmax(QK^T)V up to float rounding."""
        for blk in self.backbone.vit.blocks:
            if hasattr(blk.attn, "fused_attn"):
                blk.attn.fused_attn = enabled
        return self

    @property
    def patch_size(self) -> int:
        return self.cfg.backbone.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) normalised, H and W multiples of the patch size. Returns (B, 1, H, W) logits."""
        feats = self.backbone(x)
        if self.channels_last:
            feats = feats.contiguous(memory_format=torch.channels_last)
        return self.head(feats)
