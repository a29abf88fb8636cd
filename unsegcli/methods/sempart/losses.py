"""Sempart's losses [P = arXiv 2309.10972 §3; our choices: README, Sempart]. Pure functions of
tensors: masks are probabilities in [0, 1], everything is computed in float32, per image, and the total
averages over the batch (E_x of eq. 9)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import SempartLossConfig


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """(B, ...) -> (B,): sum or mean over everything but the batch."""
    flat = values.flatten(1)
    return flat.sum(1) if reduction == "sum" else flat.mean(1)


def affinity(feats: torch.Tensor, tau: float, eps: float, self_loops: bool = False) -> torch.Tensor:
    """Eq. 5: W_ij = 1 if cos(F_i, F_j) > τ else ε, dense over all patches; W_ii = 0 without self-loops
    (Table 4). feats: (B, C, h, w) or (B, N, C) when already flattened. Returns (B, N, N), no gradient:
    the graph is a constant of the frozen features (our reading of the paper)."""
    with torch.no_grad():
        if feats.dim() == 4:
            feats = feats.flatten(2).transpose(1, 2)
        f = F.normalize(feats.float(), dim=-1)
        cos = f @ f.transpose(1, 2)
        w = torch.where(cos > tau, torch.ones_like(cos), torch.full_like(cos, eps))
        if not self_loops:
            w.diagonal(dim1=1, dim2=2).zero_()
    return w


def soft_ncut(s: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 6: Σ_{i∈{A,B}} S_iᵀ W (1 − S_i) / (S_iᵀ W 1), S_A = s, S_B = 1 − s. s: (B, N) or (B, 1, h, w);
    w: (B, N, N). ``eps`` guards the denominators (our choice S#8, README). Equals the discrete Ncut for binary s;
    every constant s gives exactly 1. Returns (B,)."""
    s = s.flatten(1).float()
    degree = w.sum(-1)
    total = s.new_zeros(s.shape[0])
    for part in (s, 1 - s):
        cut = (part * torch.bmm(w, (1 - part)[:, :, None])[:, :, 0]).sum(1)
        total = total + cut / ((part * degree).sum(1) + eps)
    return total


def grid_gtv(s: torch.Tensor, w_h: torch.Tensor, w_v: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Eq. 8 on a 4-neighbour grid: ½ Σ_(i,j) A_ij (s_i − s_j)² = Σ over undirected edges (our reading of the paper).
    s: (B, 1, H, W); w_h: (B, H, W-1) weights of horizontal edges; w_v: (B, H-1, W) of vertical ones.
    ``reduction`` "sum" = per image as written, "mean" = per edge. Returns (B,)."""
    s = s[:, 0].float()
    dh = w_h * (s[:, :, 1:] - s[:, :, :-1]) ** 2
    dv = w_v * (s[:, 1:, :] - s[:, :-1, :]) ** 2
    total = dh.flatten(1).sum(1) + dv.flatten(1).sum(1)
    if reduction == "mean":
        total = total / (dh[0].numel() + dv[0].numel())
    return total


def feature_edge_weights(feats: torch.Tensor, tau: float, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L_GTV-coarse's A_ij = W_ij (eq. 5, its own τ) between 4-neighbouring patches. feats (B, C, h, w)."""
    with torch.no_grad():
        f = F.normalize(feats.float(), dim=1)
        cos_h = (f[:, :, :, 1:] * f[:, :, :, :-1]).sum(1)
        cos_v = (f[:, :, 1:, :] * f[:, :, :-1, :]).sum(1)
        return tuple(
            torch.where(c > tau, torch.ones_like(c), torch.full_like(c, eps))  # type: ignore[return-value]
            for c in (cos_h, cos_v)
        )


def color_edge_weights(image: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L_GTV-fine's A_ij = exp(−‖X_i − X_j‖² / σ) between 4-neighbouring pixels [P §3.3]. image (B, 3, H, W)."""
    with torch.no_grad():
        x = image.float()
        d_h = ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).sum(1)
        d_v = ((x[:, :, 1:, :] - x[:, :, :-1, :]) ** 2).sum(1)
        return torch.exp(-d_h / sigma), torch.exp(-d_v / sigma)


def sr_loss(fine: torch.Tensor, coarse: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Eq. 7: ‖avgpool(S_fine) − S_coarse‖², the fine mask average-pooled to the patch grid. fine (B, 1, H, W),
    coarse (B, 1, h, w). Returns (B,)."""
    factor = fine.shape[-1] // coarse.shape[-1]
    if fine.shape[-2] != coarse.shape[-2] * factor or fine.shape[-1] != coarse.shape[-1] * factor:
        raise ValueError(f"fine mask {tuple(fine.shape[-2:])} is not an integer multiple of {tuple(coarse.shape[-2:])}")
    pooled = F.avg_pool2d(fine.float(), factor)
    return _reduce((pooled - coarse.float()) ** 2, reduction)


def sempart_loss(
    coarse: torch.Tensor, fine: torch.Tensor, feats: torch.Tensor, image: torch.Tensor, cfg: SempartLossConfig
) -> dict[str, torch.Tensor]:
    """Eq. 9, batch-averaged. coarse (B, 1, h, w) and fine (B, 1, H, W) probabilities, feats (B, C, h, w) the
    frozen DINO features, image (B, 3, H, W) the normalised input. Returns the weighted terms and "total"."""
    w = affinity(feats, cfg.tau, cfg.eps, cfg.self_loops)
    ncut = soft_ncut(coarse, w, cfg.ncut_eps).mean()
    gtv_c = grid_gtv(coarse, *feature_edge_weights(feats, cfg.tau_gtv, cfg.eps), cfg.reduction_gtv).mean()
    gtv_f = grid_gtv(fine, *color_edge_weights(image, cfg.sigma), cfg.reduction_gtv).mean()
    # without joint training the fine branch distils a fixed target (paper §4.4 ablation)
    sr = sr_loss(fine, coarse if cfg.joint else coarse.detach(), cfg.reduction_sr).mean()
    terms = {
        "ncut": ncut,
        "gtv_coarse": cfg.lambda_gtv_coarse * gtv_c,
        "gtv_fine": cfg.lambda_gtv_fine * gtv_f,
        "sr": cfg.lambda_sr * sr,
    }
    terms["total"] = terms["ncut"] + terms["gtv_coarse"] + terms["gtv_fine"] + terms["sr"]
    return terms
