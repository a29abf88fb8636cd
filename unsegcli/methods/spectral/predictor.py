"""``SpectralPredictor``: LOST, TokenCut and MaskCut behind the MaskPredictor protocol (``engine.predictor``).

``prepare`` (CPU, in decode workers) applies the method's geometry; ``run`` extracts the last-block
keys of a same-shape batch, cuts the patch graphs, and brings each patch mask back to the original
image size the way the official code does:

- ``pad``: each patch becomes p x p pixels, cropped to the image (so the mask's box is exactly the
  official ``detect_box`` box, clipped to the image);
- ``resize``: nearest-neighbour ``F.interpolate`` from the grid to the original size (TokenCut saliency);
- ``fixed``: nearest to the square, then per object PIL's default (bicubic) resize to the original
  size and the ``> max / 2`` threshold of CutLER's ``create_annotation_info``; a pixel two objects
  would both claim goes to the one with the higher resized value, so objects stay disjoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...config import validate
from ...engine.predictor import Output, Prepared
from ...errors import InputError, UsageError, param
from ...io.features import FeatureRecord
from ...model.dino_keys import LastBlockKeys, load_backbone, preprocess
from ...model.forward import inference_forward
from ...runtime import resolve_device
from .. import options_class, predict_method
from .lost import lost_masks
from .maskcut import maskcut_masks
from .tokencut import tokencut_masks

# A dense N x N float64 graph per image: 20k patches = 3.2 GB. The official code has no limit and
# fails with an out-of-memory error; here the image is reported and the run goes on.
MAX_PATCHES = 20_000


# name -> the cut: last-block keys (B, N, D) and the patch grid -> ((B, gh, gw) uint8 labels (0 = background),
# (B, K) scores in [0, 1], scores[:, k - 1] for object k)
CUTS: dict[str, Callable[[torch.Tensor, tuple[int, int], Any], tuple[np.ndarray, np.ndarray]]] = {
    "tokencut": tokencut_masks,
    "lost": lost_masks,
    "maskcut": maskcut_masks,
}


class SpectralPredictor:
    """MaskPredictor for the training-free methods. ``backbone`` is a weights name or path (DINO's
    original .pth, a timm file, or ``timm:NAME``); None = ``options.backbone``, the official one. ``precision``
    and ``engine``: how the keys are computed (``model.forward.inference_forward``).

    ``stage`` splits the run in two (``io.features``): "features" runs the backbone only and returns each
    image's last-block keys as a ``FeatureRecord`` (kind "features"); "cuts" loads no backbone and cuts the keys
    of such records (``prepare`` takes a record instead of an image), giving the masks of the one-stage run."""

    def __init__(
        self,
        method: str,
        options: Any = None,
        backbone: str | Path | None = None,
        device: str | torch.device = "cpu",
        num_heads: int | None = None,
        stage: str | None = None,
        precision: str = "fp32",
        engine: str = "torch",
    ):
        entry = predict_method(method)
        cls = options_class(method)
        self.options: Any = options if options is not None else cls()
        if not isinstance(self.options, cls):
            raise UsageError(f"options for {method} must be {cls.__name__}")
        validate(self.options)
        self.cut = CUTS[method]
        self.stage = stage
        self.kind: Any = "features" if stage == "features" else entry.writes
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        if stage == "cuts":
            self.vit: Any = None
            return
        spec = backbone if backbone is not None else self.options.backbone
        if isinstance(spec, tuple) or "," in str(spec):
            raise UsageError(f"{param('method')} {method} cuts one {param('backbone')}, not a list")
        # parity mode (the exact solver; LOST has no other) also computes attention as DINO does
        parity = getattr(self.options, "eigensolver", "exact") == "exact"
        self.vit = load_backbone(spec, num_heads, explicit_attention=parity).to(self.device)
        self.keys = inference_forward(LastBlockKeys(self.vit), self.device, precision, engine)
        self.patch_size = int(self.vit.patch_embed.proj.kernel_size[0])
        if self.options.geometry == "fixed" and self.options.fixed_size < self.patch_size:
            raise UsageError(
                f"{param('fixed_size')} {self.options.fixed_size} is smaller than one patch of the backbone "
                f"({self.patch_size} px)"
            )

    def prepare(self, index: int, image: Any) -> Prepared:
        if self.stage == "cuts":  # a FeatureRecord: the keys are the batch's tensor, so equal grids share a batch
            g = image.geometry
            keys = torch.from_numpy(image.tensors["keys"])
            extra = {"grid": tuple(g["grid"]), "patch_size": g["patch_size"]}
            return Prepared(index, keys, tuple(g["content"]), tuple(g["original"]), extra=extra)
        o = self.options
        tensor, content = preprocess(image, o.geometry, self.patch_size, o.fixed_size)
        n = (tensor.shape[1] // self.patch_size) * (tensor.shape[2] // self.patch_size)
        if n > MAX_PATCHES:
            raise InputError(
                f"{image.shape[1]}x{image.shape[0]} image gives {n} patches, more than the "
                f"{MAX_PATCHES} a dense patch graph can hold; use geometry 'fixed' or 'resize' "
                "on a downscaled copy"
            )
        return Prepared(index, tensor, content, image.shape[:2])

    @torch.inference_mode()
    def run(self, batch: Sequence[Prepared]) -> list[Any]:
        """Same-shape batch -> per item at its original size: (float32 0/1 mask, {1: its score}) ("soft") or
        (uint8 labels, their objects' scores); the stage "features": its keys and geometry."""
        x = torch.stack([p.tensor for p in batch if p.tensor is not None])
        if self.stage == "cuts":
            keys, grid, p = x.to(self.device), batch[0].extra["grid"], batch[0].extra["patch_size"]
        else:
            p = self.patch_size
            grid = (x.shape[2] // p, x.shape[3] // p)
            keys = self.keys(x).to(self.device)
        if self.stage == "features":
            return [
                FeatureRecord(
                    {"keys": k.float().cpu().numpy()},
                    {"grid": list(grid), "patch_size": p, "content": list(it.resized), "original": list(it.original)},
                )
                for it, k in zip(batch, keys, strict=True)
            ]
        labels, scores = self.cut(keys, grid, self.options)
        out: list[Output] = []
        for item, lab, score in zip(batch, labels, scores, strict=True):
            full = upsample_labels(lab, self.options.geometry, p, item.resized, item.original)
            if self.kind == "instances":
                out.append((full, {int(k): float(score[k - 1]) for k in np.unique(full) if k}))
            else:  # one object: the score goes with the mask (io.masks.write_mask stores it)
                out.append(((full > 0).astype(np.float32), {1: float(score[0])}))
        return out


def upsample_labels(
    labels: np.ndarray, geometry: str, patch_size: int, content: tuple[int, int], original: tuple[int, int]
) -> np.ndarray:
    """(gh, gw) uint8 patch labels -> (H, W) uint8 labels at the original size (module docstring)."""
    h, w = original
    if geometry == "pad":
        return np.repeat(np.repeat(labels, patch_size, 0), patch_size, 1)[:h, :w]
    if geometry == "resize":
        t = torch.from_numpy(labels)[None, None].float()
        return F.interpolate(t, size=(h, w), mode="nearest")[0, 0].to(torch.uint8).numpy()
    return _fixed_to_original(labels, content, (h, w))


def _fixed_to_original(labels: np.ndarray, square: tuple[int, int], original: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = original
    t = torch.from_numpy(labels)[None, None].float()
    at_square = F.interpolate(t, size=square, mode="nearest")[0, 0].to(torch.uint8).numpy()
    ids = [k for k in np.unique(labels) if k]
    out = np.zeros((h, w), np.uint8)
    if not ids:
        return out
    resized = np.stack(
        [np.asarray(Image.fromarray((at_square == k).astype(np.uint8) * 255).resize((w, h))) for k in ids]
    )  # PIL's default filter for mode L: bicubic (CutLER maskcut.py __main__)
    upper = resized.max(axis=(1, 2), keepdims=True)
    keep = (resized > upper / 2.0) & (upper > 0)
    best = np.where(keep, resized.astype(np.int16), -1).argmax(0)
    claimed = keep.any(0)
    out[claimed] = np.asarray(ids, np.uint8)[best[claimed]]
    return out
