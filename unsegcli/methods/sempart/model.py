"""Sempart's network [P = arXiv 2309.10972]: a frozen DINO ViT, a one-layer transformer encoder shared by a
coarse head (one logit per patch) and a fine refinement branch (one logit per pixel, image concatenated at
every scale). The ViT is the one MOVE uses (``build_vit`` + the DINO position-embedding rule), so DINO
weight files load into ``backbone.vit`` exactly as for MOVE; MOVE's trainable LayerNorm is absent: the
affinity graph must come from untouched frozen features (our reading of the paper)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import BackboneConfig
from ...model.backbone import build_vit, embed_patches
from .config import SempartConfig

if TYPE_CHECKING:
    from timm.models.vision_transformer import Attention, Block, VisionTransformer


class DinoFeatures(NamedTuple):
    patches: torch.Tensor  # (B, C, h, w) frozen DINO features of the patch grid
    cls: torch.Tensor  # (B, C) the [CLS] entry of the same tensor


class Output(NamedTuple):
    coarse: torch.Tensor  # (B, 1, h, w) logits on the patch grid (Sempart-Coarse)
    fine: torch.Tensor  # (B, 1, H, W) logits at the input resolution (Sempart-Fine)
    features: DinoFeatures  # what the affinity graph is built from (no gradient)


class FrozenDino(nn.Module):
    """DINO ViT -> last-layer keys (TokenCut's tensor, all heads concatenated) or last-block tokens after
    the final norm; CLS kept apart. Always frozen and in eval mode; runs without autograd."""

    def __init__(self, cfg: BackboneConfig, features: str = "keys", vit: VisionTransformer | None = None):
        super().__init__()
        self.cfg = cfg
        self.features = features
        self.vit: VisionTransformer = vit if vit is not None else build_vit(cfg)
        self.vit.requires_grad_(False)
        self.vit.eval()
        self.patch_size = cfg.patch_size

    def train(self, mode: bool = True) -> FrozenDino:
        super().train(mode)
        self.vit.eval()  # frozen: never train-mode (no dropout / drop-path whatever the caller does)
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> DinoFeatures:
        b, _, h, w = x.shape
        gh, gw = h // self.patch_size, w // self.patch_size
        vit = self.vit
        tokens = embed_patches(vit, x, self.cfg.pos_embed)
        if self.features == "keys":
            for blk in vit.blocks[:-1]:
                tokens = blk(tokens)
            last = cast("Block", vit.blocks[-1])
            attn = cast("Attention", last.attn)
            n = tokens.shape[1]
            qkv = attn.qkv(last.norm1(tokens)).reshape(b, n, 3, attn.num_heads, attn.head_dim)
            out = attn.k_norm(qkv[:, :, 1].transpose(1, 2)).transpose(1, 2).reshape(b, n, -1)
        else:
            for blk in vit.blocks:
                tokens = blk(tokens)
            out = vit.norm(tokens)
        patches = out[:, 1:].transpose(1, 2).reshape(b, -1, gh, gw)
        return DinoFeatures(patches, out[:, 0])


class Encoder(nn.Module):
    """Linear C -> d, then pre-norm transformer layers (d, 2 heads, MLP 4d, GELU, no dropout) over
    [CLS] + patch tokens; the CLS output is dropped [P App. C eq. 11; our choice S#2-#4]."""

    def __init__(self, in_dim: int, cfg: SempartConfig):
        super().__init__()
        self.use_cls = cfg.use_cls
        self.proj = nn.Linear(in_dim, cfg.encoder_dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                cfg.encoder_dim,
                cfg.encoder_heads,
                cfg.encoder_mlp,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(cfg.encoder_depth)
        )

    def forward(self, feats: DinoFeatures) -> torch.Tensor:
        b, _, h, w = feats.patches.shape
        tokens = feats.patches.flatten(2).transpose(1, 2)
        if self.use_cls:
            tokens = torch.cat([feats.cls[:, None], tokens], dim=1)
        y = self.proj(tokens)
        for layer in self.layers:
            y = layer(y)
        if self.use_cls:
            y = y[:, 1:]
        return y.transpose(1, 2).reshape(b, -1, h, w)


def _block(cin: int, cout: int, slope: float) -> nn.Sequential:
    """Block^in_out = conv3x3 (padding 1) -> BatchNorm -> LeakyReLU [P eq. 12]."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(slope))


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The "appropriately resized" image guide: area resampling (exact 2x/4x average pooling) [our choice S#9]."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="area")


class FineBranch(nn.Module):
    """log2(p) x [bilinear x2 -> concat resized image -> Block], one more Block, concat the image, 1x1 conv
    [P eq. 13, 18-20]. For ViT-S/8: 67 -> 192 -> (195) 128 -> (131) 128 -> 128 -> (131) 1."""

    def __init__(self, cfg: SempartConfig):
        super().__init__()
        self.n_up = cfg.upsampling_blocks
        widths = (cfg.encoder_dim, *cfg.fine_widths)
        self.blocks = nn.ModuleList(
            _block(widths[i] + (3 if i < self.n_up else 0), widths[i + 1], cfg.leaky_slope)
            for i in range(len(widths) - 1)
        )
        self.classifier = nn.Conv2d(widths[-1] + 3, 1, 1)

    def forward(self, feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        y = feats
        for i, blk in enumerate(self.blocks):
            if i < self.n_up:
                y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
                y = torch.cat([y, resize_image(image, (y.shape[-2], y.shape[-1])).to(y.dtype)], dim=1)
            y = blk(y)
        return self.classifier(torch.cat([y, image.to(y.dtype)], dim=1))


class SempartModel(nn.Module):
    """Normalised (B, 3, H, W) images, H and W multiples of the patch size -> coarse and fine logits."""

    def __init__(self, cfg: SempartConfig, vit: VisionTransformer | None = None):
        super().__init__()
        self.cfg = cfg
        self.backbone = FrozenDino(cfg.backbone, cfg.features, vit)
        self.encoder = Encoder(cfg.backbone.embed_dim, cfg)
        self.coarse = nn.Conv2d(cfg.encoder_dim, 1, 1)  # LCH^1_64 [P eq. 15-17]
        self.fine = FineBranch(cfg)

    @property
    def patch_size(self) -> int:
        return self.cfg.backbone.patch_size

    def heads(self, image: torch.Tensor, feats: DinoFeatures, joint: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Trainable part. ``joint=False`` blocks the fine branch's gradient into the shared encoder (the
        paper's "w/o joint training" ablation, §4.4)."""
        enc = self.encoder(feats)
        return self.coarse(enc), self.fine(enc if joint else enc.detach(), image)

    def forward(self, image: torch.Tensor) -> Output:
        feats = self.backbone(image)
        coarse, fine = self.heads(image, feats)
        return Output(coarse, fine, feats)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
