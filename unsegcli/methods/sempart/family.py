"""Sempart's checkpoint family (see ``unsegcli.methods``): config from the stored dict, the module, and its
MaskPredictor."""

from __future__ import annotations

import torch

from ...config import PreprocessConfig
from .config import SempartConfig
from .model import SempartModel
from .predictor import SempartPredictor


def config_from_dict(data: dict) -> SempartConfig:
    return SempartConfig.from_dict(data)


def build(cfg: SempartConfig) -> SempartModel:
    return SempartModel(cfg)


def predictor(
    model: SempartModel,
    preprocess: PreprocessConfig,
    device: torch.device,
    precision: str,
    compile: bool,
    engine: str = "torch",
    branch: str = "fine",
) -> SempartPredictor:
    """``branch`` "fine" (default, Sempart-Fine) or "coarse": `unseg predict --branch`."""
    return SempartPredictor(model, preprocess, device, precision, branch=branch, compile=compile, engine=engine)
