"""MOVE's training options: the frozen networks' shapes and the adversarial recipe (each cited).

MOVE = Bielski & Favaro, NeurIPS 2022 (sec. 3, supplementary D) and the official train.py (github
adambielski/move-seg).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ...config import PresetName, checked_fields, option

InpainterName = Literal["mae", "blur"]


@dataclass(frozen=True)
class MAEConfig:
    """The MAE inpainter's shape. Defaults: MAE ViT-L/16 (mae_visualize_vit_large_ganloss.pth)."""

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0

    @classmethod
    def tiny(cls, img_size: int = 64) -> MAEConfig:
        """A random MAE of a small shape: exercises the MOVE code path in tests and demos only."""
        return cls(
            img_size=img_size,
            embed_dim=64,
            depth=2,
            num_heads=2,
            decoder_embed_dim=32,
            decoder_depth=1,
            decoder_num_heads=2,
        )


# The discriminator's frozen feature network (a timm name): MOVE's projected discriminator takes Projected
# GAN's EfficientNet-Lite0 (official move-seg discriminators/pg_modules/projector.py, after autonomousvision/
# projected-gan pg_modules/projector.py: timm's tf_efficientnet_lite0).
DISC_NET = "tf_efficientnet_lite0"

# Shapes of the frozen MOVE networks for the small presets: a random MAE, and a discriminator at the crop size
# on timm's registered test model test_efficientnet (5 stages of 16-64 channels, output strides 4-32 like
# EfficientNet-Lite0's, 13x fewer parameters), so a pipeline test on 64-96 px images runs in seconds. Real
# presets keep MAE ViT-L/16, 224 and tf_efficientnet_lite0.
FROZEN_PRESETS: dict[str, tuple[MAEConfig, int, str]] = {
    "tiny": (MAEConfig.tiny(64), 64, "test_efficientnet"),
    "demo": (MAEConfig.tiny(96), 96, "test_efficientnet"),
}


@dataclass(frozen=True)
class MoveOptions:
    """What MOVE's objective adds to the generic TrainConfig: the discriminator's optimiser, the shift, the
    inpainter and the frozen networks' shapes."""

    lr_d: float | None = None  # the discriminator's lr; None = the segmenter's (MOVE sec. 3: both 2e-4)
    betas_d: tuple[float, float] = (0.0, 0.99)  # discriminator (official train.py)
    weight_decay_d: float = 0.01  # official: torch AdamW's default for the discriminator
    shift_range: float = 0.125  # Δ = 1/8 (MOVE sec. 3)
    inpainter: InpainterName = option(
        "mae", "mae (MOVE) or blur (non-learned, no weights needed).", cite="MOVE sec. 3: MAE ViT-L/16 (GAN loss)"
    )
    mae: MAEConfig = field(default_factory=MAEConfig)
    disc_resolution: int = 224  # the projected discriminator's input (official: 224)
    disc_net: str = DISC_NET  # the projected discriminator's frozen feature network (a timm name)

    @classmethod
    def for_arch(cls, arch: PresetName) -> MoveOptions:
        """The frozen networks' shapes that go with segmenter preset ``arch`` (small presets: small ones)."""
        mae, resolution, net = FROZEN_PRESETS.get(arch, (MAEConfig(), 224, DISC_NET))
        return cls(mae=mae, disc_resolution=resolution, disc_net=net)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MoveOptions:
        kw = checked_fields(cls, data)
        if isinstance(kw.get("mae"), dict):
            kw["mae"] = MAEConfig(**checked_fields(MAEConfig, kw["mae"]))
        return cls(**kw)
