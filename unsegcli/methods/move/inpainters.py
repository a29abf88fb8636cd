"""Background inpainters for MOVE.

``MAEInpainter``: our encoder-decoder with the official MAE checkpoint layout (facebookresearch/mae
models_mae.py). All patches go to the encoder; before the decoder each tile's token becomes the convex
combination m̂·mask_token + (1 - m̂)·token (MOVE sec. 2.2), which keeps inpainting differentiable in m̂.
Inputs and outputs are ImageNet-normalised pixels.

``BlurInpainter``: a non-learned, differentiable stand-in (normalised convolution over the
visible pixels at several scales) for users without the MAE file, and for tests.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...model.backbone import dino_pos_embed
from .config import MAEConfig


def _blocks(dim: int, depth: int, heads: int, mlp_ratio: float) -> nn.ModuleList:
    from timm.models.vision_transformer import Block

    return nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=True, norm_layer=_MAENorm) for _ in range(depth))


class _MAENorm(nn.LayerNorm):
    """MAE's norm_layer: LayerNorm with eps 1e-6 (models_mae.py: partial(nn.LayerNorm, eps=1e-6))."""

    def __init__(self, dim: int, **kw: Any):
        kw.setdefault("eps", 1e-6)
        super().__init__(dim, **kw)


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)


class MAEInpainter(nn.Module):
    # MOVE's default composition: autoencode the real image too, so both sides share MAE's artefacts
    autoencodes = True

    def __init__(self, cfg: MAEConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MAEConfig()
        n = (cfg.img_size // cfg.patch_size) ** 2
        self.patch_embed = _PatchEmbed(cfg.patch_size, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, cfg.embed_dim), requires_grad=False)  # fixed sin-cos
        self.blocks = _blocks(cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio)
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.decoder_embed = nn.Linear(cfg.embed_dim, cfg.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, n + 1, cfg.decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = _blocks(cfg.decoder_embed_dim, cfg.decoder_depth, cfg.decoder_num_heads, cfg.mlp_ratio)
        self.decoder_norm = nn.LayerNorm(cfg.decoder_embed_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(cfg.decoder_embed_dim, cfg.patch_size**2 * 3)
        side = cfg.img_size // cfg.patch_size
        with torch.no_grad():  # MAE's initialisation (a loaded checkpoint overwrites them with the same values)
            self.pos_embed.copy_(sincos_pos_embed(cfg.embed_dim, side))
            self.decoder_pos_embed.copy_(sincos_pos_embed(cfg.decoder_embed_dim, side))
        self.requires_grad_(False)
        self.eval()

    @property
    def tile(self) -> int:
        return self.cfg.patch_size

    def train(self, mode: bool = True):  # frozen: always in eval mode
        return super().train(False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        gh, gw = h // self.tile, w // self.tile
        t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        pos = dino_pos_embed(self.pos_embed, gh, gw)  # the official composer interpolates as DINO does
        t = t + pos[:, 1:]
        t = torch.cat([(self.cls_token + pos[:, :1]).expand(b, -1, -1), t], 1)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)

    def decode(self, latent: torch.Tensor, keep: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """keep: (B, N) in [0, 1], 1 = keep the encoder token, 0 = the mask token."""
        t = self.decoder_embed(latent)
        k = keep.unsqueeze(-1).to(t.dtype)
        tiles = k * t[:, 1:] + (1 - k) * self.mask_token.to(t.dtype)
        t = torch.cat([t[:, :1], tiles], 1) + dino_pos_embed(self.decoder_pos_embed, *grid)
        for blk in self.decoder_blocks:
            t = blk(t)
        pred = self.decoder_pred(self.decoder_norm(t))[:, 1:]
        return unpatchify(pred, self.tile, grid)

    def forward(self, x: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
        """region: (B, 1, H/P, W/P) m̂ (1 = inpaint); None autoencodes (x̌)."""
        b, _, h, w = x.shape
        grid = (h // self.tile, w // self.tile)
        keep = torch.ones(b, grid[0] * grid[1], device=x.device) if region is None else 1 - region.flatten(1)
        return self.decode(self.encode(x), keep, grid)


def unpatchify(x: torch.Tensor, p: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, p*p*3) in MAE's (p, q, c) order -> (B, 3, H, W)."""
    b = x.shape[0]
    h, w = grid
    x = x.reshape(b, h, w, p, p, 3)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(b, 3, h * p, w * p)


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position embedding with a zero CLS row: (1, 1 + grid², dim)."""

    def one_d(d, pos):
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
        out = pos.reshape(-1)[:, None] * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], 1)

    gw, gh = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="xy"
    )
    emb = torch.cat([one_d(dim // 2, gh), one_d(dim // 2, gw)], 1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb], 0)[None].float()


def load_mae(path: str, cfg: MAEConfig | None = None) -> MAEInpainter:
    """The official MAE checkpoint (key 'model'), loaded strictly into our module."""
    from ...errors import CheckpointError
    from ...model.state_dict import load_strict, load_tensors

    ckpt = load_tensors(path, "an MAE checkpoint")
    sd = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: no 'model' state dict")
    model = MAEInpainter(cfg)
    load_strict(model, sd, f"MAE weights {path}")
    return model


class BlurInpainter(nn.Module):
    """Normalised convolution: b = G*(x·v) / G*v with v = 1 - upsample(m̂), at growing scales,
    each scale filling where the finer one saw too few visible pixels. Differentiable in m̂."""

    autoencodes = False  # composition copies the real image outside the inpainted region

    def __init__(self, tile: int = 16, sigmas: tuple[float, ...] = (4.0, 12.0, 36.0)):
        super().__init__()
        self.tile = tile
        self.sigmas = sigmas

    @staticmethod
    def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
        r = int(math.ceil(2.5 * sigma))
        t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
        g = torch.exp(-(t**2) / (2 * sigma**2))
        g = (g / g.sum()).view(1, 1, 1, -1)
        c = x.shape[1]
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), g.expand(c, 1, 1, -1), groups=c)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), g.transpose(-1, -2).expand(c, 1, -1, 1), groups=c)

    def forward(self, x: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
        if region is None:
            return x
        hole = F.interpolate(region, scale_factor=self.tile, mode="nearest")
        vis = 1 - hole
        fill = (x * vis).sum((2, 3), keepdim=True) / vis.sum((2, 3), keepdim=True).clamp_min(1e-6)
        out = fill.expand_as(x)
        for sigma in reversed(self.sigmas):  # coarse to fine
            num, den = self._blur(x * vis, sigma), self._blur(vis, sigma)
            conf = (den / 0.2).clamp(max=1.0)  # enough visible pixels nearby -> trust this scale
            out = conf * num / den.clamp_min(1e-6) + (1 - conf) * out
        # copy real in inpainted (official --copy_real_in_inpainted): real pixels outside the region
        return x * vis + out * hole
