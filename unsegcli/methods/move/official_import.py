"""Import of the official MOVE release (github adambielski/move-seg): its ``checkpoint-N.pth`` (+ ``.args``)
is a pickled dict, so it is unpickled once here, with a warning, and converted to our safe format."""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ...config import PRESETS, HeadConfig, ModelConfig, PresetName
from ...errors import CheckpointError
from ...model.state_dict import check_finite, load_strict, read_backbone_state
from .segmenter import Segmenter

log = logging.getLogger(__name__)

# The official code's --feature_extractor names DINO hub models -> our PRESETS with those backbones.
OFFICIAL_BACKBONES: dict[str, PresetName] = {
    "dino_vits8": "vits8",
    "dino_vits16": "vits16",
    "dino_vitb8": "vitb8",
    "dino_vitb16": "vitb16",
}


def _head_arg(head_type: str, name: str, default: str) -> str:
    # official segmenter.py find_argument: "conv_minc128" -> minc = 128
    m = re.search(rf"{name}([0-9.]+)", head_type)
    return m.group(1) if m else default


def config_from_official_args(args: Any) -> ModelConfig:
    get = (lambda k, d=None: getattr(args, k, d)) if not isinstance(args, dict) else args.get
    fx = get("feature_extractor", "dino_vits8")
    if fx not in OFFICIAL_BACKBONES:
        raise CheckpointError(
            f"feature_extractor '{fx}' is not supported",
            f"supported: {', '.join(OFFICIAL_BACKBONES)} (MAE features are not)",
        )
    head_type = get("segmenter_head", "conv_minc128")
    if not str(head_type).startswith("conv"):
        raise CheckpointError(f"segmenter_head '{head_type}' is not supported (only conv heads)")
    if int(_head_arg(head_type, "blockd", "1")) != 1:
        raise CheckpointError(f"segmenter_head '{head_type}': block depth > 1 is not supported")
    minc = int(_head_arg(head_type, "minc", "64"))
    wmult = float(_head_arg(head_type, "wmult", "0.5"))
    block = int(get("extractor_block_layer", -2))
    bb = dataclasses.replace(PRESETS[OFFICIAL_BACKBONES[fx]].backbone, block_index=block, pos_embed="dino")
    return ModelConfig(backbone=bb, head=HeadConfig.for_backbone(bb.embed_dim, bb.patch_size, minc, wmult))


def _unpickle(path: Path) -> Any:
    warnings.warn(
        f"unpickling {path} with weights_only=False: only do this for files you trust "
        "(the official MOVE release is such a file); the result is saved in a safe format",
        stacklevel=2,
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise CheckpointError(f"{path}: needs the Python module '{e.name}' to unpickle") from None
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None


def import_official_move(
    ckpt_path: str | Path, backbone_path: str | Path | None, args_path: str | Path | None = None
) -> tuple[Segmenter, dict]:
    """Official `checkpoint-N.pth` (+ `.args`) + DINO weights -> our Segmenter and meta."""
    ckpt_path = Path(ckpt_path)
    ckpt = _unpickle(ckpt_path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{ckpt_path}: not an official MOVE checkpoint (no 'model' entry)")
    if not isinstance(ckpt["model"], dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt["model"].items()
    ):
        raise CheckpointError(f"{ckpt_path}: not an official MOVE checkpoint ('model' is not a state dict)")
    check_finite(ckpt["model"], str(ckpt_path))
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
            seg_sd["head.model." + k[len("segmenter.segmenter_head.model.") :]] = v
        elif k.startswith("segmenter.feature_extractor.model."):
            vit_sd[k[len("segmenter.feature_extractor.model.") :]] = v
        elif k.startswith("mae_model."):
            ignored.append(k)  # the frozen inpainter is not part of the segmenter
        else:
            unexpected.append(k)
    if unexpected:
        raise CheckpointError(f"{ckpt_path}: unexpected keys in 'model': {', '.join(sorted(unexpected)[:12])}")
    if backbone_path is not None:
        vit_sd = read_backbone_state(Path(backbone_path))
    elif not vit_sd:
        raise CheckpointError(
            "the official checkpoint does not contain the DINO backbone",
            "pass the DINO weights dino_deitsmall8_pretrain.pth as the backbone (`unseg weights fetch dino-vits8`)",
        )
    model = Segmenter(cfg)
    load_strict(model.backbone.vit, {k: v.float() for k, v in vit_sd.items()}, "backbone weights")
    trainable = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.vit.")}
    missing = sorted(set(trainable) - set(seg_sd))
    extra = sorted(set(seg_sd) - set(trainable))
    if missing or extra:
        raise CheckpointError(
            f"{ckpt_path}: official segmenter keys do not match: missing "
            f"{[_official_name(k) for k in missing]}, unexpected {extra}"
        )
    full = dict(model.state_dict())
    full.update({k: v.float() if v.is_floating_point() else v for k, v in seg_sd.items()})
    load_strict(model, full, "converted checkpoint")
    model.eval()
    meta = {
        "source": "official MOVE release",
        "checkpoint": ckpt_path.name,
        "epoch": int(ckpt.get("epoch", -1)) if str(ckpt.get("epoch", "")).lstrip("-").isdigit() else -1,
        "backbone": Path(backbone_path).name if backbone_path else "embedded",
    }
    return model, meta


def _official_name(key: str) -> str:
    if key.startswith("backbone.norm."):
        return "segmenter.feature_extractor.norm." + key.rsplit(".", 1)[1]
    return "segmenter.segmenter_head." + key[len("head.") :]
