"""Loading tensors safely: ``torch.load`` with ``weights_only=True`` or safetensors behind one error message
naming the file, weights with NaN or inf refused, strict loading that lists what does not match, and backbone
weights in the layouts people have on disk."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError


def load_tensors(path: str | Path, what: str, hint: str | None = None) -> Any:
    """The tensors of a weights file on CPU: a ``.safetensors`` file, else ``torch.load(weights_only=True)``
    (plain containers of tensors, never arbitrary pickles). A file that cannot be read is a CheckpointError
    saying it is not ``what`` (with ``hint``); one holding NaN or infinite values is refused (``check_finite``)."""
    try:
        if Path(path).suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded = load_file(str(path))
        else:
            # torch warns on stderr about files it may not read (e.g. "Detected pickle protocol 4"); whether it
            # reads them is what matters, and a failure is reported below, so its warnings would only be noise
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling / header failure means "not that kind of file"
        raise CheckpointError(f"{path}: not {what} ({type(e).__name__}: {str(e)[:200]})", hint) from None
    check_finite(loaded, str(path))
    return loaded


def _first_non_finite(obj: Any, name: str = "") -> tuple[str, torch.Tensor] | None:
    """(container path, tensor) of the first floating tensor in ``obj`` that holds NaN or inf, depth first."""
    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all()):
            return name, obj
        return None
    items: Any = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else ()
    for key, value in items:
        found = _first_non_finite(value, f"{name}/{key}" if name else str(key))
        if found is not None:
            return found
    return None


def check_finite(tensors: Any, source: str) -> None:
    """Refuse weights holding NaN or infinite values, naming ``source`` and the first such tensor: such a
    network outputs NaN everywhere, which thresholds to empty masks that a run would write as results."""
    found = _first_non_finite(tensors)
    if found is not None:
        name, t = found
        kind = "NaN" if bool(torch.isnan(t).any()) else "infinite"
        raise CheckpointError(
            f"{source}: tensor '{name}' holds {kind} values",
            "the file is corrupt or comes from a run that diverged; use another copy or an earlier checkpoint",
        )


def tensor_dict(obj: Any, what: str) -> dict[str, torch.Tensor]:
    """``obj`` if it maps names to tensors, else a CheckpointError naming ``what`` and the first odd entry (a
    training checkpoint's "epoch" beside its weights has no shape to compare or convert)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what}: not a state dict ({type(obj).__name__})")
    odd = next((k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if odd is not None:
        raise CheckpointError(f"{what}: not a state dict of tensors ('{odd}' is {type(obj[odd]).__name__})")
    return obj


def load_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True) with every missing/unexpected/mis-shaped key listed."""
    state_dict = tensor_dict(state_dict, what)
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
        state = timm.create_model(name, pretrained=True, num_classes=0).state_dict()
    except Exception as e:  # noqa: BLE001 - offline, unknown name, hub errors: one clear message
        raise CheckpointError(
            f"cannot load timm weights '{name}' ({type(e).__name__}: {str(e)[:200]})",
            "offline? pass the weight file instead of timm:NAME",
        ) from None
    check_finite(state, f"timm:{name}")
    return state


def read_backbone_state(path: Path | str) -> dict[str, torch.Tensor]:
    """DINO's or DINOv2's original file, a timm state dict (.pth/.bin), timm's model.safetensors, or
    ``timm:NAME`` -> state dict with timm / DINO key names (DINOv2's registers as ``register_tokens``)."""
    if str(path).startswith("timm:"):
        return timm_pretrained_state(str(path)[5:])
    path = Path(path)
    sd = load_tensors(path, "a backbone state dict")
    for key in ("teacher", "model", "state_dict"):  # full DINO training checkpoints nest them
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    out = {}
    for k, v in tensor_dict(sd, str(path)).items():
        for prefix in ("module.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        if k.startswith("head."):  # DINO projection head / timm classifier: not part of the backbone
            continue
        if k == "mask_token":  # DINOv2's iBOT mask embedding: used in training only (dinov2 vision_transformer.py)
            continue
        out["register_tokens" if k == "reg_token" else k] = v  # timm's name of DINOv2's registers
    return out
