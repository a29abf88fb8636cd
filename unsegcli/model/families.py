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
from ..errors import CheckpointError, UnsegError, UsageError
from .checkpoint import DEFAULT_FAMILY, read_checkpoint
from .segmenter import Segmenter
from .state_dict import load_strict

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


def _sempart(attr: str) -> Callable[..., Any]:
    """Sempart's family callables, imported when first called (sempart/ sits above model/)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        from ..sempart import family

        return getattr(family, attr)(*args, **kwargs)

    return call


FAMILIES: dict[str, Family] = {
    "move": Family("move", ModelConfig.from_dict, Segmenter, _move_predictor),
    "sempart": Family("sempart", _sempart("config_from_dict"), _sempart("build"), _sempart("predictor")),
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
    loaded = load_model(path)
    prep = loaded.preprocess
    prep = dataclasses.replace(
        prep, size=prep.size if size is None else size, max_size=prep.max_size if max_size is None else max_size
    )
    return FAMILIES[loaded.family].predictor(loaded.model, prep, device, precision, compile, **(options or {}))


@dataclass
class LoadedModel:
    family: str
    model: torch.nn.Module  # eval mode, on CPU
    preprocess: PreprocessConfig
    meta: dict[str, Any]


def load_model(path: str | Path) -> LoadedModel:
    """Load our checkpoint into the module class of its family (a ``Segmenter`` for MOVE)."""
    ckpt = read_checkpoint(path)
    missing = [k for k in ("model_config", "state_dict", "preprocess") if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path}: the checkpoint has no {', '.join(missing)}",
            "it was not written by unseg, or was edited; re-create it",
        )
    name = str(ckpt.get("family", DEFAULT_FAMILY))
    family = get_family(name)
    try:  # a stored config of another version or a hand edit: one line naming the file and the field
        cfg = family.config_from_dict(ckpt["model_config"])
        prep = PreprocessConfig.from_dict(ckpt["preprocess"])
        model = family.build(cfg)
    except (UnsegError, ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: unusable model configuration: {getattr(e, 'message', None) or e}") from None
    if not isinstance(ckpt["state_dict"], dict):
        raise CheckpointError(f"{path}: state_dict is not a mapping of tensors")
    load_strict(model, ckpt["state_dict"], str(path))
    model.eval()
    return LoadedModel(name, model, prep, ckpt.get("meta", {}))


def load_segmenter(path: str | Path) -> tuple[Any, PreprocessConfig, dict]:
    """Load our checkpoint -> (model in eval mode on CPU, its preprocessing, its meta)."""
    loaded = load_model(path)
    return loaded.model, loaded.preprocess, loaded.meta
