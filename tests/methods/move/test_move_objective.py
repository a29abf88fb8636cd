"""MOVE's objective: losses, composition, the MAE and blur inpainters, gradient routing, short runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unsegcli.engine.objective import Objective
from unsegcli.errors import UsageError
from unsegcli.methods.move import compose, losses
from unsegcli.methods.move.config import MAEConfig
from unsegcli.methods.move.inpainters import BlurInpainter, MAEInpainter, load_mae
from unsegcli.model.checkpoint import read_checkpoint

from ...helpers import trainer

TINY_MAE = MAEConfig(
    img_size=64,
    patch_size=16,
    embed_dim=32,
    depth=1,
    num_heads=2,
    decoder_embed_dim=16,
    decoder_depth=1,
    decoder_num_heads=2,
)


def test_mask_losses_hand_computed():
    m = torch.zeros(2, 1, 4, 4)
    m[0, 0, :2, :2] = 1.0  # image 0 covers 4/16 = 0.25 >= 0.05 -> no L_min
    m[1, 0, 0, 0] = 0.32  # image 1 covers 0.02 -> L_min = 0.05 - 0.02 = 0.03
    assert losses.min_area_loss(m).item() == pytest.approx((0 + 0.03) / 2)
    # L_bin: only the 0.32 pixel is non-binary: min(0.32, 0.68) / 16 pixels, then mean over 2 images
    assert losses.binarization_loss(m).item() == pytest.approx(0.32 / 16 / 2)
    assert losses.bin_weight(0) == 0 and losses.bin_weight(1250) == 6.25 and losses.bin_weight(10**6) == 12.5
    terms = losses.mask_losses(m, step=2500, pool=2)
    # 2x2 max-pool of image 1: [[0.32, 0], [0, 0]] -> area 0.08 -> no L_min; bin min(.32,.68)/4/2
    assert terms["min_max"].item() == pytest.approx(100 * (0 + 0) / 2)
    assert terms["bin_max"].item() == pytest.approx(12.5 * 0.32 / 4 / 2)
    assert terms["min_avg"].item() == pytest.approx(100 * (0.05 - 0.02) / 2)  # avg pool keeps the mean area


def test_hinge_losses_hand_computed():
    real, fake = torch.tensor([[2.0, 0.5]]), torch.tensor([[-2.0, 0.0]])
    # real: max(0, 1-2)=0, max(0, 1-0.5)=0.5 -> 0.25; fake: max(0, 1-2)=0, max(0, 1+0)=1 -> 0.5
    assert losses.d_hinge_loss([real], [fake]).item() == pytest.approx(0.75)
    assert losses.s_adversarial_loss(torch.tensor([[1.0, 3.0]])).item() == -2.0
    t = torch.tensor([[[[1.0, 0.0]]]])
    big = torch.tensor([[[[20.0, -20.0]]]])
    assert losses.self_training_loss(big, t).item() == pytest.approx((1 - 2 / 2), abs=1e-6)


def test_shift_and_composites_on_a_hand_made_example():
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    s = compose.shift(x, torch.tensor([[1, 2]]))  # dx = 1 (right), dy = 2 (down)
    expected = torch.zeros(4, 4)
    expected[2:, 1:] = x[0, 0, :2, :3]
    assert torch.equal(s[0, 0], expected)
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 0, 0] = 1
    ms = compose.shift(m, torch.tensor([[3, 0]]))
    region = compose.inpaint_region(m, ms, tile=2)
    assert region[0, 0].tolist() == [[1.0, 1.0], [0.0, 0.0]]  # union of (0,0) and (0,3) touches both top tiles
    xa, xs, bg = torch.full((1, 1, 4, 4), 1.0), torch.full((1, 1, 4, 4), 2.0), torch.full((1, 1, 4, 4), 3.0)
    c = compose.composites(xa, xs, bg, m, ms)
    assert c["composed"][0, 0, 0].tolist() == [3, 3, 3, 2] and c["composed_noshift"][0, 0, 0].tolist() == [1, 3, 3, 3]
    assert c["copy_paste"][0, 0, 0].tolist() == [1, 1, 1, 2]
    sh = compose.sample_shifts(1000, 224, 300, 0.125, torch.Generator().manual_seed(0))
    assert sh.abs().max() <= 28 and sh.dtype == torch.long  # 1/8 of the shorter side


def _official_mae_state(cfg: MAEConfig) -> dict:
    """A state dict with the official MAE key names and shapes, random values."""
    torch.manual_seed(0)
    ref = MAEInpainter(cfg)
    return {
        k: torch.randn_like(v) if k not in ("pos_embed", "decoder_pos_embed") else v
        for k, v in ref.state_dict().items()
    }


def test_mae_loads_official_layout_and_soft_masking_equals_mask_token(tmp_path):
    sd = _official_mae_state(TINY_MAE)
    expected_keys = {
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "norm.weight",
        "decoder_embed.weight",
        "mask_token",
        "decoder_pos_embed",
        "decoder_norm.bias",
        "decoder_pred.weight",
        "blocks.0.attn.qkv.weight",
        "decoder_blocks.0.mlp.fc2.bias",
    }
    assert expected_keys <= set(sd)
    assert sd["decoder_pred.weight"].shape == (16 * 16 * 3, 16)
    torch.save({"model": sd}, tmp_path / "mae.pth")
    mae = load_mae(str(tmp_path / "mae.pth"), TINY_MAE)
    x = torch.randn(2, 3, 64, 64)
    region = torch.zeros(2, 1, 4, 4)
    region[0, 0, 1, 2] = region[1, 0, 3, 0] = 1.0
    soft = mae(x, region)
    # reference: feed the mask token itself at the masked tiles
    with torch.no_grad():
        lat = mae.encode(x)
        t = mae.decoder_embed(lat)
        hard = region.flatten(1).bool()
        tiles = t[:, 1:].clone()
        tiles[hard] = mae.mask_token[0, 0]
        t = torch.cat([t[:, :1], tiles], 1) + mae.decoder_pos_embed
        for blk in mae.decoder_blocks:
            t = blk(t)
        pred = mae.decoder_pred(mae.decoder_norm(t))[:, 1:]
        p = pred.reshape(2, 4, 4, 16, 16, 3)
        ref = torch.einsum("nhwpqc->nchpwq", p).reshape(2, 3, 64, 64)
    torch.testing.assert_close(soft, ref, atol=1e-5, rtol=1e-5)
    del sd["mask_token"]
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(Exception, match="missing keys: mask_token"):
        load_mae(str(tmp_path / "bad.pth"), TINY_MAE)


def test_blur_inpainter_copies_real_pixels_outside_the_region():
    x = torch.randn(1, 3, 32, 32)
    region = torch.zeros(1, 1, 2, 2)
    region[0, 0, 0, 0] = 1
    out = BlurInpainter()(x, region)
    assert torch.equal(out[..., 16:, :], x[..., 16:, :]) and torch.equal(out[..., :16, 16:], x[..., :16, 16:])
    assert not torch.allclose(out[..., :16, :16], x[..., :16, :16])


def test_segmenter_step_changes_only_the_segmenter_and_vice_versa(tmp_path):
    tr = trainer(tmp_path)
    obj = tr.objective
    x = next(iter(tr.batches()))
    assert obj.batches_per_step == 2  # MOVE alternates a discriminator batch and a segmenter batch
    seg, disc = obj.segmenter, obj.discriminator
    seg0 = {k: v.clone() for k, v in seg.state_dict().items()}
    disc0 = {k: v.clone() for k, v in disc.state_dict().items()}
    # adversarial gradient reaches the mask only through x̂_δ: other composites are detached for D
    out = obj.forward(x, tr.gen)
    g_composed = torch.autograd.grad(disc(out["composed"], augment=False).mean(), out["mask"], retain_graph=True)[0]
    assert g_composed.abs().sum() > 0
    for key in ("composed_noshift", "copy_paste"):
        assert out[key].requires_grad  # depends on the mask, but D sees it detached in the step
    result = obj.step([x, x], 0, tr.ctx)
    assert list(result.images) == ["input", "mask", "background", "composed", "composed_noshift", "copy_paste"]
    changed_seg = [k for k, v in seg.state_dict().items() if not torch.equal(v, seg0[k])]
    changed_disc = [k for k, v in disc.state_dict().items() if not torch.equal(v, disc0[k])]
    assert changed_seg and all(not k.startswith("backbone.vit.") for k in changed_seg)  # frozen ViT
    assert changed_disc and all(not k.startswith("projector.") for k in changed_disc)  # frozen projector
    # a discriminator step alone leaves the segmenter untouched
    seg1 = {k: v.clone() for k, v in seg.state_dict().items()}
    seg.eval()  # BN statistics would move in train mode; the parameters are what we check
    disc1 = {k: v.clone() for k, v in disc.state_dict().items()}
    obj.opt_s.zero_grad(set_to_none=True)
    obj.discriminator_step(obj.forward(x, tr.gen), tr.ctx)
    assert all(p.grad is None for p in seg.parameters())
    assert all(torch.equal(v, seg1[k]) for k, v in seg.state_dict().items())
    assert any(not torch.equal(v, disc1[k]) for k, v in disc.state_dict().items())


@pytest.mark.parametrize("objective,inpainter", [("move", "mae"), ("self", "blur")])
def test_short_runs_write_checkpoints_that_predict_loads_and_resume(tmp_path, cli, objective, inpainter):
    tr = trainer(tmp_path, objective, steps=4, inpainter=inpainter)
    last = tr.run()
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(1, 5)) and all(np.isfinite(list(m.values())).all() for m in lines)
    assert (tmp_path / "run" / "step_0000002.pt").exists()
    assert (tmp_path / "run" / "images" / "step_0000004.png").exists()
    res = cli("predict", tmp_path / "data" / "images", "-o", tmp_path / "masks", "-w", last, "-j", "0")
    assert res.exit_code == 0, res.output
    assert isinstance(tr.objective, Objective)
    st = read_checkpoint(last)["train_state"]
    assert st["objective"] == objective and set(st["optimizers"]) == set(tr.objective.optimizers())
    assert set(st["modules"]) == ({"discriminator"} if objective == "move" else set())  # segmenter: state_dict
    # resume: a new trainer continues from step 4 to 6, with the saved optimiser state
    tr2 = trainer(tmp_path, objective, steps=6, inpainter=inpainter, resume=True)
    assert tr2.step == 4
    assert tr2.objective.opt_s.state_dict()["state"][0]["step"] == tr.objective.opt_s.state_dict()["state"][0]["step"]
    tr2.run()
    assert tr2.step == 6
    with pytest.raises(UsageError, match="objective 'move'" if objective == "move" else "objective 'self'"):
        trainer(tmp_path, "self" if objective == "move" else "move", steps=8, resume=True)
