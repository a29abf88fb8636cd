"""unseg's own checkpoint format.

One ``torch.save`` dict of plain types and tensors, so it loads with ``weights_only=True``:
{"format": "unseg.segmenter", "version": 1, "model_config": {...}, "preprocess": {...},
"state_dict": {...}, "meta": {...}} (+ "train_state" for training runs, + "family" for models other
than MOVE: the method table, ``unsegcli.methods``; files without it are MOVE segmenters).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..config import PreprocessConfig
from ..errors import CheckpointError
from ..io.files import atomic_write_bytes
from .state_dict import load_tensors

FORMAT = "unseg.segmenter"
VERSION = 1
DEFAULT_FAMILY = "move"


def checkpoint_dict(
    model: torch.nn.Module,
    preprocess: PreprocessConfig,
    meta: dict | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
    family: str = DEFAULT_FAMILY,
) -> dict[str, Any]:
    """The checkpoint of ``model`` (which has a ``cfg`` with ``to_dict()``). The family key is written
    only for non-MOVE models, so MOVE checkpoints stay byte-identical to those of earlier versions."""
    sd = model.state_dict() if state_dict is None else state_dict
    cfg: Any = model.cfg  # ModelConfig, or the config of another family
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": cfg.to_dict(),
        "preprocess": preprocess.to_dict(),
        "meta": dict(meta or {}),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in sd.items()},
    }
    if family != DEFAULT_FAMILY:
        ckpt["family"] = family
    return ckpt


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    hint = "official MOVE checkpoints must be converted once with `unseg weights import-move`"
    ckpt = load_tensors(path, "an unseg checkpoint", hint)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an unseg checkpoint (no '{FORMAT}' marker)", hint)
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {ckpt['version']} is newer than this unseg understands ({VERSION})",
            "upgrade unseg",
        )
    return ckpt
