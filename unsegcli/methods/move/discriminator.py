"""Projected GAN discriminator (Sauer et al. 2021) as MOVE uses it (official discriminators/
pg_modules): a frozen timm tf_efficientnet_lite0 split at blocks [0:2], [2:3], [3:5], [5:], fixed
random cross-channel (CCM, to 64·(1, 2, 4, 8)) and cross-scale (CSM) projections, one small
discriminator per scale (4 heads); DiffAugment "color" on [-1, 1] images, then resized to 224.
The small presets put timm's test_efficientnet in the feature network's place (``MoveOptions.disc_net``)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

from ...config import IMAGENET_MEAN, IMAGENET_STD
from .config import DISC_NET

PROJ_CHANNELS = 64  # Projected GAN cout, expanded x1, x2, x4, x8 with depth

# Where each feature network is cut into Projected GAN's 4 scales (output strides 4, 8, 16, 32): the first
# block of layers 1, 2 and 3. tf_efficientnet_lite0 (stage strides 1, 2, 2, 2, 1, 2, 1): Projected GAN's
# _make_efficientnet, blocks [0:2], [2:3], [3:5], [5:9]. timm's test_efficientnet (stage strides 1, 2, 2, 2, 2):
# [0:2], [2:3], [3:4], [4:], the same strides.
FEATURE_SPLITS: dict[str, tuple[int, int, int]] = {"tf_efficientnet_lite0": (2, 3, 5), "test_efficientnet": (2, 3, 4)}


def diffaugment_color(x: torch.Tensor, generator=None) -> torch.Tensor:
    """DiffAugment 'color' (Zhao et al. 2020) on [-1, 1] images: random brightness, saturation,
    contrast per image."""
    b = x.shape[0]
    r = lambda: torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype, generator=generator)  # noqa: E731
    x = x + (r() - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (r() * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (r() + 0.5) + mean


class _FeatureFusion(nn.Module):
    """Projected GAN's CSM block: add the coarser mixed map, upsample x2 (bilinear, corners
    aligned), 1x1 conv (halving the channels when ``expand``). Fixed and random, like the CCM."""

    def __init__(self, features: int, expand: bool):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features // 2 if expand else features, 1)

    def forward(self, x, skip=None):
        if skip is not None:
            x = x + skip
        return self.out_conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


class Projector(nn.Module):
    """Frozen feature network + fixed random CCM/CSM -> 4 maps of 64, 64, 128, 256 channels at
    twice the feature resolutions (Projected GAN proj_type 2, expand)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, pretrained_file: str | None = None, random_init: bool = False, net_name: str = DISC_NET):
        super().__init__()
        import timm

        if net_name not in FEATURE_SPLITS:
            raise ValueError(f"no known split of {net_name!r} into 4 scales: one of {', '.join(FEATURE_SPLITS)}")
        net = timm.create_model(net_name, pretrained=False)
        if pretrained_file:
            from ...model.state_dict import load_strict, read_backbone_state

            sd = read_backbone_state(pretrained_file)
            own = net.state_dict()
            sd = {k: v for k, v in sd.items() if k in own and not k.startswith("classifier.")}
            sd.update({k: v for k, v in own.items() if k.startswith("classifier.")})
            load_strict(net, sd, f"EfficientNet-Lite0 weights {pretrained_file}")
        elif not random_init:
            raise ValueError("pretrained_file or random_init required")
        # tf_efficientnet_lite0 expects mean = std = 0.5, i.e. [-1, 1] input
        cfg: dict = getattr(net, "pretrained_cfg", {})
        self.register_buffer("mean", torch.tensor(cfg.get("mean", IMAGENET_MEAN)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", IMAGENET_STD)).view(1, 3, 1, 1), persistent=False)
        act1: nn.Module = getattr(net, "act1", nn.Identity())  # newer timm folds the activation into bn1
        # getattr: mypy types timm's submodules as Tensor | Module
        blocks: nn.Sequential = getattr(net, "blocks")  # noqa: B009
        a, b, c = FEATURE_SPLITS[net_name]
        self.layer0 = nn.Sequential(getattr(net, "conv_stem"), getattr(net, "bn1"), act1, *blocks[0:a])  # noqa: B009
        self.layer1 = nn.Sequential(*blocks[a:b])
        self.layer2 = nn.Sequential(*blocks[b:c])
        self.layer3 = nn.Sequential(*blocks[c:])
        with torch.no_grad():
            chans = [t.shape[1] for t in self._features(torch.zeros(1, 3, 64, 64))]
        mixed = [PROJ_CHANNELS * m for m in (1, 2, 4, 8)]
        self.ccm = nn.ModuleList(nn.Conv2d(c, o, 1) for c, o in zip(chans, mixed, strict=True))
        self.csm = nn.ModuleList(
            [
                _FeatureFusion(mixed[0], expand=False),
                _FeatureFusion(mixed[1], expand=True),
                _FeatureFusion(mixed[2], expand=True),
                _FeatureFusion(mixed[3], expand=True),
            ]
        )
        self.channels = [PROJ_CHANNELS, PROJ_CHANNELS, PROJ_CHANNELS * 2, PROJ_CHANNELS * 4]
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def _features(self, x):
        f0 = self.layer0(x)
        f1 = self.layer1(f0)
        f2 = self.layer2(f1)
        return [f0, f1, f2, self.layer3(f2)]

    def forward(self, x11: torch.Tensor) -> list[torch.Tensor]:
        """[-1, 1] images -> the 4 mixed feature maps, finest first."""
        x = ((x11 + 1) / 2 - self.mean) / self.std
        c = [m(f) for m, f in zip(self.ccm, self._features(x), strict=True)]
        p3 = self.csm[3](c[3])
        p2 = self.csm[2](p3, c[2])
        p1 = self.csm[1](p2, c[1])
        p0 = self.csm[0](p1, c[0])
        return [p0, p1, p2, p3]


# Projected GAN SingleDisc: channels by (nominal) resolution
_DISC_CHANNELS = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32}


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1, bias=False)), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)
    )


class _SingleDisc(nn.Module):
    """Stride-2 down blocks from the nominal start size to 8, then a 4x4 conv to a logit map."""

    def __init__(self, cin: int, nominal: int):
        super().__init__()
        layers: list[nn.Module] = []
        c, size = cin, nominal
        while size > 8:
            nc = _DISC_CHANNELS[size // 2]
            layers.append(_down(c, nc))
            c, size = nc, size // 2
        layers.append(spectral_norm(nn.Conv2d(c, 1, 4, 1, 0, bias=False)))
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x)


class ProjectedDiscriminator(nn.Module):
    """DiffAugment colour -> resize to ``resolution`` -> projector -> 4 heads, logits concatenated."""

    def __init__(self, projector: Projector, resolution: int = 224):
        super().__init__()
        self.projector = projector
        self.resolution = resolution
        with torch.no_grad():
            sizes = [f.shape[-1] for f in projector(torch.zeros(1, 3, resolution, resolution))]
        # Projected GAN fixes the heads' depth as for 256-px input (112 -> 128, ..., 14 -> 16 at 224)
        nominal = [min(_DISC_CHANNELS, key=lambda k: abs(k - s * 256 / 224)) for s in sizes]
        nominal = [max(n, 8) for n in nominal]
        self.heads = nn.ModuleList(_SingleDisc(c, n) for c, n in zip(projector.channels, nominal, strict=True))

    def forward(self, x_normalised: torch.Tensor, augment: bool = True) -> torch.Tensor:
        """ImageNet-normalised images -> (B, n_logits) over the 4 scales."""
        mean = torch.tensor(IMAGENET_MEAN, device=x_normalised.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x_normalised.device).view(1, 3, 1, 1)
        x = (x_normalised * std + mean) * 2 - 1  # the [-1, 1] range Projected GAN works in
        if augment:
            x = diffaugment_color(x)
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        return torch.cat([h(f).flatten(1) for h, f in zip(self.heads, self.projector(x), strict=True)], 1)
