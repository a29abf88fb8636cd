"""Model and checkpoints: the ViT backbone, presets, our checkpoint format, weight resolution and download."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unsegcli.config import ModelConfig, PreprocessConfig
from unsegcli.errors import CheckpointError, UnsegError, WeightsNotFoundError
from unsegcli.methods.loading import load_segmenter
from unsegcli.model.backbone import build_vit, dino_pos_embed, timm_pos_embed, weights_follow
from unsegcli.model.checkpoint import checkpoint_dict, save_checkpoint
from unsegcli.model.dino_keys import load_dino_vit

from ..helpers import save_dino_backbone, tiny_model, write_images


def test_features_come_from_the_chosen_block_with_the_new_norm():
    model = tiny_model(depth=3)
    vit = model.backbone.vit
    x = torch.randn(2, 3, 64, 64)  # the native grid: no interpolation
    with torch.no_grad():
        t = vit.patch_embed(x)
        t = torch.cat([vit.cls_token.expand(2, -1, -1), t], 1) + vit.pos_embed
        for blk in vit.blocks[:2]:  # block_index -2 of 3 blocks = block 1
            t = blk(t)
        ref = model.backbone.norm(t)[:, 1:].transpose(1, 2).reshape(2, -1, 8, 8)
        np.testing.assert_allclose(model.backbone(x).numpy(), ref.numpy(), atol=1e-5)


def _keys_1d(values: np.ndarray, n_out: int, scale: float, a: float = -0.75) -> np.ndarray:
    """Independent bicubic (Keys kernel, a = -0.75 as PyTorch) with border clamping: output j
    samples the source at (j + 0.5) / scale - 0.5 (align_corners=False)."""

    def w(x):
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a if x < 2 else 0.0

    out = np.zeros(n_out)
    for j in range(n_out):
        src = (j + 0.5) / scale - 0.5
        f = math.floor(src)
        out[j] = sum(w(src - k) * values[min(max(k, 0), len(values) - 1)] for k in range(f - 1, f + 3))
    return out


def test_dino_pos_embed_rule_known_answer():
    # DINO samples with scale (n + 0.1) / sqrt(N), not the exact n / sqrt(N); a pos-embed that
    # varies along x only must match a 1-D bicubic at exactly those positions.
    N_side, dim, n_h, n_w = 8, 3, 10, 13
    col = np.random.default_rng(0).normal(size=N_side)
    grid = np.tile(col, (N_side, 1))
    pe = torch.cat(
        [torch.zeros(1, 1, dim), torch.tensor(grid, dtype=torch.float32).reshape(1, -1, 1).expand(1, -1, dim)], 1
    )
    out = dino_pos_embed(pe, n_h, n_w)[0, 1:, 0].reshape(n_h, n_w).numpy()
    expected = _keys_1d(col, n_w, (n_w + 0.1) / N_side)
    for row in out:
        np.testing.assert_allclose(row, expected, atol=1e-5)
    exact = timm_pos_embed(pe, n_h, n_w)[0, 1:, 0].reshape(n_h, n_w).numpy()
    assert np.abs(out - exact).max() > 1e-2  # the two rules really differ
    assert torch.equal(dino_pos_embed(pe, N_side, N_side), pe)  # native size: untouched


def test_timm_rule_is_selectable():
    dino, timm = tiny_model(pos_embed="dino"), tiny_model(pos_embed="timm")
    timm.load_state_dict(dino.state_dict())  # same weights: only the resampling rule differs
    x = torch.randn(1, 3, 48, 80)  # not the native 64 x 64 grid, so the position embeddings are resampled
    with torch.no_grad():
        a, b = dino(x), timm(x)
    assert a.shape == b.shape == (1, 1, 48, 80)
    assert (a - b).abs().max() > 1e-4
    with torch.no_grad():  # at the native grid both rules keep the embeddings as they are
        y = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(dino(y), timm(y))


def test_presets_name_every_shape_once():
    from typing import get_args

    from unsegcli.config import PRESETS, PresetName
    from unsegcli.methods.move.official_import import OFFICIAL_BACKBONES, config_from_official_args

    assert set(PRESETS) == set(get_args(PresetName))
    assert PRESETS["vits8"] == ModelConfig()  # MOVE's model is the default config
    assert PRESETS["tiny"] == ModelConfig.tiny()
    # ViT-B/8: 768-d, 12 heads; head widths max(128, 768 / 2^(i+1)) for 3 upsamplings + 1 (conv_minc128)
    assert PRESETS["vitb8"].backbone.num_heads == 12 and PRESETS["vitb8"].head.widths == (384, 192, 128, 128)
    assert PRESETS["vits16"].head.widths == (192, 128, 128, 128, 128)  # patch 16: log2(16) = 4 upsamplings + 1
    for official, preset in OFFICIAL_BACKBONES.items():
        cfg = config_from_official_args({"feature_extractor": official})
        assert cfg.backbone == PRESETS[preset].backbone


def test_checkpoint_roundtrip_is_strict_and_weights_only(tmp_path):
    model = tiny_model()
    path = tmp_path / "m.pt"
    save_checkpoint(path, checkpoint_dict(model, PreprocessConfig(size=96, max_size=200), {"k": "v"}))
    torch.load(path, weights_only=True)  # must not need pickle
    loaded, prep, meta = load_segmenter(path)
    assert prep == PreprocessConfig(size=96, max_size=200) and meta == {"k": "v"}
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    ckpt = torch.load(path, weights_only=True)
    del ckpt["state_dict"]["head.model.4.weight"]
    ckpt["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: head\.model\.4\.weight.*unexpected keys: extra\.weight"):
        load_segmenter(tmp_path / "bad.pt")
    torch.save({"model": {}}, tmp_path / "official.pt")
    with pytest.raises(CheckpointError, match="import-move"):
        load_segmenter(tmp_path / "official.pt")


def test_loaders_skip_the_random_init_their_strict_load_replaces(tmp_path, monkeypatch):
    """timm's init runs for a ViT built to train, not for one a checkpoint or a DINO file fills right after."""
    from timm.models.vision_transformer import VisionTransformer

    calls = []
    init = VisionTransformer.init_weights
    monkeypatch.setattr(VisionTransformer, "init_weights", lambda self, *a, **k: calls.append(1) or init(self, *a, **k))
    model = tiny_model()  # built to train: initialised
    assert calls == [1]
    with weights_follow():
        build_vit(model.backbone.cfg)
    assert calls == [1]
    build_vit(model.backbone.cfg)  # the context ends with its block
    assert calls == [1, 1]
    path = tmp_path / "m.pt"
    save_checkpoint(path, checkpoint_dict(model, PreprocessConfig(size=64)))
    loaded, _, _ = load_segmenter(path)
    dino = load_dino_vit(save_dino_backbone(tmp_path / "dino.pth"))
    assert calls == [1, 1, 1]  # save_dino_backbone's ViT only: neither loader initialised
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    saved = torch.load(tmp_path / "dino.pth", weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in dino.state_dict().items())


def test_weights_resolution_order(tmp_path, monkeypatch, tiny_ckpt):
    from unsegcli.model import registry

    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(registry, "PACKAGED_DIR", tmp_path)
    monkeypatch.delenv("UNSEG_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotFoundError) as e:
        registry.resolve_weights(None)
    assert "unseg-demo-synth.pt" in e.value.message and "make demo-model" in e.value.hint
    (tmp_path / "unseg-demo-synth.pt").write_bytes(b"x")
    assert registry.resolve_weights(None) == tmp_path / "unseg-demo-synth.pt"
    monkeypatch.setenv("UNSEG_WEIGHTS", str(tiny_ckpt))
    assert registry.resolve_weights(None) == tiny_ckpt
    assert registry.resolve_weights("demo-synth") == tmp_path / "unseg-demo-synth.pt"
    with pytest.raises(WeightsNotFoundError, match="move-dino-vits8.pt") as e:
        registry.resolve_weights("move-dino-vits8")
    assert "import-move" in e.value.hint


def test_missing_default_weights_message_in_cli(tmp_path, monkeypatch, cli):
    from unsegcli.model import registry

    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path / "nothing")
    monkeypatch.setattr(registry, "PACKAGED_DIR", tmp_path / "nothing")
    monkeypatch.delenv("UNSEG_WEIGHTS", raising=False)
    write_images(tmp_path / "imgs", [(30, 40)])
    res = cli("predict", tmp_path / "imgs", "-o", tmp_path / "m")
    assert res.exit_code == 1
    assert "unseg-demo-synth.pt" in res.stderr and "make demo-model" in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 3  # one clear message, no traceback


def test_fetch_checks_checksum_and_fails_clearly_offline(tmp_path, monkeypatch):
    import hashlib

    from unsegcli.model.download import download

    src = tmp_path / "src.bin"
    src.write_bytes(b"weights" * 1000)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    assert download(src.as_uri(), tmp_path / "a.bin", sha256=good).read_bytes() == src.read_bytes()
    with pytest.raises(UnsegError, match="checksum mismatch"):
        download(src.as_uri(), tmp_path / "b.bin", sha256="0" * 64)
    assert not (tmp_path / "b.bin").exists() and not list(tmp_path.glob(".b.bin*"))
    with pytest.raises(UnsegError, match="cannot download") as e:
        download("http://127.0.0.1:9/none.pth", tmp_path / "c.bin", timeout=2)
    assert "offline" in e.value.hint


def test_weights_list_and_info(cli, tiny_ckpt):
    import json

    res = cli("weights", "list", "--json")
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["dino-vits8"]["url"].endswith("dino_deitsmall8_pretrain.pth")
    assert rows["mae-vitl16-gan"]["url"].endswith("mae_visualize_vit_large_ganloss.pth")
    info = json.loads(cli("weights", "info", tiny_ckpt).stdout)
    assert info["model_config"]["backbone"]["patch_size"] == 8 and info["preprocess"]["size"] == 64


def test_embedded_demo_checkpoint_matches_its_card():
    from unsegcli.methods.move.predictor import predict_masks
    from unsegcli.model import registry
    from unsegcli.synth import generate

    path = registry.path_of("demo-synth")
    assert registry.sha256_of(path) == registry.KNOWN["demo-synth"].sha256
    assert path.stat().st_size < 20e6
    model, prep, meta = load_segmenter(path)
    samples = [generate(5, i, 96) for i in range(24)]  # a seed it was not trained on
    masks = predict_masks(model, [s.image for s in samples], prep, batch_size=8)
    ious = [
        ((m > 0.5) & (s.mask > 0)).sum() / max(((m > 0.5) | (s.mask > 0)).sum(), 1)
        for m, s in zip(masks, samples, strict=True)
    ]
    assert np.mean(ious) >= 0.75
