"""FOUND's computations, written from the official code (valeoai/FOUND at 1ad22ba, Apache-2.0): the features,
the training-free background discovery, the decoder's mask at image size, the single-object mode, the bilateral
solver rule with its IoU gate, and the official decoder file.

Features (model.py forward_step / extract_feats): the last block's keys, CLS dropped, heads concatenated
head-major, as (B, D, h, w); no normalisation. The background discovery also reads the last block's attention of
the CLS query towards the patches, softmax(q kᵀ · dh^-1/2) per head (DINO's get_last_selfattention).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import CheckpointError
from ...model.dino_keys import last_block_qk
from ...refine import RefineOptions
from ...refine.postprocess import GATE_IOU, fill_holes, iou, largest_component, official_component
from .config import THRESHOLD

EPSILON = 1e-10  # bkg_seg.py compute_img_bkg_seg(epsilon=1e-10)


def features(vit: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W), H and W multiples of the patch size -> (keys (B, D, h, w) float32, CLS attention
    (B, heads, h*w)). One forward pass gives both, as the official ``forward_step``."""
    p = int(vit.patch_embed.proj.kernel_size[0])
    h, w = x.shape[2] // p, x.shape[3] // p
    q, k = last_block_qk(vit, x)
    b, t, d = k.shape
    heads = int(vit.blocks[-1].attn.num_heads)
    dh = d // heads
    qc = q[:, :1].reshape(b, 1, heads, dh).transpose(1, 2)  # (B, heads, 1, dh)
    kh = k.reshape(b, t, heads, dh).transpose(1, 2)  # (B, heads, T, dh)
    # DINO Attention.forward: (q @ kᵀ) * scale, then softmax over all T tokens; the CLS row, patches only
    att = ((qc @ kh.transpose(-2, -1)) * dh**-0.5).softmax(dim=-1)[:, :, 0, 1:]
    keys = k[:, 1:].float().reshape(b, h, w, d).permute(0, 3, 1, 2)
    return keys, att.float()


def background(keys: torch.Tensor, att: torch.Tensor, threshold: float) -> torch.Tensor:
    """FOUND's training-free background discovery (bkg_seg.py compute_img_bkg_seg, apply_weights=True):
    keys (B, D, h, w), CLS attention (B, heads, h*w) -> (B, h, w) bool, True = background.

    Each head gets CroW's sparsity weight β_h = log(Σ_h'(Q_h' + ε) / (Q_h + ε)), Q_h the fraction of patches
    whose attention is above the image's mean attention; the seed is the patch the β-weighted CLS attention
    looks at least (the first on ties, torch.argmin); a patch is background if the cosine of its β-weighted key
    with the seed's is above ``threshold``."""
    b, d, h, w = keys.shape
    heads, n = att.shape[1], att.shape[2]
    mean = att.reshape(b, -1).mean(dim=1)
    q = (att > mean[:, None, None]).sum(dim=2) / n
    beta = torch.log((q + EPSILON).sum(dim=1, keepdim=True) / (q + EPSILON))  # (B, heads)
    descs = keys.permute(0, 2, 3, 1).reshape(b, n, heads, d // heads) * beta[:, None, :, None]
    descs = F.normalize(descs.reshape(b, n, d), dim=-1, p=2)
    seed = torch.argmin((att * beta[:, :, None]).sum(dim=1), dim=-1)
    cos = torch.bmm(descs[torch.arange(b), seed][:, None], descs.transpose(1, 2))[:, 0]
    return (cos > threshold).reshape(b, h, w)


def upsample_logits(logits: torch.Tensor, patch_size: int, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) patch logits -> (B, 1, H, W) logits at image size: bilinear x patch_size on the padded grid,
    then cropped (evaluation/saliency.py: the logits are interpolated, the sigmoid comes after)."""
    up = F.interpolate(logits, scale_factor=patch_size, mode="bilinear", align_corners=False)
    return up[..., : size[0], : size[1]]


def single(binary: np.ndarray) -> np.ndarray:
    """FOUND-single (evaluation/saliency.py 'single'): the component overlapping the predicted background most
    is dropped (that is label 0, the background itself), then the largest remaining one is kept; so the largest
    4-connected foreground component, empty without foreground. Ties: the first in raster order (the official
    unstable argsort leaves them undefined)."""
    return largest_component(binary)


def solve_binary(
    image: np.ndarray, target: np.ndarray, rule: str, all_components: bool, options: RefineOptions | None = None
) -> np.ndarray:
    """The bilateral solver (σ 16/16/8 and the official constants of ``refine.RefineOptions``, or ``options``') on
    ``target`` with the image as reference, binarised by FOUND's ``binary_solver``: ``rule`` "fixed": holes
    filled, then the largest foreground component (single) or all foreground (``all_components``); "official":
    the published rule (``refine.postprocess.official_component``)."""
    from ...refine.bilateral import bilateral_solve

    o = options if options is not None else RefineOptions()
    solved = bilateral_solve(
        image,
        target.astype(np.float32),
        o.sigma_spatial,
        o.sigma_luma,
        o.sigma_chroma,
        o.lam,
        o.confidence,
        o.cg_tol,
        o.cg_maxiter,
        o.diag_min,
        o.bistochastic_iterations,
    )
    if rule == "official":
        return official_component(solved, all_components)
    filled = fill_holes(solved > 0.5)
    return filled if all_components else largest_component(filled)


def solver_agrees(given: np.ndarray, result: np.ndarray) -> bool:
    """FOUND's gate (misc.py apply_bilateral_solver): IoU > 0.5, the IoU being intersection over the logical OR;
    an empty union gives NaN there, which fails the gate."""
    return bool(np.count_nonzero(given | result)) and iou(given, result) > GATE_IOU


def found_bilateral(
    image: np.ndarray, binary: np.ndarray, rule: str, all_components: bool, options: RefineOptions | None = None
) -> np.ndarray:
    """FOUND's '+BS' at inference: the solver on the binary mask; its result replaces the mask only if the gate
    passes, else the mask is kept (misc.py apply_bilateral_solver)."""
    result = solve_binary(image, binary, rule, all_components, options)
    return result if solver_agrees(binary, result) else binary


def soft_to_output(soft: np.ndarray, image: np.ndarray | None, mode: str, refine: RefineOptions | None) -> np.ndarray:
    """The soft mask at image size -> what ``unseg predict --method found`` writes: the soft mask (multi), or
    a {0, 1} float32 mask (single; or with ``refine``, the bilateral solver with FOUND's gate: FOUND's '+BS'
    masks are binary, single mode's the largest component, multi mode's all foreground; ``refine.output``
    "official" = the published binary_solver rule)."""
    binary = soft > THRESHOLD
    if refine is not None:
        assert image is not None and refine.method == "bilateral", refine
        rule = "official" if refine.output == "official" else "fixed"
        return found_bilateral(image, binary, rule, mode == "multi", refine).astype(np.float32)
    if mode == "single":
        return single(binary).astype(np.float32)
    return soft


def read_official_decoder(path: str | Path) -> dict[str, torch.Tensor]:
    """The official decoder file (``{"decoder": Conv2d(D, 1, 1x1) state dict}``, saved on cuda:0 by
    model.py decoder_save_weights) -> {"weight": (1, D, 1, 1), "bias": (1,)} float32 on the CPU."""
    from ...model.state_dict import load_tensors

    data = load_tensors(path, "a FOUND decoder file")
    sd = data.get("decoder") if isinstance(data, dict) else None
    if not isinstance(sd, dict) or set(sd) != {"weight", "bias"}:
        raise CheckpointError(
            f"{path}: not a FOUND decoder file", "expected {'decoder': {'weight', 'bias'}} (data/weights/*.pt)"
        )
    weight, bias = sd["weight"], sd["bias"]
    if weight.ndim != 4 or weight.shape[0] != 1 or weight.shape[2:] != (1, 1) or tuple(bias.shape) != (1,):
        raise CheckpointError(f"{path}: decoder weight {tuple(weight.shape)} is not a 1x1 convolution to one channel")
    return {"weight": weight.float().contiguous(), "bias": bias.float().contiguous()}


def write_official_decoder(decoder: torch.nn.Conv2d, path: str | Path) -> None:
    """Our decoder -> the official file format (model.py decoder_save_weights), atomically."""
    import io

    from ...io.files import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({"decoder": {k: v.detach().cpu() for k, v in decoder.state_dict().items()}}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
