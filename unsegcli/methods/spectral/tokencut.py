"""TokenCut (Wang et al., CVPR 2022): one normalised cut of the patch graph (TokenCut object_discovery.py)."""

from __future__ import annotations

import numpy as np
import torch

from .core import binary_cosine_affinity, fiedler, ncut_score, orient_by_seed, seed_component
from .options import TokenCutOptions


def tokencut_masks(keys: torch.Tensor, grid: tuple[int, int], opts: TokenCutOptions) -> tuple[np.ndarray, np.ndarray]:
    """(B, N, D) keys -> ((B, gh, gw) uint8: 1 on the seed's component of the NCut bipartition, (B, 1) its
    ``ncut_score`` on the patch graph)."""
    a = binary_cosine_affinity(keys, opts.tau, opts.eps)
    fg, seed = orient_by_seed(fiedler(a, opts.eigensolver).cpu().numpy())
    mask = seed_component(fg, seed, grid)
    return mask.astype(np.uint8), ncut_score(a, mask)[:, None]
