"""Builders shared by the tests: tiny random models, generated images. Fixtures live in conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unsegcli.config import PRESETS
from unsegcli.methods.move.segmenter import Segmenter


def randomize_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so that the eval path of the head is exercised, not an identity."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)


def tiny_model(seed: int = 0, **kw) -> Segmenter:
    """The 'tiny' preset (or ``ModelConfig.tiny(**kw)``), randomly initialised with spread-out logits."""
    from unsegcli.config import ModelConfig

    torch.manual_seed(seed)
    model = Segmenter(ModelConfig.tiny(**kw) if kw else PRESETS["tiny"])
    randomize_batchnorm(model.head)
    with torch.no_grad():  # spread the logits so masks vary across the image (default init is ~constant)
        model.head.model[-1].weight.mul_(600.0)
    return model.eval()


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colours (not white noise), so masks vary across the image."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))


def write_images(folder: Path, sizes: list[tuple[int, int]], ext: str = "png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"img_{i:02d}.{ext}"
        Image.fromarray(random_image(h, w, seed=i)).save(p)
        paths.append(p)
    return paths


def dino_key_names(depth: int) -> set[str]:
    """The keys of DINO's own ViT checkpoints (dino_deitsmall16_pretrain.pth: a plain state dict of
    vision_transformer.py's VisionTransformer, no head), transcribed from DINO's module names."""
    block = [
        f"{m}.{p}"
        for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
        for p in ("weight", "bias")
    ]
    names = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    return names | {f"blocks.{i}.{k}" for i in range(depth) for k in block}


def save_dino_backbone(
    path: Path, patch_size: int = 16, embed_dim: int = 64, depth: int = 2, img_size: int = 64, seed: int = 0
) -> Path:
    """A random DINO-shaped ViT (64-d heads, as every DINO ViT) saved as DINO's own .pth: a plain state
    dict in DINO's key layout (checked against ``dino_key_names``)."""
    from unsegcli.config import BackboneConfig
    from unsegcli.model.backbone import build_vit

    torch.manual_seed(seed)
    cfg = BackboneConfig(
        timm_name="",
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=max(1, embed_dim // 64),
        img_size=img_size,
    )
    state = dict(build_vit(cfg).state_dict())
    assert set(state) == dino_key_names(depth), set(state) ^ dino_key_names(depth)
    torch.save(state, path)
    return path
