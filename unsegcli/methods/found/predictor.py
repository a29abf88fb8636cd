"""FOUND behind the MaskPredictor protocol (``engine.predictor``): the official evaluation geometry (full
resolution, the normalised image zero-padded bottom/right to a patch multiple: model.py make_input_divisible),
then either the decoder's mask (``--method found``, or a FOUND checkpoint of ours) or the training-free
background discovery (``--method found-bkg``).

- decoder: logits bilinearly upsampled x patch size on the padded grid, cropped, then the sigmoid
  (evaluation/saliency.py); then FOUND-single or the solver if asked (``core.soft_to_output``);
- background discovery: the object = the patches that are not background, each patch p x p pixels, cropped to
  the image (so its box is the patch-grid box the official CorLoc code draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ...config import validate
from ...engine.predictor import Prepared
from ...errors import CheckpointError, UsageError, param
from ...model.dino_keys import backbone_config_from_state, load_dino_vit, preprocess
from ...model.forward import inference_forward
from ...refine import RefineOptions
from ...runtime import resolve_device
from .config import MODES, FoundBkgOptions, FoundConfig, FoundOptions
from .core import background, read_official_decoder, soft_to_output, upsample_logits
from .model import FoundModel


class FoundPredictor:
    """A FOUND model on a device. ``bkg_threshold`` set: the training-free background discovery instead of the
    decoder. ``mode``: see ``config.FoundOptions``. ``refine`` (bilateral): FOUND's '+BS', the solver on the
    binary mask with FOUND's IoU gate (``core.soft_to_output``), what ``unseg predict --method found --refine
    bilateral`` runs. ``precision``, ``engine`` and ``compile``: how the model runs
    (``model.forward.inference_forward``)."""

    kind: Literal["soft", "instances"] = "soft"

    def __init__(
        self,
        model: FoundModel,
        device: torch.device | str = "cpu",
        mode: str = "multi",
        refine: RefineOptions | None = None,
        bkg_threshold: float | None = None,
        precision: str = "fp32",
        engine: str = "torch",
        compile: bool = False,
    ):
        if mode not in MODES:
            raise UsageError(f"FOUND mode must be one of {MODES}")
        if refine is not None and (refine.method != "bilateral" or refine.output == "soft"):
            raise UsageError(
                f"FOUND applies {param('refine')} bilateral itself, with a binary output: "
                f"{param('refine_output')} component or official, not {refine.method} {refine.output}"
            )
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = model.eval().to(self.device)
        self.forward = inference_forward(self.model, self.device, precision, engine, compile)
        self.mode, self.refine, self.bkg_threshold = mode, refine, bkg_threshold

    def prepare(self, index: int, image: np.ndarray) -> Prepared:
        tensor, content = preprocess(image, "pad", self.model.patch_size)
        # the solver's reference is the image itself (misc.py: ToPILImage of the loader's uint8 image)
        extra = {"image": image} if self.refine is not None and self.bkg_threshold is None else {}
        return Prepared(index, tensor, content, image.shape[:2], extra=extra)

    @torch.inference_mode()
    def run(self, batch: Sequence[Prepared]) -> list[np.ndarray]:
        x = torch.stack([p.tensor for p in batch if p.tensor is not None])
        p = self.model.patch_size
        logits, keys, att = (t.to(self.device) for t in self.forward(x))
        out = []
        if self.bkg_threshold is not None:
            objects = (~background(keys, att, self.bkg_threshold)).to(torch.uint8).cpu().numpy()
            for item, obj in zip(batch, objects, strict=True):
                h, w = item.original
                out.append(np.repeat(np.repeat(obj, p, 0), p, 1)[:h, :w].astype(np.float32))
            return out
        for i, item in enumerate(batch):
            soft = torch.sigmoid(upsample_logits(logits[i : i + 1].float(), p, item.original))[0, 0]
            out.append(soft_to_output(soft.cpu().numpy(), item.extra.get("image"), self.mode, self.refine))
        return out


def _model(backbone: str | Path, explicit_attention: bool = False) -> FoundModel:
    """A FoundModel (decoder at torch's default init) whose ViT is the DINO file ``backbone``, its shape read
    from the file. ``explicit_attention``: softmax(q kᵀ) as DINO computes it (``model.dino_keys.load_dino_vit``)."""
    vit = load_dino_vit(backbone, explicit_attention=explicit_attention)
    heads = int(vit.blocks[-1].attn.num_heads)
    return FoundModel(FoundConfig(backbone=backbone_config_from_state(vit.state_dict(), heads)), vit)


def pretrained(
    method: str,
    options: FoundOptions | None = None,
    backbone: str | Path | None = None,
    device: Any = "cpu",
    refine: RefineOptions | None = None,
    precision: str = "fp32",
    engine: str = "torch",
) -> FoundPredictor:
    """``unseg predict --method found``: the official decoder file on the DINO backbone (both known names or
    paths; ``backbone`` None = ``options.backbone``); ``refine``: FOUND's '+BS' (``FoundPredictor``)."""
    from ...model.registry import resolve_weights

    opts = options if options is not None else FoundOptions()
    validate(opts)
    model = _model(backbone if backbone is not None else resolve_weights(opts.backbone, env_var=None, default=None))
    path = resolve_weights(opts.decoder, env_var=None, default=None)
    sd = read_official_decoder(path)
    if sd["weight"].shape[1] != model.decoder.in_channels:
        raise CheckpointError(
            f"{path}: the decoder reads {sd['weight'].shape[1]}-d keys, the backbone gives "
            f"{model.decoder.in_channels}-d ones",
            "the official decoder belongs to DINO ViT-S/8 300ep (dino-vits8-300ep)",
        )
    model.decoder.load_state_dict(sd)
    return FoundPredictor(model, device, opts.mode, refine, precision=precision, engine=engine)


def background_discovery(
    method: str,
    options: FoundBkgOptions | None = None,
    backbone: str | Path | None = None,
    device: Any = "cpu",
    precision: str = "fp32",
    engine: str = "torch",
) -> FoundPredictor:
    """``unseg predict --method found-bkg``: FOUND's training-free object mask (no decoder)."""
    from ...model.registry import resolve_weights

    opts = options if options is not None else FoundBkgOptions()
    validate(opts)
    # the seed and the 0.3 cut are sharp rules: DINO's explicit attention keeps the keys bit-equal to the official
    path = backbone if backbone is not None else resolve_weights(opts.backbone, env_var=None, default=None)
    model = _model(path, explicit_attention=True)
    return FoundPredictor(model, device, bkg_threshold=opts.bkg_threshold, precision=precision, engine=engine)
