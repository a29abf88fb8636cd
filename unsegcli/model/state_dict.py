"""Loading tensors safely: ``torch.load`` with ``weights_only=True`` behind one error message, strict
loading that lists what does not match, and backbone weights in the layouts people have on disk."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError


def load_tensors(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU: plain containers of tensors, never arbitrary
    pickles. Any failure becomes a CheckpointError saying the file is not ``what``."""
    try:
        # torch warns on stderr about files it may not read (e.g. "Detected pickle protocol 4"); whether it
        # reads them is what matters, and a failure is reported below, so its warnings would only be noise
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not that kind of file"
        raise CheckpointError(f"{path}: not {what} ({type(e).__name__}: {str(e)[:200]})") from None


def load_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True) with every missing/unexpected/mis-shaped key listed."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if own[k].shape != state_dict[k].shape
    )
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
                parts.append(f"{label} keys: {shown}")
        raise CheckpointError(f"{what} does not match the model: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def timm_pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """Weights of a timm model by name, through timm's own pretrained config (needs the network
    the first time; later runs use timm's cache)."""
    import timm

    try:
        return timm.create_model(name, pretrained=True, num_classes=0).state_dict()
    except Exception as e:  # noqa: BLE001 - offline, unknown name, hub errors: one clear message
        raise CheckpointError(
            f"cannot load timm weights '{name}' ({type(e).__name__}: {str(e)[:200]})",
            "offline? pass the weight file instead of timm:NAME",
        ) from None


def read_backbone_state(path: Path | str) -> dict[str, torch.Tensor]:
    """DINO's or DINOv2's original file, a timm state dict (.pth/.bin), timm's model.safetensors, or
    ``timm:NAME`` -> state dict with timm / DINO key names (DINOv2's registers as ``register_tokens``)."""
    if str(path).startswith("timm:"):
        return timm_pretrained_state(str(path)[5:])
    path = Path(path)
    sd: Any
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        sd = load_tensors(path, "a backbone state dict")
    for key in ("teacher", "model", "state_dict"):  # full DINO training checkpoints nest them
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: not a state dict")
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        if k.startswith("head."):  # DINO projection head / timm classifier: not part of the backbone
            continue
        if k == "mask_token":  # DINOv2's iBOT mask embedding: used in training only (dinov2 vision_transformer.py)
            continue
        out["register_tokens" if k == "reg_token" else k] = v  # timm's name of DINOv2's registers
    return out
