"""Training configuration: typed and torch-free (``unseg --help`` imports it).

Defaults are MOVE's (Bielski & Favaro, NeurIPS 2022, sec. 3) and the official train.py
(github adambielski/move-seg); each cites its source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from ..config import ModelConfig, PreprocessConfig, PresetName
from ..sempart.config import SempartLossConfig

Precision = Literal["fp32", "bf16", "fp16"]
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


@dataclass(frozen=True)
class WeightSources:
    """Where the frozen networks' weights come from. ``random_init`` is for tests and pipeline demos only."""

    backbone: str | None = None  # DINO file / timm state dict / safetensors / timm:NAME
    inpainter: str | None = None  # MAE checkpoint
    disc_backbone: str | None = None  # tf_efficientnet_lite0 weights
    init: str | None = None  # an unseg checkpoint to start the segmenter from
    random_init: bool = False


@dataclass(frozen=True)
class TrainConfig:
    objective: str = "move"  # a key of OBJECTIVES
    steps: int | None = None  # optimisation steps; or
    epochs: int | None = None
    batch_size: int = 32  # MOVE sec. 3
    crop: int = 224  # random resized crops of 224 (MOVE sec. 3)
    lr: float = 2e-4  # both optimisers (MOVE sec. 3)
    betas: tuple[float, float] = (0.9, 0.95)  # segmenter (official train.py)
    lr_d: float = 2e-4
    betas_d: tuple[float, float] = (0.0, 0.99)  # discriminator (official train.py)
    weight_decay_d: float = 0.01  # official: torch AdamW's default for the discriminator
    shift_range: float = 0.125  # Δ = 1/8 (MOVE sec. 3)
    save_every: int = 1000
    log_every: int = 10
    log_images_every: int = 500
    seed: int = 0
    workers: int = 2
    device: str = "cpu"
    precision: Precision = "fp32"
    train_backbone: bool = False
    inpainter: InpainterName = "mae"
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)
    disc_resolution: int = 224  # the projected discriminator's input (official: 224)
    sempart_loss: SempartLossConfig = field(default_factory=SempartLossConfig)  # Sempart's eq. 9 settings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        if set(data) - known:
            raise ValueError(f"unknown TrainConfig fields: {sorted(set(data) - known)}")
        nested: dict[str, Any] = {
            "model": ModelConfig.from_dict,
            "preprocess": PreprocessConfig.from_dict,
            "mae": lambda d: MAEConfig(**d),
            "sempart_loss": SempartLossConfig.from_dict,
        }
        values: dict[str, Any] = {
            k: nested[k](v) if k in nested else tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)

    def with_preset(self, name: PresetName) -> TrainConfig:
        """The segmenter shape of preset ``name`` plus the frozen networks' shapes that go with it."""
        from ..config import PRESETS

        mae, resolution = FROZEN_PRESETS.get(name, (MAEConfig(), 224))
        return replace(self, model=PRESETS[name], mae=mae, disc_resolution=resolution)


# Shapes of the frozen MOVE networks for the small presets: a random MAE and a discriminator at the crop
# size, so a pipeline test on 64-96 px images runs in seconds. Real presets keep MAE ViT-L/16 and 224.
FROZEN_PRESETS: dict[str, tuple[MAEConfig, int]] = {
    "tiny": (MAEConfig.tiny(64), 64),
    "demo": (MAEConfig.tiny(96), 96),
}
