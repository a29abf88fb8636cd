"""FOUND's checkpoint family (see ``unsegcli.methods``): a FOUND model trained by unseg, loaded by
``unseg predict --method move --weights run/last.pt``. It predicts in the official evaluation geometry (full
resolution, zero-padded to a patch multiple), so the stored ``size`` and ``max_size`` do not apply."""

from __future__ import annotations

from typing import Any

import torch

from ...config import PreprocessConfig
from ...errors import UsageError, param
from .config import FoundConfig
from .model import FoundModel
from .predictor import FoundPredictor


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
