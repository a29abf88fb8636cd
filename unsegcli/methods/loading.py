"""Loading our checkpoints: the stored ``"family"`` key picks the method (``unsegcli.methods.family``) that
turns the stored config into its module and the loaded module into a MaskPredictor."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..config import PreprocessConfig
from ..errors import CheckpointError, UnsegError, UsageError, param
from ..model.backbone import weights_follow
from ..model.checkpoint import DEFAULT_FAMILY, read_checkpoint
from ..model.state_dict import load_strict
from . import family

if TYPE_CHECKING:
    from ..engine.predictor import MaskPredictor


def load_predictor(
    path: str | Path,
    device: torch.device,
    precision: str = "fp32",
    *,
    size: int | None = None,
    max_size: int | None = None,
    compile: bool = False,
    engine: str = "torch",
    options: dict[str, Any] | None = None,
) -> MaskPredictor:
    """A checkpoint -> its family's MaskPredictor on ``device``, its forward run by ``engine`` at ``precision``
    (``model.forward.inference_forward``). ``size`` / ``max_size`` override the preprocessing stored in the
    checkpoint."""
    loaded = load_model(path)
    fam = family(loaded.family)
    given = [param(n) for n, v in (("size", size), ("max_size", max_size)) if v is not None]
    fixed = getattr(fam, "FIXED_GEOMETRY", None)  # why a family predicts at sizes of its own, if it does
    if given and fixed:
        verb = "does" if len(given) == 1 else "do"
        raise UsageError(f"{' and '.join(given)} {verb} not apply to {loaded.family} checkpoints", fixed)
    prep = loaded.preprocess
    prep = dataclasses.replace(
        prep, size=prep.size if size is None else size, max_size=prep.max_size if max_size is None else max_size
    )
    return fam.predictor(loaded.model, prep, device, precision, compile, engine=engine, **(options or {}))


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
    fam = family(name)
    try:  # a stored config of another version or a hand edit: one line naming the file and the field
        cfg = fam.config_from_dict(ckpt["model_config"])
        prep = PreprocessConfig.from_dict(ckpt["preprocess"])
        with weights_follow():  # load_strict below replaces every tensor
            model = fam.build(cfg)
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
