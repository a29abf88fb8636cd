"""LOST (Siméoni et al., BMVC 2021): the lowest-degree patch seeds an expansion (valeoai/LOST object_discovery.py)."""

from __future__ import annotations

import numpy as np
import torch

from .core import dot_affinity, min_degree_seed, seed_component
from .options import LostOptions


def lost_masks(keys: torch.Tensor, grid: tuple[int, int], opts: LostOptions) -> np.ndarray:
    """(B, N, D) keys -> (B, gh, gw) uint8: 1 on the seed's component of the expanded map."""
    a = dot_affinity(keys)
    order = min_degree_seed(a)
    seed = order[:, 0]
    rows = torch.arange(len(a), device=a.device)
    potentials = order[:, : opts.k_patches]
    similar = a[rows[:, None], seed[:, None], potentials] > 0  # the seed itself is always similar
    # sum of the similar candidates' affinity rows (object_discovery.py lost: A[similars].sum(0))
    score = (similar[:, None, :].float() @ a.gather(1, potentials[..., None].expand(-1, -1, a.shape[-1])))[:, 0]
    fg = (score > 0).cpu().numpy()
    return seed_component(fg, seed.cpu().numpy(), grid).astype(np.uint8)
