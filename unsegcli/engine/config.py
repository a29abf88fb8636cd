"""Training configuration, generic over objectives: typed and torch-free (``unseg --help`` imports it).

``TrainConfig`` holds what the one loop needs; ``options`` is the objective's own frozen dataclass (MOVE's
discriminator, inpainter and shift settings; Sempart's loss), which only that objective reads. The defaults are
MOVE's recipe (Bielski & Favaro, NeurIPS 2022, sec. 3; the official train.py, github adambielski/move-seg); a
method's recipe in the method table overrides them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..config import ModelConfig, Precision, PreprocessConfig


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
    objective: str = "move"  # a `unseg train --method` name (methods.objectives())
    steps: int | None = None  # optimisation steps; or
    epochs: int | None = None
    batch_size: int = 32  # MOVE sec. 3
    crop: int = 224  # random resized crops of 224 (MOVE sec. 3)
    lr: float = 2e-4  # both optimisers (MOVE sec. 3)
    betas: tuple[float, float] = (0.9, 0.95)  # segmenter (official train.py)
    save_every: int = 1000
    log_every: int = 10
    log_images_every: int = 500
    seed: int = 0
    workers: int = 2
    device: str = "cpu"
    precision: Precision = "fp32"
    train_backbone: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)  # the segmenter's shape (a config.PRESETS entry)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)  # stored for `unseg predict`
    options: Any = None  # the objective's own options (a frozen dataclass), or None for an objective without any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], options: Any = None) -> TrainConfig:
        """The inverse of ``to_dict``; ``options``: the objective's options class (its dict is checked by it)."""
        known = {f.name for f in fields(cls)}
        if set(data) - known:
            raise ValueError(f"unknown TrainConfig fields: {sorted(set(data) - known)}")
        nested: dict[str, Any] = {
            "model": ModelConfig.from_dict,
            "preprocess": PreprocessConfig.from_dict,
            "options": lambda d: None if d is None or options is None else options.from_dict(d),
        }
        values: dict[str, Any] = {
            k: nested[k](v) if k in nested else tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)
