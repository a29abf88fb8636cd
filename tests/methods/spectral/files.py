"""Tiny random backbones written in the official DINOv2 key layout (facebookresearch/dinov2
vision_transformer.py with block_chunks=0: ``blocks.N.ls1.gamma``, ``register_tokens``, ``mask_token``)."""

from __future__ import annotations

from pathlib import Path

import torch


def dinov2_state(dim: int = 64, depth: int = 2, side: int = 4, registers: int = 0, seed: int = 0) -> dict:
    """A random DINOv2-shaped state dict: 14-px patches, a side x side position table plus CLS, 64-d heads."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    sd = {
        "cls_token": r(1, 1, dim),
        "pos_embed": r(1, 1 + side * side, dim),
        "mask_token": r(1, dim),
        "patch_embed.proj.weight": r(dim, 3, 14, 14, scale=0.05),
        "patch_embed.proj.bias": r(dim),
        "norm.weight": 1 + r(dim),
        "norm.bias": r(dim),
    }
    if registers:
        sd["register_tokens"] = r(1, registers, dim, scale=1.0)
    for i in range(depth):
        b = f"blocks.{i}."
        sd |= {
            b + "norm1.weight": 1 + r(dim), b + "norm1.bias": r(dim),
            b + "attn.qkv.weight": r(3 * dim, dim), b + "attn.qkv.bias": r(3 * dim),
            b + "attn.proj.weight": r(dim, dim), b + "attn.proj.bias": r(dim),
            b + "ls1.gamma": r(dim, scale=1.0),
            b + "norm2.weight": 1 + r(dim), b + "norm2.bias": r(dim),
            b + "mlp.fc1.weight": r(4 * dim, dim), b + "mlp.fc1.bias": r(4 * dim),
            b + "mlp.fc2.weight": r(dim, 4 * dim), b + "mlp.fc2.bias": r(dim),
            b + "ls2.gamma": r(dim, scale=1.0),
        }  # fmt: skip
    return sd


def save_dinov2(path: Path, **kwargs) -> Path:
    torch.save(dinov2_state(**kwargs), path)
    return path
