"""MOVE's convolutional upsampling head (supplementary D, eq. 2).

Layout kept identical to the official SegmenterConvHead so official state dicts map by prefix:
``model.i`` = [Upsample, Conv3x3, BN, LeakyReLU] for the upsampling blocks, then
[Conv3x3, BN, LeakyReLU], then a 1x1 Conv to one channel.
"""

from __future__ import annotations

import torch.nn as nn

from ...config import HeadConfig


def _block(cin: int, cout: int, upsample: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU()]
    if upsample:
        layers.insert(0, nn.Upsample(scale_factor=2, mode="nearest"))
    return nn.Sequential(*layers)


class ConvHead(nn.Module):
    """(B, C, h, w) features -> (B, 1, h * 2**upsampling_blocks, ...) mask logits."""

    def __init__(self, in_channels: int, cfg: HeadConfig):
        super().__init__()
        if len(cfg.widths) != cfg.upsampling_blocks + 1:
            raise ValueError("head needs one width per upsampling block plus one")
        widths = (in_channels, *cfg.widths)
        blocks = [_block(widths[i], widths[i + 1], upsample=i < cfg.upsampling_blocks) for i in range(len(widths) - 1)]
        self.model = nn.Sequential(*blocks, nn.Conv2d(widths[-1], 1, 1))

    def forward(self, feats):
        return self.model(feats)
