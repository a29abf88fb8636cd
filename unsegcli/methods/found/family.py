"""FOUND's checkpoint family (see ``unsegcli.methods``): a FOUND model trained by unseg, loaded by
``unseg predict --method move --weights run/last.pt``. It predicts in the official evaluation geometry (full
resolution, zero-padded to a patch multiple), so ``--size`` and ``--max-size`` are refused (``FIXED_GEOMETRY``),
and in float32 without torch.compile, so ``--precision`` bf16/fp16 and ``--compile`` are refused too."""

from __future__ import annotations

from typing import Any

import torch

from ...config import PreprocessConfig
from ...errors import UsageError, param
from .config import FoundConfig
from .model import FoundModel
from .predictor import FoundPredictor

# methods.loading refuses --size / --max-size for this family, saying why
FIXED_GEOMETRY = (
    "FOUND predicts at full resolution, zero-padded to a patch multiple (its official evaluation geometry); "
    "resize the images beforehand to predict at another size"
)


def config_from_dict(data: dict[str, Any]) -> FoundConfig:
    return FoundConfig.from_dict(data)


def build(cfg: FoundConfig) -> FoundModel:
    return FoundModel(cfg)


def predictor(
    model: FoundModel,
    prep: PreprocessConfig,
    device: torch.device,
    precision: str,
    compile: bool,
    engine: str = "torch",
    **options: Any,
) -> FoundPredictor:
    if options:
        raise UsageError(f"{', '.join(param(n) for n in sorted(options))} does not apply to FOUND checkpoints")
    return FoundPredictor(model, device, precision=precision, engine=engine, compile=compile)
