"""Frozen ViT features as MOVE uses them: tokens through the penultimate block, then a NEW
trainable LayerNorm (384, eps 1e-6; official segmenter.py ViTFeatureExtractor), CLS dropped,
reshaped to (B, C, H/p, W/p)."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import BackboneConfig, PosEmbedRule

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer


_WEIGHTS_FOLLOW = contextvars.ContextVar("weights_follow", default=False)


@contextlib.contextmanager
def weights_follow() -> Iterator[None]:
    """ViTs built inside skip timm's random initialisation, for a loader whose strict load replaces every tensor
    right after: timm's truncated-normal init of a ViT-S/8 takes ~1.5 s of a 2-core CPU, a ViT-B/8's ~4x that,
    paid at the start of every command (VoteCut loads six). The loaded model is the same either way."""
    token = _WEIGHTS_FOLLOW.set(True)
    try:
        yield
    finally:
        _WEIGHTS_FOLLOW.reset(token)


def build_vit(cfg: BackboneConfig, layer_scale: bool = False, registers: int = 0) -> VisionTransformer:
    """A timm VisionTransformer with the config's shape. Its state-dict keys are those of the
    original DINO release (cls_token, pos_embed, patch_embed.proj, blocks.N.*, norm).

    ``layer_scale`` adds DINOv2's per-block LayerScale (``blocks.N.ls1.gamma``, ``ls2.gamma``; the value
    comes from the weights), ``registers`` DINOv2's register tokens as ``register_tokens`` (1, R, D):
    the key names of the official DINOv2 files (facebookresearch/dinov2 vision_transformer.py). The
    registers are not timm's ``reg_token``: timm's forward never sees them, ``embed_patches`` inserts them."""
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio,
        qkv_bias=True,
        num_classes=0,
        init_values=1.0 if layer_scale else None,
        weight_init="skip" if _WEIGHTS_FOLLOW.get() else "",
    )
    if registers:
        vit.register_tokens = nn.Parameter(torch.zeros(1, registers, cfg.embed_dim))
    return vit


def dino_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """DINO's interpolate_pos_encoding: bicubic with scale factor (n + 0.1) / sqrt(N).

    The +0.1 (dino issue #8) makes the sampling grid differ slightly from an exact resize, so
    parity with the official pipeline needs this rule, not timm's. Returns (1, 1 + h*w, C).
    """
    n = pos_embed.shape[1] - 1
    side = int(math.sqrt(n))
    if grid_h * grid_w == n and grid_h == grid_w:
        return pos_embed
    cls_pe, patch_pe = pos_embed[:, :1], pos_embed[:, 1:]
    dim = pos_embed.shape[-1]
    patch_pe = F.interpolate(
        patch_pe.reshape(1, side, side, dim).permute(0, 3, 1, 2).float(),
        scale_factor=((grid_h + 0.1) / math.sqrt(n), (grid_w + 0.1) / math.sqrt(n)),
        mode="bicubic",
    )
    assert patch_pe.shape[-2:] == (grid_h, grid_w), patch_pe.shape
    patch_pe = patch_pe.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim).to(pos_embed.dtype)
    return torch.cat([cls_pe, patch_pe], dim=1)


def resized_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int, antialias: bool = False) -> torch.Tensor:
    """Bicubic resize of the patch table to exactly the grid, in float32. ``antialias``: DINOv2's register
    models (``interpolate_offset=0``, ``interpolate_antialias=True``: facebookresearch/dinov2
    hub/backbones.py); without: CuVLER's DINOv2 copy, whose ``scale_factor=(g + 0.1)/37`` with
    ``recompute_scale_factor=True`` amounts to ``size=(g, g)`` (CuVLER dinov2/models/vision_transformer.py)."""
    n = pos_embed.shape[1] - 1
    side = math.isqrt(n)
    if grid_h * grid_w == n and grid_h == grid_w:
        return pos_embed
    dim = pos_embed.shape[-1]
    patch_pe = F.interpolate(
        pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2).float(),
        size=(grid_h, grid_w),
        mode="bicubic",
        antialias=antialias,
    )
    patch_pe = patch_pe.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim).to(pos_embed.dtype)
    return torch.cat([pos_embed[:, :1], patch_pe], dim=1)


def timm_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """timm's dynamic-size rule: resample to the exact grid."""
    from timm.layers import resample_abs_pos_embed

    return resample_abs_pos_embed(pos_embed, (grid_h, grid_w), num_prefix_tokens=1)


def embed_patches(vit: VisionTransformer, x: torch.Tensor, pos_rule: PosEmbedRule = "dino") -> torch.Tensor:
    """(B, 3, H, W), H and W multiples of the patch size -> (B, 1 + R + N, D) tokens before the first block:
    patch embedding, the CLS token, and position embeddings resampled to the grid by ``POS_RULES[pos_rule]``
    (DINO's, as the official DINO, DINOv2, MOVE, LOST, TokenCut and CutLER code, or another); then the R
    register tokens of a DINOv2 register model, after CLS and without position embeddings
    (facebookresearch/dinov2 ``prepare_tokens_with_masks``)."""
    b, _, h, w = x.shape
    p = vit.patch_embed.proj.kernel_size[0]
    if h % p or w % p:
        raise ValueError(f"input {h}x{w} is not a multiple of the patch size {p}; pad it first")
    assert vit.cls_token is not None and vit.pos_embed is not None  # build_vit's ViTs have both
    tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([vit.cls_token.expand(b, -1, -1), tokens], dim=1)
    tokens = tokens + POS_RULES[pos_rule](vit.pos_embed, h // p, w // p)
    registers = getattr(vit, "register_tokens", None)
    if registers is None:
        return tokens
    return torch.cat([tokens[:, :1], registers.expand(b, -1, -1), tokens[:, 1:]], dim=1)


def register_count(vit: VisionTransformer) -> int:
    """Register tokens ``embed_patches`` inserts after CLS (0 without)."""
    registers = getattr(vit, "register_tokens", None)
    return 0 if registers is None else int(registers.shape[1])


POS_RULES: dict[str, Callable[[torch.Tensor, int, int], torch.Tensor]] = {
    "dino": dino_pos_embed,
    "timm": timm_pos_embed,
    "size": resized_pos_embed,
    "size-antialias": partial(resized_pos_embed, antialias=True),
}


class FeatureExtractor(nn.Module):
    """ViT tokens -> (B, C, H/p, W/p) features. The ViT is frozen and always in eval mode; only
    ``norm`` trains (unless ``train_vit`` is set, for self-training with ``--train-backbone``)."""

    def __init__(self, cfg: BackboneConfig, vit: VisionTransformer | None = None):
        super().__init__()
        self.cfg = cfg
        self.vit: VisionTransformer = vit if vit is not None else build_vit(cfg)
        self.vit.requires_grad_(False)
        self.train_vit = False
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.patch_size = cfg.patch_size
        if cfg.pos_embed not in ("dino", "timm"):
            raise ValueError(f"pos_embed must be 'dino' or 'timm', not {cfg.pos_embed!r}")

    def set_train_vit(self, flag: bool) -> None:
        self.train_vit = flag
        self.vit.requires_grad_(flag)

    def train(self, mode: bool = True):
        super().train(mode)
        self.vit.train(mode and self.train_vit)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        gh, gw = h // self.patch_size, w // self.patch_size
        tokens = embed_patches(self.vit, x, self.cfg.pos_embed)
        for blk in self.vit.blocks[: self.cfg.feature_block + 1]:
            tokens = blk(tokens)
        tokens = self.norm(tokens)[:, 1:]
        return tokens.transpose(1, 2).reshape(b, -1, gh, gw)
