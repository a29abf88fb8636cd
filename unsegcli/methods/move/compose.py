"""Shifts, the inpainting region m̂ and the composites of MOVE (eq. 3, 4; official utils_move.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_shifts(batch: int, height: int, width: int, shift_range: float, generator=None, device=None) -> torch.Tensor:
    """(B, 2) integer shifts (dx, dy), uniform in ±shift_range · min(H, W) (official MAEComposer:
    rand * 2 - 1, times shift_range times the shorter side, rounded). MOVE: shift_range = 1/8."""
    r = torch.rand(batch, 2, generator=generator, device=device) * 2 - 1
    return (r * shift_range * min(height, width)).round().long()


def shift(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """out[b, :, y, x] = x[b, :, y - dy, x - dx], zero where that falls outside (content moves by +d)."""
    b, c, h, w = x.shape
    ys = torch.arange(h, device=x.device)[None, :] - shifts[:, 1:2].to(x.device)  # (B, H)
    xs = torch.arange(w, device=x.device)[None, :] - shifts[:, 0:1].to(x.device)  # (B, W)
    valid = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]  # (B, H, W)
    yi = ys.clamp(0, h - 1)[:, :, None].expand(b, h, w)
    xi = xs.clamp(0, w - 1)[:, None, :].expand(b, h, w)
    flat = (yi * w + xi).reshape(b, 1, h * w).expand(b, c, h * w)
    out = x.reshape(b, c, h * w).gather(2, flat).reshape(b, c, h, w)
    return out * valid[:, None].to(x.dtype)


def inpaint_region(mask: torch.Tensor, mask_shifted: torch.Tensor, tile: int) -> torch.Tensor:
    """Eq. 4: m̂ = maxpool_P(1 - (1 - m)(1 - m_δ)), one value per P x P tile: (B, 1, H/P, W/P)."""
    union = 1 - (1 - mask) * (1 - mask_shifted)
    return F.max_pool2d(union, kernel_size=tile, stride=tile)


def composites(
    x_ae: torch.Tensor,
    x_ae_shifted: torch.Tensor,
    background: torch.Tensor,
    mask: torch.Tensor,
    mask_shifted: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Eq. 3 and the discriminator's other inputs.

    x̂_δ = m_δ x̌_δ + (1 - m_δ) b̂ (fake, the only path of the segmenter's adversarial gradient);
    x̂_0 = m x̌ + (1 - m) b̂ (real); x̃_δ = m_δ x̌_δ + (1 - m_δ) x̌ (copy-paste fake); x̌ (real).
    """
    return {
        "composed": mask_shifted * x_ae_shifted + (1 - mask_shifted) * background,
        "composed_noshift": mask * x_ae + (1 - mask) * background,
        "copy_paste": mask_shifted * x_ae_shifted + (1 - mask_shifted) * x_ae,
        "real_ae": x_ae,
    }
