"""MaskCut (CutLER, Wang et al., CVPR 2023): repeated NCut, painting out each found object (maskcut/maskcut.py)."""

from __future__ import annotations

import numpy as np
import torch

from .core import binary_affinity, cosine_similarity, fiedler, mask_iou, ncut_score, orient_corners, seed_component
from .options import MaskCutOptions


def maskcut_masks(keys: torch.Tensor, grid: tuple[int, int], opts: MaskCutOptions) -> tuple[np.ndarray, np.ndarray]:
    """(B, N, D) keys -> ((B, gh, gw) uint8 label maps, (B, max_objects) scores). Object k = 1.. in
    discovery order, disjoint (each mask minus the earlier ones, the official pixel subtraction done on the
    patch grid, which is the same since every upsampling is nearest). Rejected and emptied masks get no
    label. Object k's score, ``scores[:, k - 1]``, is the ``ncut_score`` of its cut's mask on the graph it
    was cut from (earlier objects painted out). With ``stop_score`` > 0 an image stops at its first cut
    scoring below it: that cut and later ones give no object (0 = the official fixed number of cuts)."""
    b, n, _ = keys.shape
    gh, gw = grid
    painted = np.zeros((b, gh, gw), bool)
    previous = np.zeros((b, gh, gw), bool)
    labels = np.zeros((b, gh, gw), np.uint8)
    scores = np.zeros((b, opts.max_objects))
    count = np.zeros(b, np.int64)
    stopped = np.zeros(b, bool)
    cos = cosine_similarity(keys)  # computed once: painting only zeroes rows and columns of it
    for i in range(opts.max_objects):
        if i:  # paint out the previous mask: its keys become 0, i.e. its cosines to everything 0
            painted |= previous
            for j, idx in enumerate(np.flatnonzero(row) for row in painted.reshape(b, n)):
                cos[j, idx, :] = 0
                cos[j, :, idx] = 0
        a = binary_affinity(cos, opts.tau, opts.eps)
        v = fiedler(a, opts.eigensolver).cpu().numpy()
        fg, seed = orient_corners(v, grid, opts.orientation)
        mask = seed_component(fg, seed, grid)
        score = ncut_score(a, mask)
        stopped |= score < opts.stop_score
        mask[stopped] = False
        if i:
            mask[rejected(previous, mask, opts)] = False
        previous = mask
        new = mask & (labels == 0)
        has = new.any((1, 2))
        count += has
        scores[has, count[has] - 1] = score[has]
        labels[new] = np.repeat(count, gh * gw).reshape(b, gh, gw)[new]
    return labels, scores


def rejected(previous: np.ndarray, mask: np.ndarray, opts: MaskCutOptions) -> np.ndarray:
    """(B, gh, gw) masks -> (B,) bool: the new mask overlaps the previous one (IoU > max_iou; NaN
    when both are empty, which never rejects) or covers at most min_fraction of the grid."""
    grid = mask.shape[-2] * mask.shape[-1]
    return (mask_iou(previous, mask) > opts.max_iou) | (mask.sum((-2, -1)) <= opts.min_fraction * grid)
