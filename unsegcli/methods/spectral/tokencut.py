"""TokenCut (Wang et al., CVPR 2022): one normalised cut of the patch graph (TokenCut object_discovery.py)."""

from __future__ import annotations

import numpy as np
import torch

from .core import binary_cosine_affinity, fiedler, orient_by_seed, seed_component
from .options import TokenCutOptions


def tokencut_masks(keys: torch.Tensor, grid: tuple[int, int], opts: TokenCutOptions) -> np.ndarray:
    """(B, N, D) keys -> (B, gh, gw) uint8: 1 on the seed's component of the NCut bipartition."""
    v = fiedler(binary_cosine_affinity(keys, opts.tau, opts.eps), opts.eigensolver).cpu().numpy()
    fg, seed = orient_by_seed(v)
    return seed_component(fg, seed, grid).astype(np.uint8)
