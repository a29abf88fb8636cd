"""Checkpoint families: which model a checkpoint holds and how `unseg predict` runs it.

A checkpoint's optional top-level ``"family"`` key names an entry of ``FAMILIES`` (absent = "move").
A family turns the stored ``model_config`` dict into its config, builds the ``nn.Module`` the stored
state dict loads into, and wraps the loaded model in a MaskPredictor (``inference.MaskPredictor``).
Adding a model = one ``Family`` entry here; ``load_segmenter`` and ``predict_files`` stay as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..config import ModelConfig, PreprocessConfig
from ..errors import CheckpointError, UsageError
from ..sempart import family as sempart_family
from .segmenter import Segmenter

if TYPE_CHECKING:
    from ..inference import MaskPredictor


@dataclass(frozen=True)
class Family:
    name: str
    config_from_dict: Callable[[dict[str, Any]], Any]
    build: Callable[[Any], torch.nn.Module]
    # (model, preprocessing, device, precision, compile) -> MaskPredictor
    predictor: Callable[..., MaskPredictor]


def _move_predictor(
    model: Segmenter, prep: PreprocessConfig, device: torch.device, precision: str, compile: bool, **options: Any
) -> MaskPredictor:
    from ..inference import Predictor  # inference sits above model/: imported when used

    if options:
        raise UsageError(f"{', '.join(sorted(options))} does not apply to MOVE checkpoints")

    return Predictor(model, prep, device, precision, compile=compile)


FAMILIES: dict[str, Family] = {
    "move": Family("move", ModelConfig.from_dict, Segmenter, _move_predictor),
    "sempart": Family("sempart", sempart_family.config_from_dict, sempart_family.build, sempart_family.predictor),
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise CheckpointError(
            f"checkpoint family '{name}' is not known to this unseg", f"known: {', '.join(FAMILIES)}; upgrade unseg?"
        )
    return FAMILIES[name]


def load_predictor(
    path: str | Path,
    device: torch.device,
    precision: str = "fp32",
    *,
    size: int | None = None,
    max_size: int | None = None,
    compile: bool = False,
    options: dict[str, Any] | None = None,
) -> MaskPredictor:
    """A checkpoint -> its family's MaskPredictor on ``device``. ``size`` / ``max_size`` override the
    preprocessing stored in the checkpoint."""
    from .checkpoint import load_model  # checkpoint.py imports this module when loading

    loaded = load_model(path)
    prep = loaded.preprocess
    prep = dataclasses.replace(
        prep, size=prep.size if size is None else size, max_size=prep.max_size if max_size is None else max_size
    )
    return FAMILIES[loaded.family].predictor(loaded.model, prep, device, precision, compile, **(options or {}))
