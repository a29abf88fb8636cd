"""Image grids of a training step: one row per named tensor, the first images of the batch side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io.files import atomic_write_bytes
from ..io.images import denormalize
from ..io.masks import encode_png

GRID_COLUMNS = 8


def grid(rows: list[torch.Tensor], columns: int = GRID_COLUMNS) -> np.ndarray:
    """Rows of (B, 3, H, W) ImageNet-normalised images or (B, 1, H, W) values in [0, 1] -> uint8 RGB (H', W', 3)."""
    out = []
    for r in rows:
        r = r.detach().float().cpu()[:columns]
        r = r.expand(-1, 3, -1, -1) if r.shape[1] == 1 else denormalize(r)
        out.append(torch.cat(list(r.clamp(0, 1)), dim=2))
    img = torch.cat(out, dim=1).permute(1, 2, 0).numpy()
    return (img * 255).astype(np.uint8)


def write_grid(path: str | Path, rows: list[torch.Tensor]) -> None:
    atomic_write_bytes(path, encode_png(grid(rows)[:, :, ::-1]))  # OpenCV writes BGR
