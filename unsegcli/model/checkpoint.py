"""unseg's own checkpoint format, and import of the official MOVE release.

Our format is one ``torch.save`` dict of plain types and tensors, so it loads with
``weights_only=True``: {"format": "unseg.segmenter", "version": 1, "model_config": {...},
"preprocess": {...}, "state_dict": {...}, "meta": {...}} (+ "train_state" for training runs).
"""
from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import BackboneConfig, HeadConfig, ModelConfig, PreprocessConfig
from ..errors import CheckpointError
from .segmenter import Segmenter

log = logging.getLogger(__name__)
FORMAT = "unseg.segmenter"
VERSION = 1


def checkpoint_dict(model: Segmenter, preprocess: PreprocessConfig, meta: dict | None = None,
                    state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    sd = model.state_dict() if state_dict is None else state_dict
    return {"format": FORMAT, "version": VERSION, "model_config": model.cfg.to_dict(),
            "preprocess": preprocess.to_dict(), "meta": dict(meta or {}),
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in sd.items()}}


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> None:
    import io

    from ..io.files import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not our format"
        raise CheckpointError(f"{path}: not an unseg checkpoint ({type(e).__name__}: {str(e)[:200]})",
                              "official MOVE checkpoints must be converted once with "
                              "`unseg weights import-move`") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an unseg checkpoint (no '{FORMAT}' marker)",
                              "official MOVE checkpoints must be converted with `unseg weights import-move`")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this unseg "
                              f"understands ({VERSION})", "upgrade unseg")
    return ckpt


def load_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True) with every missing/unexpected/mis-shaped key listed."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f"{k}: {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
                    for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
                parts.append(f"{label} keys: {shown}")
        raise CheckpointError(f"{what} does not match the model: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def load_segmenter(path: str | Path) -> tuple[Segmenter, PreprocessConfig, dict]:
    """Load our checkpoint -> (model in eval mode on CPU, its preprocessing, its meta)."""
    ckpt = read_checkpoint(path)
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    model = Segmenter(cfg)
    load_strict(model, ckpt["state_dict"], f"{path}")
    model.eval()
    return model, PreprocessConfig.from_dict(ckpt["preprocess"]), ckpt.get("meta", {})


# ---------------------------------------------------------------------------------------------
# Official MOVE release (design §2): pickled dicts, so unpickled once here with a warning.

# DINO hub names used by the official code's --feature_extractor -> our backbone shape and timm name.
DINO_BACKBONES = {
    "dino_vits8": BackboneConfig("vit_small_patch8_224.dino", 8, 384, 12, 6),
    "dino_vits16": BackboneConfig("vit_small_patch16_224.dino", 16, 384, 12, 6),
    "dino_vitb8": BackboneConfig("vit_base_patch8_224.dino", 8, 768, 12, 12),
    "dino_vitb16": BackboneConfig("vit_base_patch16_224.dino", 16, 768, 12, 12),
}


def _head_arg(head_type: str, name: str, default: str) -> str:
    # official segmenter.py find_argument: "conv_minc128" -> minc = 128
    m = re.search(rf"{name}([0-9.]+)", head_type)
    return m.group(1) if m else default


def config_from_official_args(args: Any) -> ModelConfig:
    get = (lambda k, d=None: getattr(args, k, d)) if not isinstance(args, dict) else args.get
    fx = get("feature_extractor", "dino_vits8")
    if fx not in DINO_BACKBONES:
        raise CheckpointError(f"feature_extractor '{fx}' is not supported",
                              f"supported: {', '.join(DINO_BACKBONES)} (MAE features are not)")
    head_type = get("segmenter_head", "conv_minc128")
    if not str(head_type).startswith("conv"):
        raise CheckpointError(f"segmenter_head '{head_type}' is not supported (only conv heads)")
    if int(_head_arg(head_type, "blockd", "1")) != 1:
        raise CheckpointError(f"segmenter_head '{head_type}': block depth > 1 is not supported")
    minc = int(_head_arg(head_type, "minc", "64"))
    wmult = float(_head_arg(head_type, "wmult", "0.5"))
    block = int(get("extractor_block_layer", -2))
    bb = DINO_BACKBONES[fx]
    bb = BackboneConfig(**{**bb.__dict__, "block_index": block, "pos_embed": "dino"})
    return ModelConfig(backbone=bb, head=HeadConfig.for_backbone(bb.embed_dim, bb.patch_size, minc, wmult))


def _unpickle(path: Path) -> Any:
    warnings.warn(f"unpickling {path} with weights_only=False: only do this for files you trust "
                  "(the official MOVE release is such a file); the result is saved in a safe format",
                  stacklevel=2)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise CheckpointError(f"{path}: needs the Python module '{e.name}' to unpickle") from None
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None


def timm_pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """Weights of a timm model by name, through timm's own pretrained config (needs the network
    the first time; later runs use timm's cache)."""
    import timm

    try:
        return timm.create_model(name, pretrained=True, num_classes=0).state_dict()
    except Exception as e:  # noqa: BLE001 - offline, unknown name, hub errors: one clear message
        raise CheckpointError(f"cannot load timm weights '{name}' ({type(e).__name__}: {str(e)[:200]})",
                              "offline? pass the weight file instead of timm:NAME") from None


def read_backbone_state(path: Path | str) -> dict[str, torch.Tensor]:
    """DINO's original file, a timm state dict (.pth/.bin), timm's model.safetensors, or
    ``timm:NAME`` -> state dict with timm / DINO key names."""
    if str(path).startswith("timm:"):
        return timm_pretrained_state(str(path)[5:])
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: not a backbone state dict ({type(e).__name__})") from None
    for key in ("teacher", "model", "state_dict"):  # full DINO training checkpoints nest them
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: not a state dict")
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if k.startswith("head."):  # DINO projection head / timm classifier: not part of the backbone
            continue
        out[k] = v
    return out


def import_official_move(ckpt_path: str | Path, backbone_path: str | Path | None,
                         args_path: str | Path | None = None) -> tuple[Segmenter, dict]:
    """Official `checkpoint-N.pth` (+ `.args`) + DINO weights -> our Segmenter and meta."""
    ckpt_path = Path(ckpt_path)
    ckpt = _unpickle(ckpt_path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{ckpt_path}: not an official MOVE checkpoint (no 'model' entry)")
    args = None
    if args_path is None and ckpt_path.with_suffix(".args").exists():
        args_path = ckpt_path.with_suffix(".args")
    if args_path is not None:
        loaded = _unpickle(Path(args_path))
        args = loaded.get("args") if isinstance(loaded, dict) else loaded
    if args is None:
        args = ckpt.get("args")
    if args is None:
        log.warning("no args found; assuming the official defaults (dino_vits8, conv_minc128, block -2)")
        args = {}
    cfg = config_from_official_args(args)

    seg_sd, vit_sd, ignored, unexpected = {}, {}, [], []
    for k, v in ckpt["model"].items():
        if k.startswith("segmenter.feature_extractor.norm."):
            seg_sd["backbone.norm." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("segmenter.segmenter_head.model."):
            seg_sd["head.model." + k[len("segmenter.segmenter_head.model."):]] = v
        elif k.startswith("segmenter.feature_extractor.model."):
            vit_sd[k[len("segmenter.feature_extractor.model."):]] = v
        elif k.startswith("mae_model."):
            ignored.append(k)  # the frozen inpainter is not part of the segmenter
        else:
            unexpected.append(k)
    if unexpected:
        raise CheckpointError(f"{ckpt_path}: unexpected keys in 'model': {', '.join(sorted(unexpected)[:12])}")
    if backbone_path is not None:
        vit_sd = read_backbone_state(Path(backbone_path))
    elif not vit_sd:
        raise CheckpointError("the official checkpoint does not contain the DINO backbone",
                              "pass --backbone dino_deitsmall8_pretrain.pth (`unseg weights fetch dino-vits8`)")
    model = Segmenter(cfg)
    load_strict(model.backbone.vit, {k: v.float() for k, v in vit_sd.items()}, "backbone weights")
    trainable = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.vit.")}
    missing = sorted(set(trainable) - set(seg_sd))
    extra = sorted(set(seg_sd) - set(trainable))
    if missing or extra:
        raise CheckpointError(f"{ckpt_path}: official segmenter keys do not match: missing "
                              f"{[_official_name(k) for k in missing]}, unexpected {extra}")
    full = dict(model.state_dict())
    full.update({k: v.float() if v.is_floating_point() else v for k, v in seg_sd.items()})
    load_strict(model, full, "converted checkpoint")
    model.eval()
    meta = {"source": "official MOVE release", "checkpoint": ckpt_path.name,
            "epoch": int(ckpt.get("epoch", -1)) if str(ckpt.get("epoch", "")).lstrip("-").isdigit() else -1,
            "backbone": Path(backbone_path).name if backbone_path else "embedded"}
    return model, meta


def _official_name(key: str) -> str:
    if key.startswith("backbone.norm."):
        return "segmenter.feature_extractor.norm." + key.rsplit(".", 1)[1]
    return "segmenter.segmenter_head." + key[len("head."):]
