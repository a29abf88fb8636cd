"""DINO and DINOv2 ViT features: the last-block queries and keys LOST, TokenCut, MaskCut and FOUND read (as
their official code), and the final-LayerNorm patch tokens VoteCut cuts for DINOv2 (CuVLER extract_eig_vecs.py).

Every official method hooks ``blocks[-1].attn.qkv`` (the Linear on ``norm1(x)`` of the last block),
reshapes its output (B, T, 3, heads, head_dim), takes index 1 and concatenates the heads: that is the
slice ``qkv[..., D:2D]``, no scaling, no normalisation; the CLS token is then dropped. Tokens go
through DINO's ``prepare_tokens`` (position embeddings resampled with the +0.1 rule). The three
geometries are the official preprocessing of each code path:

- ``pad``: full resolution, the normalised tensor zero-padded bottom/right to a patch multiple
  (LOST ``main_lost.py``, TokenCut ``main_tokencut.py``: the CorLoc code);
- ``resize``: PIL LANCZOS resize to ``round(w/p)*p x round(h/p)*p`` (TokenCut saliency ``resize_pil``);
- ``fixed``: PIL LANCZOS resize to a ``size x size`` square, aspect discarded, then ``resize_pil``
  (CutLER ``maskcut.py``: 480).

DINOv2 files (``dinov2-*`` in ``unseg weights list``; with or without registers) load through the same
``load_backbone``: the layout says which it is (LayerScale ``ls1.gamma`` keys, ``register_tokens``).
They have 14-px patches, so ``pad`` pads and ``resize``/``fixed`` round to multiples of 14 (``fixed`` 480 -> 476,
as CuVLER); register tokens are dropped with CLS from every feature.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import IMAGENET_MEAN, IMAGENET_STD, BackboneConfig, PosEmbedRule
from ..errors import CheckpointError, InputError
from .backbone import build_vit, embed_patches, register_count, weights_follow

# every DINO and DINOv2 ViT has 64-d heads: tiny 192/3, small 384/6, base 768/12, large 1024/16
# (dino vision_transformer.py, dinov2 vision_transformer.py)
DINO_HEAD_DIM = 64


def preprocess(
    image: np.ndarray, geometry: str, patch_size: int, fixed_size: int = 480
) -> tuple[torch.Tensor, tuple[int, int]]:
    """HxWx3 uint8 RGB -> ((3, Hp, Wp) float32 normalised tensor, (h, w) of the image content in it).

    ToTensor + Normalize(ImageNet) as every official script; the content is the unpadded part for
    ``pad`` and the whole resized image otherwise.
    """
    from PIL import Image

    h, w = image.shape[:2]
    if geometry != "pad":
        pil = Image.fromarray(image)
        if geometry == "fixed":
            pil = pil.resize((fixed_size, fixed_size), Image.Resampling.LANCZOS)
        # resize_pil: int(round(w / p)) * p, Python's round (half to even)
        nw = int(round(pil.width / patch_size)) * patch_size
        nh = int(round(pil.height / patch_size)) * patch_size
        if nw < patch_size or nh < patch_size:
            raise InputError(f"image {w}x{h} is smaller than one {patch_size}-px patch")
        if (nw, nh) != pil.size:
            pil = pil.resize((nw, nh), Image.Resampling.LANCZOS)
        image = np.asarray(pil)
        h, w = nh, nw
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    x = (x - mean) / std
    hp, wp = -(-h // patch_size) * patch_size, -(-w // patch_size) * patch_size
    if (hp, wp) != (h, w):  # zero = the mean colour after normalisation (main_lost.py `paded`)
        x = torch.nn.functional.pad(x, (0, wp - w, 0, hp - h))
    return x, (h, w)


def pos_rule_of(vit: Any) -> PosEmbedRule:
    """The position-embedding rule of the official code of ``vit``'s family: DINO's +0.1 rule for DINO and
    plain DINOv2 (``interpolate_offset=0.1``), an antialiased resize for DINOv2 register models
    (``interpolate_offset=0, interpolate_antialias=True``; facebookresearch/dinov2 hub/backbones.py)."""
    return "size-antialias" if register_count(vit) else "dino"


def is_dinov2(vit: Any) -> bool:
    """DINOv2's blocks carry LayerScale (``ls1.gamma``); DINO's do not."""
    return hasattr(vit.blocks[0].ls1, "gamma")


@torch.no_grad()
def last_block_qk(vit: Any, x: torch.Tensor, pos_rule: PosEmbedRule | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) -> queries and keys (each (B, T, D): CLS, any register tokens, then the patches) of the last
    block's attention: its qkv Linear (with bias) on ``norm1`` of the previous block's tokens, heads concatenated.
    ``pos_rule``: None = the official one of the backbone (``pos_rule_of``)."""
    tokens = embed_patches(vit, x, pos_rule or pos_rule_of(vit))
    for blk in vit.blocks[:-1]:
        tokens = blk(tokens)
    last = vit.blocks[-1]
    qkv = last.attn.qkv(last.norm1(tokens))
    d = qkv.shape[-1] // 3
    return qkv[..., :d], qkv[..., d : 2 * d]


def last_block_keys(vit: Any, x: torch.Tensor, pos_rule: PosEmbedRule | None = None) -> torch.Tensor:
    """(B, 3, H, W) -> (B, N, D) keys of the last block's attention for the N = (H/p)(W/p) patches (CLS and
    any register tokens dropped)."""
    return last_block_qk(vit, x, pos_rule)[1][:, 1 + register_count(vit) :]


@torch.no_grad()
def final_tokens(vit: Any, x: torch.Tensor, pos_rule: PosEmbedRule | None = None) -> torch.Tensor:
    """(B, 3, H, W) -> (B, N, D) patch tokens after every block and the final LayerNorm (DINOv2's
    ``x_norm_patchtokens``), CLS and register tokens dropped."""
    tokens = embed_patches(vit, x, pos_rule or pos_rule_of(vit))
    for blk in vit.blocks:
        tokens = blk(tokens)
    return vit.norm(tokens)[:, 1 + register_count(vit) :]


class LastBlockKeys(torch.nn.Module):
    """``last_block_keys`` of ``vit`` as a module: what ``model.forward.inference_forward`` runs (and exports)."""

    def __init__(self, vit: Any, pos_rule: PosEmbedRule | None = None):
        super().__init__()
        self.vit, self.pos_rule = vit, pos_rule or pos_rule_of(vit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return last_block_keys(self.vit, x, self.pos_rule)


class FinalTokens(torch.nn.Module):
    """``final_tokens`` of ``vit`` as a module (see ``LastBlockKeys``)."""

    def __init__(self, vit: Any, pos_rule: PosEmbedRule | None = None):
        super().__init__()
        self.vit, self.pos_rule = vit, pos_rule or pos_rule_of(vit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return final_tokens(self.vit, x, self.pos_rule)


def backbone_config_from_state(sd: dict[str, torch.Tensor], num_heads: int | None = None) -> BackboneConfig:
    """The ViT shape a DINO/timm state dict describes: patch from the patch conv, width from the CLS
    token, depth from the block indices, native size from the position embeddings; heads are not
    in the weights, so DINO's 64-d head rule gives them unless ``num_heads`` is passed."""
    try:
        proj = sd["patch_embed.proj.weight"]
        dim = int(sd["cls_token"].shape[-1])
        n_pos = int(sd["pos_embed"].shape[1]) - 1
        hidden = int(sd["blocks.0.mlp.fc1.weight"].shape[0])
        depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
        patch = int(proj.shape[-1])
        if min(dim, n_pos, hidden, patch) < 1:
            raise ValueError("a ViT has no empty dimension")
    except KeyError as e:
        raise CheckpointError(f"not a ViT state dict: no '{e.args[0]}'") from None
    except (IndexError, ValueError):  # tensors of other ranks, "blocks.x" keys: a file of another model
        raise CheckpointError("not a ViT state dict: its tensors do not have a ViT's shapes") from None
    side = math.isqrt(n_pos)
    heads = num_heads or max(1, dim // DINO_HEAD_DIM)
    return BackboneConfig(
        timm_name="",
        patch_size=patch,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=hidden / dim,
        img_size=side * patch,
        pos_embed="dino",
    )


def load_backbone(spec: str | Path, num_heads: int | None = None, explicit_attention: bool = False) -> Any:
    """The one ``--backbone`` resolver of the spectral methods: a known name (``unseg weights list``: DINO and
    DINOv2), a file path, or ``timm:NAME`` -> ``load_dino_vit`` of it."""
    from .registry import resolve_weights

    spec = str(spec)
    path = spec if spec.startswith("timm:") else resolve_weights(spec, env_var=None, default=None)
    return load_dino_vit(path, num_heads, explicit_attention)


def load_dino_vit(path: str | Path, num_heads: int | None = None, explicit_attention: bool = False) -> Any:
    """DINO's or DINOv2's original .pth (or timm's file, or ``timm:NAME``) -> timm ViT in eval mode, frozen.
    A DINOv2 file gets LayerScale and, for a register model, its ``register_tokens`` (``build_vit``).

    ``explicit_attention`` computes softmax(q kᵀ · scale) as DINO's own code does instead of timm's
    fused kernel: the keys then equal the official ones bit for bit in float32 (the fused kernel
    differs by ~1e-7), at the cost of materialising the T x T attention of every block.
    """
    from .state_dict import load_strict, read_backbone_state

    sd = read_backbone_state(path)
    try:
        cfg = backbone_config_from_state(sd, num_heads)
    except CheckpointError as e:  # the shape check knows no file name: name the file the user passed
        raise CheckpointError(f"{path}: {e.message}", e.hint) from None
    registers = sd.get("register_tokens")
    try:
        with weights_follow():  # load_strict replaces every tensor
            vit = build_vit(cfg, "blocks.0.ls1.gamma" in sd, 0 if registers is None else int(registers.shape[1]))
    except (AssertionError, ValueError, RuntimeError) as e:  # timm's checks, e.g. a width the heads do not divide
        raise CheckpointError(f"{path}: no ViT of this shape can be built ({e})") from None
    load_strict(vit, {k: v.float() for k, v in sd.items()}, f"backbone weights {path}")
    if explicit_attention:
        blk: Any
        for blk in vit.blocks:
            blk.attn.fused_attn = False
    return vit.eval().requires_grad_(False)
