"""MOVE losses: eq. 1 (minimum area), eq. 2 (binarisation), eq. 5 / 6 (hinge), plus the
self-training loss. Defaults from the paper (sec. 3) and the official train.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_AREA = 0.05  # θ_min
MIN_WEIGHT = 100.0  # λ_min
BIN_WEIGHT = 12.5  # λ_bin after the ramp
BIN_RAMP_STEPS = 2500  # linear ramp 0 -> λ_bin over the first segmenter iterations
POOL = 16  # masks are also penalised after 16x max- and avg-pooling (supplementary B)


def min_area_loss(mask: torch.Tensor, theta: float = MIN_AREA) -> torch.Tensor:
    """Eq. 1: mean over images of max(θ - mean_p m[p], 0). mask: (B, 1, H, W)."""
    return torch.relu(theta - mask.mean(dim=(-1, -2))).sum(1).mean()


def binarization_loss(mask: torch.Tensor) -> torch.Tensor:
    """Eq. 2: mean over images and pixels of min(m, 1 - m)."""
    return torch.minimum(mask, 1 - mask).sum(1).mean()


def bin_weight(step: int, weight: float = BIN_WEIGHT, ramp: int = BIN_RAMP_STEPS) -> float:
    return weight * min(step, ramp) / ramp if ramp > 0 else weight


def mask_losses(mask: torch.Tensor, step: int, pool: int = POOL) -> dict[str, torch.Tensor]:
    """λ_min·L_min + λ_bin(step)·L_bin on the mask and its max- and avg-pooled versions."""
    versions = {"": mask, "_max": F.max_pool2d(mask, pool, pool), "_avg": F.avg_pool2d(mask, pool, pool)}
    out = {}
    for suffix, m in versions.items():
        out["min" + suffix] = MIN_WEIGHT * min_area_loss(m)
        out["bin" + suffix] = bin_weight(step) * binarization_loss(m)
    return out


def d_hinge_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 5: E[max(0, 1 - D(x_R))] + E[max(0, 1 + D(x_S))], each set's inputs averaged."""
    real = torch.stack([F.relu(1 - r).mean() for r in real_logits]).mean()
    fake = torch.stack([F.relu(1 + f).mean() for f in fake_logits]).mean()
    return real + fake


def s_adversarial_loss(composed_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 6: -E[D(x̂_δ)]."""
    return -composed_logits.mean()


def self_training_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft IoU (1 - Σpt / Σ(p + t - pt)) against pseudo-masks in [0, 1]."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    union = (p + target - p * target).sum(dim=(1, 2, 3))
    return bce + (1 - (inter + 1) / (union + 1)).mean()
