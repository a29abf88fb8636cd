"""The projected discriminator's frozen feature network: EfficientNet-Lite0 for real presets (weights loaded
from timm's file), timm's test_efficientnet for the small presets, both cut into the same 4 scales."""

from __future__ import annotations

import timm
import torch

from unsegcli.engine.config import TrainConfig, WeightSources
from unsegcli.methods.move.build import build_discriminator
from unsegcli.methods.move.config import MoveOptions
from unsegcli.methods.move.discriminator import ProjectedDiscriminator, Projector


def _scales(projector: Projector, size: int = 64) -> list[tuple[int, int]]:
    """(channels, side) of the feature network's 4 layers on a size x size input."""
    with torch.no_grad():
        return [(f.shape[1], f.shape[-1]) for f in projector._features(torch.zeros(1, 3, size, size))]


def test_both_feature_networks_give_the_4_scales_and_the_heads_the_same_logits_shape():
    lite0, test = Projector(random_init=True), Projector(random_init=True, net_name="test_efficientnet")
    # Projected GAN's EfficientNet-Lite0 split: strides 4, 8, 16, 32 with 24, 40, 112, 320 channels
    assert _scales(lite0) == [(24, 16), (40, 8), (112, 4), (320, 2)]
    assert _scales(test) == [(24, 16), (32, 8), (48, 4), (64, 2)]  # the test model: the same strides
    x = torch.zeros(2, 3, 64, 64)
    with torch.no_grad():
        maps = [[tuple(m.shape) for m in p(x)] for p in (lite0, test)]
        assert maps[0] == maps[1] == [(2, 64, 32, 32), (2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4)]
        logits = [ProjectedDiscriminator(p, 64)(x, augment=False).shape for p in (lite0, test)]
    assert logits[0] == logits[1]
    assert sum(p.numel() for p in test.parameters()) < sum(p.numel() for p in lite0.parameters()) / 4


def test_small_presets_build_the_test_model_and_real_presets_load_lite0_weights(tmp_path):
    small = build_discriminator(TrainConfig(options=MoveOptions.for_arch("tiny")), WeightSources(random_init=True))
    assert _scales(small.projector)[-1] == (64, 2)  # test_efficientnet's last stage
    torch.manual_seed(0)
    state = timm.create_model("tf_efficientnet_lite0").state_dict()  # timm's layout, as pytorch_model.bin
    torch.save(state, tmp_path / "pytorch_model.bin")
    real = build_discriminator(
        TrainConfig(options=MoveOptions.for_arch("vits8")),
        WeightSources(disc_backbone=str(tmp_path / "pytorch_model.bin")),
    )
    assert real.resolution == 224
    assert torch.equal(real.projector.layer0[0].weight, state["conv_stem.weight"])
    assert torch.equal(real.projector.layer3[-1][-1].conv_pwl.weight, state["blocks.6.0.conv_pwl.weight"])
