"""Sempart's entry in the checkpoint families (`model.families`): config from the stored dict, the module,
and its MaskPredictor. Kept import-light so `model/families.py` can import it without a cycle."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..config import PreprocessConfig
from .config import SempartConfig
from .model import SempartModel

if TYPE_CHECKING:
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
    branch: str = "fine",
) -> SempartPredictor:
    """``branch`` "fine" (default, Sempart-Fine) or "coarse": `unseg predict --branch`."""
    from .predictor import SempartPredictor  # predictor imports inference, which sits above model/

    return SempartPredictor(model, preprocess, device, precision, branch=branch, compile=compile)
