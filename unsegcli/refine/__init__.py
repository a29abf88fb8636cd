"""Mask refinement that composes with any mask source (unseg predict, MOVE, TokenCut, other tools' masks).

Two refiners, each with the constants of the published rows it reproduces (the official
``bilateral_solver.py``, CutLER's ``maskcut/crf.py``):
- ``bilateral``: the fast bilateral solver of TokenCut/MOVE/FOUND. Output ``soft`` is the solver output that
  TokenCut "+BS" and MOVE "+Bilateral" score; ``component`` is FOUND-style (holes filled, one object component),
  optionally with FOUND's IoU > 0.5 gate; ``official`` is the official ``binary_solver`` rule, for parity only
  (it keeps the background whenever the object is the larger region).
- ``crf``: CutLER's dense CRF (optional extra ``unseg[crf]``), holes filled, mask dropped if IoU < 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from ..errors import UsageError, param

RefineMethod = Literal["bilateral", "crf"]
RefineOutput = Literal["soft", "component", "official"]
METHODS: tuple[str, ...] = get_args(RefineMethod)
OUTPUTS: tuple[str, ...] = get_args(RefineOutput)


@dataclass(frozen=True)
class RefineOptions:
    method: RefineMethod = "bilateral"
    # bilateral only: "soft" (TokenCut "+BS", MOVE "+Bilateral" rows), "component" (FOUND's binary_solver, fixed
    # to keep the object) or "official" (binary_solver as published); the CRF's output is always binary.
    output: RefineOutput = "soft"
    # Input masks are binarised at this value for the IoU gates (MOVE's official threshold, 0.5).
    threshold: float = 0.5
    # None = the method's published default: off for bilateral (only FOUND gates), on for crf (CutLER always does).
    iou_gate: bool | None = None
    # Bilateral grid: every evaluated official call passes 16/16/8 (TokenCut argparse and README, MOVE infer.py,
    # FOUND misc.py); the function's own defaults 24/4/4 are never used.
    sigma_spatial: float = 16.0
    sigma_luma: float = 16.0
    sigma_chroma: float = 8.0
    # Official bs_params (fixed in bilateral_solver_output): lam 256, A_diag_min 1e-5, cg_tol 1e-5, cg_maxiter 25;
    # confidence 0.999 everywhere; bistochastize(maxiter=10).
    lam: float = 256.0
    confidence: float = 0.999
    cg_tol: float = 1e-5
    cg_maxiter: int = 25
    diag_min: float = 1e-5
    bistochastic_iterations: int = 10
    # CutLER maskcut/crf.py: MAX_ITER 10, POS_W 7, POS_XY_STD 3, Bi_W 10, Bi_XY_STD 50, Bi_RGB_STD 5.
    crf_iterations: int = 10
    crf_pos_w: float = 7.0
    crf_pos_xy_std: float = 3.0
    crf_bi_w: float = 10.0
    crf_bi_xy_std: float = 50.0
    crf_bi_rgb_std: float = 5.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown refine method '{self.method}'", f"use one of {', '.join(METHODS)}")
        if self.output not in OUTPUTS:
            raise UsageError(f"unknown refine output '{self.output}'", f"use one of {', '.join(OUTPUTS)}")
        if self.method == "crf" and self.output != "soft":  # said, not ignored
            raise UsageError(
                f"{param('output')} {self.output} applies to the bilateral solver; "
                "the CRF always writes a 0/255 labelling"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise UsageError(f"threshold must be in [0, 1], not {self.threshold}")
        if min(self.sigma_spatial, self.sigma_luma, self.sigma_chroma) <= 0:
            raise UsageError("sigma_spatial, sigma_luma and sigma_chroma must be positive")
        if self.lam <= 0 or not 0.0 < self.confidence <= 1.0 or self.cg_maxiter < 1 or self.crf_iterations < 1:
            raise UsageError("lam must be > 0, confidence in (0, 1], cg_maxiter and crf_iterations >= 1")

    @property
    def gated(self) -> bool:
        return self.method == "crf" if self.iou_gate is None else self.iou_gate

    @property
    def binary(self) -> bool:
        """Whether ``refine_mask`` returns a {0, 1} uint8 mask (else float32 in [0, 1])."""
        return self.method == "crf" or self.output != "soft"


def match_size(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a mask to the image's (H, W) as MOVE's bilateral_solver.py does: ``cv2.resize`` with its default
    bilinear interpolation (CutLER's CRF also upsamples its logits bilinearly)."""
    import cv2

    if mask.shape == tuple(shape):
        return mask
    return cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def refine_mask(mask: np.ndarray, image: np.ndarray, options: RefineOptions | None = None) -> np.ndarray:
    """HxW float mask in [0, 1] + HxWx3 uint8 RGB image -> the refined mask at the image's size:
    float32 in [0, 1] for the ``soft`` output, uint8 {0, 1} for ``component``, ``official`` and ``crf``.

    A mask of another size is first resized to the image (``match_size``)."""
    from .postprocess import GATE_IOU, fill_holes, iou, object_component, official_component

    opts = options or RefineOptions()
    if mask.ndim != 2:
        raise UsageError(f"mask must be HxW, got shape {mask.shape}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UsageError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
    mask = np.clip(match_size(mask, image.shape[:2]).astype(np.float32), 0.0, 1.0)
    given = mask > opts.threshold
    if opts.method == "crf":
        from .crf import dense_crf

        labelled = dense_crf(
            image,
            mask,
            opts.crf_iterations,
            opts.crf_pos_w,
            opts.crf_pos_xy_std,
            opts.crf_bi_w,
            opts.crf_bi_xy_std,
            opts.crf_bi_rgb_std,
        )
        refined = fill_holes(labelled)
        if opts.gated and iou(given, refined) < GATE_IOU:  # CutLER: a CRF mask that moved too far is dropped
            refined = np.zeros_like(refined)
        return refined.astype(np.uint8)

    from .bilateral import bilateral_solve

    solved = bilateral_solve(
        image,
        mask,
        opts.sigma_spatial,
        opts.sigma_luma,
        opts.sigma_chroma,
        opts.lam,
        opts.confidence,
        opts.cg_tol,
        opts.cg_maxiter,
        opts.diag_min,
        opts.bistochastic_iterations,
    )
    if opts.output == "soft":
        out = np.clip(solved, 0.0, 1.0).astype(np.float32)
        if opts.gated and not iou(given, out > 0.5) > GATE_IOU:  # FOUND: otherwise keep the mask unchanged
            return mask
        return out
    # official binary_solver threshold 0.5
    component = object_component(solved > 0.5) if opts.output == "component" else official_component(solved)
    if opts.gated and not iou(given, component) > GATE_IOU:
        return given.astype(np.uint8)
    return component.astype(np.uint8)


__all__ = ["METHODS", "OUTPUTS", "RefineMethod", "RefineOptions", "RefineOutput", "match_size", "refine_mask"]
