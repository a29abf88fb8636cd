"""Projected GAN discriminator (Sauer et al. 2021) as MOVE uses it: a frozen timm
tf_efficientnet_lite0 split at blocks [0:2], [2:3], [3:5], [5:], fixed random cross-channel (CCM)
and cross-scale (CSM) projections to 64·(1, 2, 4, 8) channels, and one small discriminator per
scale (4 heads); inputs resized to 224 after DiffAugment "color"."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

from ..config import IMAGENET_MEAN, IMAGENET_STD

PROJ_CHANNELS = 64  # Projected GAN cout, expanded x1, x2, x4, x8 with depth


def diffaugment_color(x: torch.Tensor, generator=None) -> torch.Tensor:
    """DiffAugment 'color' (Zhao et al. 2020): random brightness, saturation, contrast per image."""
    b = x.shape[0]
    r = lambda: torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype, generator=generator)  # noqa: E731
    x = x + (r() - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (r() * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (r() + 0.5) + mean


class _FeatureFusion(nn.Module):
    """CSM step: upsample the deeper map, add, 1x1 conv (fixed, random)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.out_conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x, skip=None):
        if skip is not None:
            x = x + skip
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Projector(nn.Module):
    """Frozen feature network + fixed random projections -> 4 feature maps."""

    def __init__(self, pretrained_file: str | None = None, random_init: bool = False):
        super().__init__()
        import timm

        net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        if pretrained_file:
            from ..model.checkpoint import load_strict, read_backbone_state

            sd = read_backbone_state(__import__("pathlib").Path(pretrained_file))
            own = net.state_dict()
            sd = {k: v for k, v in sd.items() if k in own and not k.startswith("classifier.")}
            sd.update({k: v for k, v in own.items() if k.startswith("classifier.")})
            load_strict(net, sd, f"EfficientNet-Lite0 weights {pretrained_file}")
        elif not random_init:
            raise ValueError("pretrained_file or random_init required")
        cfg = net.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", IMAGENET_MEAN)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", IMAGENET_STD)).view(1, 3, 1, 1), persistent=False)
        self.layer0 = nn.Sequential(net.conv_stem, net.bn1, *net.blocks[0:2])
        self.layer1 = nn.Sequential(*net.blocks[2:3])
        self.layer2 = nn.Sequential(*net.blocks[3:5])
        self.layer3 = nn.Sequential(*net.blocks[5:])
        with torch.no_grad():
            chans = [t.shape[1] for t in self._features(torch.zeros(1, 3, 64, 64))]
        outs = [PROJ_CHANNELS * m for m in (1, 2, 4, 8)]
        self.ccm = nn.ModuleList(nn.Conv2d(c, o, 1) for c, o in zip(chans, outs))
        self.csm = nn.ModuleList([_FeatureFusion(outs[1], outs[0]), _FeatureFusion(outs[2], outs[1]),
                                  _FeatureFusion(outs[3], outs[2]), _FeatureFusion(outs[3], outs[3])])
        self.channels = outs
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def _features(self, x):
        f0 = self.layer0(x)
        f1 = self.layer1(f0)
        f2 = self.layer2(f1)
        return [f0, f1, f2, self.layer3(f2)]

    def forward(self, x01: torch.Tensor) -> list[torch.Tensor]:
        feats = self._features((x01 - self.mean) / self.std)
        c = [m(f) for m, f in zip(self.ccm, feats)]
        p3 = c[3]
        p2 = self.csm[2](p3)[..., : c[2].shape[-2], : c[2].shape[-1]] + c[2]
        p1 = self.csm[1](p2)[..., : c[1].shape[-2], : c[1].shape[-1]] + c[1]
        p0 = self.csm[0](p1)[..., : c[0].shape[-2], : c[0].shape[-1]] + c[0]
        return [p0, p1, p2, p3]


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1, bias=False)), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.2))


class _SingleDisc(nn.Module):
    """Stride-2 blocks down to <= 8 pixels, then a 4x4 conv to one logit map."""

    def __init__(self, cin: int, size: int):
        super().__init__()
        layers, c = [], cin
        while size > 8:
            nc = max(64, min(512, c))
            layers.append(_down(c, nc))
            c, size = nc, size // 2
        layers.append(spectral_norm(nn.Conv2d(c, 1, min(4, size), 1, 0)))
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x)


class ProjectedDiscriminator(nn.Module):
    def __init__(self, projector: Projector, resolution: int = 224):
        super().__init__()
        self.projector = projector
        self.resolution = resolution
        with torch.no_grad():
            sizes = [f.shape[-1] for f in projector(torch.zeros(1, 3, resolution, resolution))]
        self.heads = nn.ModuleList(_SingleDisc(c, s) for c, s in zip(projector.channels, sizes))

    def forward(self, x_normalised: torch.Tensor, augment: bool = True) -> torch.Tensor:
        """ImageNet-normalised images -> (B, n_logits) over the 4 scales."""
        mean = torch.tensor(IMAGENET_MEAN, device=x_normalised.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x_normalised.device).view(1, 3, 1, 1)
        x = x_normalised * std + mean  # back to [0, 1]
        if augment:
            x = diffaugment_color(x)
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        feats = self.projector(x)
        return torch.cat([h(f).flatten(1) for h, f in zip(self.heads, feats)], 1)
