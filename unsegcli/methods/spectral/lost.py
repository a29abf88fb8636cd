"""LOST (Siméoni et al., BMVC 2021): the lowest-degree patch seeds an expansion (valeoai/LOST object_discovery.py)."""

from __future__ import annotations

import numpy as np
import torch

from .core import binary_affinity, dot_affinity, min_degree_seed, ncut_score, seed_component
from .options import LostOptions


def lost_masks(keys: torch.Tensor, grid: tuple[int, int], opts: LostOptions) -> tuple[np.ndarray, np.ndarray]:
    """(B, N, D) keys -> ((B, gh, gw) uint8: 1 on the seed's component of the expanded map, (B, 1) its
    ``ncut_score`` on LOST's own graph of positively correlated patches, the one its degrees count)."""
    a = dot_affinity(keys)
    order = min_degree_seed(a)
    seed = order[:, 0]
    rows = torch.arange(len(a), device=a.device)
    potentials = order[:, : opts.k_patches]
    similar = a[rows[:, None], seed[:, None], potentials] > 0  # the seed itself is always similar
    # sum of the similar candidates' affinity rows (object_discovery.py lost: A[similars].sum(0))
    score = (similar[:, None, :].float() @ a.gather(1, potentials[..., None].expand(-1, -1, a.shape[-1])))[:, 0]
    fg = (score > 0).cpu().numpy()
    mask = seed_component(fg, seed.cpu().numpy(), grid)
    return mask.astype(np.uint8), ncut_score(binary_affinity(a, 0.0, 0.0), mask)[:, None]
