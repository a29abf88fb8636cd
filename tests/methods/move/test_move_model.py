"""MOVE's segmenter and the official release: the paper's architecture, import of checkpoint-N.pth."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from unsegcli.config import ModelConfig, PreprocessConfig
from unsegcli.errors import CheckpointError
from unsegcli.methods.loading import load_segmenter
from unsegcli.methods.move.official_import import import_official_move
from unsegcli.methods.move.segmenter import Segmenter

from ...helpers import random_image, randomize_batchnorm, write_images


def test_default_architecture_is_moves():
    model = Segmenter(ModelConfig())
    # supplementary D: widths 192, 128, 128 (+128), three x2 upsamplings, 1x1 conv to one channel
    convs = [m for m in model.head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (384, 192, (3, 3)),
        (192, 128, (3, 3)),
        (128, 128, (3, 3)),
        (128, 128, (3, 3)),
        (128, 1, (1, 1)),
    ]
    assert model.backbone.cfg.feature_block == 10  # penultimate of 12 blocks
    assert model.backbone.norm.eps == 1e-6 and model.backbone.norm is not model.backbone.vit.norm
    assert not any(p.requires_grad for p in model.backbone.vit.parameters())
    x = torch.randn(1, 3, 24, 40)
    assert model.eval()(x).shape == (1, 1, 24, 40)


def _official_release(tmp_path, seed=0):
    """Files laid out as the official release: checkpoint-N.pth (+ .args) and DINO's ViT-S/8 file."""
    torch.manual_seed(seed)
    ref = Segmenter(ModelConfig())  # DINO ViT-S/8 + conv_minc128
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.05)
        randomize_batchnorm(ref.head)
    official = {}
    for k, v in ref.state_dict().items():
        if k.startswith("backbone.norm."):
            official["segmenter.feature_extractor." + k[len("backbone.") :]] = v.clone()
        elif k.startswith("head."):
            official["segmenter.segmenter_head." + k[len("head.") :]] = v.clone()
    args = argparse.Namespace(
        feature_extractor="dino_vits8", segmenter_head="conv_minc128", extractor_block_layer=-2, shift_range=0.125
    )
    torch.save(
        {"args": args, "epoch": 80, "model": official, "optimizer": {}, "discriminator": {}, "optimizer_d": {}},
        tmp_path / "checkpoint-80.pth",
    )
    torch.save({"args": args}, tmp_path / "checkpoint-80.args")
    dino = {k[len("backbone.vit.") :]: v.clone() for k, v in ref.state_dict().items() if k.startswith("backbone.vit.")}
    torch.save(dino, tmp_path / "dino_deitsmall8_pretrain.pth")
    return ref.eval(), official


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The seed-0 release (a full ViT-S/8, the slow part), written once for the tests that only read it:
    its folder, the reference model and the official state dict."""
    folder = tmp_path_factory.mktemp("release")
    return (folder, *_official_release(folder))


def test_import_official_release_predicts_like_the_same_tensors(tmp_path, cli, release):
    folder, ref, _ = release
    out = tmp_path / "move.pt"
    res = cli(
        "weights",
        "import-move",
        folder / "checkpoint-80.pth",
        "--backbone",
        folder / "dino_deitsmall8_pretrain.pth",
        "--out",
        out,
        "--size",
        "64",
    )
    assert res.exit_code == 0, res.output
    assert "weights_only=False" in res.stderr  # the one-time unpickling is announced
    loaded, prep, meta = load_segmenter(out)
    assert meta["epoch"] == 80 and loaded.cfg.backbone.pos_embed == "dino" and prep.size == 64
    x = torch.randn(1, 3, 48, 72)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded(x).numpy(), ref(x).numpy())
    # and end to end through the CLI on a folder
    write_images(tmp_path / "imgs", [(30, 50), (50, 30)])
    res = cli("predict", tmp_path / "imgs", "-o", tmp_path / "m", "-w", out, "-j", "0")
    assert res.exit_code == 0, res.output
    from PIL import Image

    from unsegcli.methods.move.predictor import predict_masks

    exp = predict_masks(ref, [random_image(30, 50, seed=0)], PreprocessConfig(size=64))[0]
    got = np.asarray(Image.open(tmp_path / "m" / "img_00.png"))
    assert np.abs(got.astype(int) - np.floor(exp * 255).astype(int)).max() <= 1


def test_import_accepts_timm_safetensors_backbone(tmp_path):
    from safetensors.torch import save_file

    ref, _ = _official_release(tmp_path, seed=1)
    sd = torch.load(tmp_path / "dino_deitsmall8_pretrain.pth", weights_only=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "model.safetensors")
    model, _ = import_official_move(tmp_path / "checkpoint-80.pth", tmp_path / "model.safetensors")
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_import_lists_missing_and_unexpected_keys(tmp_path, release):
    folder, _, official = release
    args = argparse.Namespace(feature_extractor="dino_vits8", segmenter_head="conv_minc128", extractor_block_layer=-2)
    broken = dict(official)
    del broken["segmenter.segmenter_head.model.4.weight"]
    torch.save({"args": args, "model": broken}, tmp_path / "c1.pth")
    with pytest.raises(CheckpointError, match=r"segmenter\.segmenter_head\.model\.4\.weight"):
        import_official_move(tmp_path / "c1.pth", folder / "dino_deitsmall8_pretrain.pth")
    torch.save({"args": args, "model": {**official, "discriminator.x": torch.zeros(1)}}, tmp_path / "c2.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys.*discriminator\.x"):
        import_official_move(tmp_path / "c2.pth", folder / "dino_deitsmall8_pretrain.pth")
    dino = torch.load(folder / "dino_deitsmall8_pretrain.pth", weights_only=True)
    del dino["blocks.3.attn.qkv.weight"]
    torch.save(dino, tmp_path / "dino_bad.pth")
    with pytest.raises(CheckpointError, match=r"backbone weights.*missing keys: blocks\.3\.attn\.qkv\.weight"):
        import_official_move(folder / "checkpoint-80.pth", tmp_path / "dino_bad.pth")
