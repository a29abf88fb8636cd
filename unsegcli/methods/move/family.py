"""MOVE's checkpoint family (the default of a checkpoint without a ``"family"`` key): the stored config, the
module, and its MaskPredictor (see ``unsegcli.methods``)."""

from __future__ import annotations

from typing import Any

import torch

from ...config import ModelConfig, PreprocessConfig
from ...errors import UsageError, param
from .predictor import Predictor
from .segmenter import Segmenter


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    return ModelConfig.from_dict(data)


def build(cfg: ModelConfig) -> Segmenter:
    return Segmenter(cfg)


def predictor(
    model: Segmenter,
    prep: PreprocessConfig,
    device: torch.device,
    precision: str,
    compile: bool,
    engine: str = "torch",
    **options: Any,
) -> Predictor:
    if options:
        raise UsageError(f"{', '.join(param(n) for n in sorted(options))} does not apply to MOVE checkpoints")
    return Predictor(model, prep, device, precision, compile=compile, engine=engine)
