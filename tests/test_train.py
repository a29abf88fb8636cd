"""Training: losses, composition, the MAE inpainter, gradient flow, short runs, resume, synth."""

from __future__ import annotations

import dataclasses
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
from unsegcli.synth import generate

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


def _trainer(tmp_path, objective="move", steps=3, inpainter="blur", resume=False, **kw):
    from unsegcli.config import PreprocessConfig
    from unsegcli.engine.config import TrainConfig, WeightSources
    from unsegcli.pipelines.train import start_training
    from unsegcli.synth import write_dataset

    write_dataset(tmp_path / "data", 8, 64, seed=0)
    masks = str(tmp_path / "data" / "masks") if objective == "self" else None
    from unsegcli.config import PRESETS
    from unsegcli.methods.move.config import MoveOptions

    options = dataclasses.replace(MoveOptions.for_arch("tiny"), inpainter=inpainter) if objective == "move" else None
    cfg = TrainConfig(
        objective=objective,
        steps=steps,
        batch_size=4,
        crop=64,
        workers=0,
        log_every=1,
        log_images_every=2,
        save_every=2,
        model=PRESETS["tiny"],
        preprocess=PreprocessConfig(size=64),
        options=options,
        **kw,
    )
    run = start_training(
        [str(tmp_path / "data" / "images")], tmp_path / "run", cfg, WeightSources(random_init=True), masks, resume
    )
    return run.trainer


def test_segmenter_step_changes_only_the_segmenter_and_vice_versa(tmp_path):
    tr = _trainer(tmp_path)
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
def test_ten_step_runs_write_checkpoints_that_predict_loads_and_resume(tmp_path, cli, objective, inpainter):
    tr = _trainer(tmp_path, objective, steps=10, inpainter=inpainter)
    last = tr.run()
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(1, 11)) and all(np.isfinite(list(m.values())).all() for m in lines)
    assert (tmp_path / "run" / "step_0000002.pt").exists()
    assert (tmp_path / "run" / "images" / "step_0000010.png").exists()
    res = cli("predict", tmp_path / "data" / "images", "-o", tmp_path / "masks", "-w", last, "-j", "0")
    assert res.exit_code == 0, res.output
    assert isinstance(tr.objective, Objective)
    st = read_checkpoint(last)["train_state"]
    assert st["objective"] == objective and set(st["optimizers"]) == set(tr.objective.optimizers())
    assert set(st["modules"]) == ({"discriminator"} if objective == "move" else set())  # segmenter: state_dict
    # resume: a new trainer continues from step 10 to 12, with the saved optimiser state
    tr2 = _trainer(tmp_path, objective, steps=12, inpainter=inpainter, resume=True)
    assert tr2.step == 10
    assert tr2.objective.opt_s.state_dict()["state"][0]["step"] == tr.objective.opt_s.state_dict()["state"][0]["step"]
    tr2.run()
    assert tr2.step == 12
    with pytest.raises(UsageError, match="objective 'move'" if objective == "move" else "objective 'self'"):
        _trainer(tmp_path, "self" if objective == "move" else "move", steps=14, resume=True)


@pytest.mark.parametrize("objective", ["self", "move"])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, objective):
    a = _trainer(tmp_path / "a", objective, steps=4, inpainter="blur")
    a.run()
    b = _trainer(tmp_path / "b", objective, steps=2, inpainter="blur")
    b.run()
    c = _trainer(tmp_path / "b", objective, steps=4, inpainter="blur", resume=True)
    c.run()
    for name, module in a.objective.modules().items():
        other = c.objective.modules()[name].state_dict()
        for k, v in module.state_dict().items():
            torch.testing.assert_close(v, other[k], atol=1e-6, rtol=1e-5)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, cli, monkeypatch):
    from unsegcli.methods.move import losses as train_losses
    from unsegcli.synth import write_dataset

    write_dataset(tmp_path / "d", 4, 64, seed=0)
    real, calls = train_losses.self_training_loss, []

    def nan_at_third_call(logits, target):
        calls.append(1)
        loss = real(logits, target)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(train_losses, "self_training_loss", nan_at_third_call)
    res = cli(
        "train",
        tmp_path / "d" / "images",
        "--from-masks",
        tmp_path / "d" / "masks",
        "--out",
        tmp_path / "r",
        "--arch",
        "tiny",
        "--random-init",
        "--crop",
        "64",
        "-b",
        "2",
        "-j",
        "0",
        "--steps",
        "5",
        "--save-every",
        "2",
        "--log-every",
        "1",
        "-q",
    )
    assert res.exit_code == 1
    assert "step 3" in res.stderr and "not finite" in res.stderr and "step 2) is kept" in res.stderr
    ckpt = read_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["train_state"]["step"] == 2 and all(v.isfinite().all() for v in ckpt["state_dict"].values())
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [1, 2]  # nothing logged for the failed step


def test_fp16_loss_scaling_keeps_gradients_that_fp16_would_flush_to_zero():
    from unsegcli.engine.train import RunContext

    def grad(precision: str) -> float:
        w = torch.nn.Parameter(torch.tensor([1.0]))
        opt = torch.optim.SGD([w], lr=0.0)
        ctx = RunContext(torch.device("cpu"), torch.Generator(), precision, {"w": opt})
        for scaler in ctx.scalers.values():  # 2^14: the default 2^16 is itself inf in fp16 (the scaler backs off)
            scaler.load_state_dict({**scaler.state_dict(), "scale": 2.0**14})
        a = torch.tensor([1e-4], dtype=torch.float16)
        loss = ((w.half() * a) * a).float().sum()  # d loss / d w = 1e-8: below fp16's smallest subnormal, 6e-8
        ctx.backward(loss, "w")
        ctx.step("w")  # unscales the gradient in place before the (zero-lr) step
        assert w.grad is not None
        return float(w.grad)

    assert grad("fp32") == 0.0  # the fp16 backward through the half-precision multiply underflows
    assert grad("fp16") == pytest.approx(1e-8, rel=1e-2)  # scaled by 2^14 in fp16, unscaled in fp32


def test_fp16_training_saves_and_resumes_the_loss_scale(tmp_path, monkeypatch):
    import unsegcli.engine.train as loop

    monkeypatch.setattr(loop, "effective_precision", lambda device, precision: precision)  # fp16 on the CPU
    a = _trainer(tmp_path, "self", steps=2, precision="fp16")
    assert set(a.ctx.scalers) == {"segmenter"}
    scaler = a.ctx.scalers["segmenter"]
    scaler.load_state_dict({**scaler.state_dict(), "scale": 1024.0})  # not the default 65536
    a.run()
    scale = scaler.get_scale()
    assert scale <= 1024.0  # halves on an overflow, grows only after 2000 good steps
    assert read_checkpoint(tmp_path / "run" / "last.pt")["train_state"]["scalers"]["segmenter"]["scale"] == scale
    b = _trainer(tmp_path, "self", steps=3, precision="fp16", resume=True)
    assert b.ctx.scalers["segmenter"].get_scale() == scale
    b.run()
    assert all(torch.isfinite(p).all() for p in b.objective.segmenter.parameters())


def test_train_config_round_trips_and_presets_set_the_frozen_shapes(tmp_path):
    import json

    from unsegcli.config import PRESETS
    from unsegcli.engine.config import TrainConfig
    from unsegcli.methods.move.config import MAEConfig, MoveOptions
    from unsegcli.methods.sempart.config import SempartLossConfig
    from unsegcli.pipelines.train import config_for_method, write_config

    cfg = config_for_method("move", {"steps": 5}, arch="demo")
    assert TrainConfig.from_dict(cfg.to_dict(), MoveOptions) == cfg
    assert cfg.model == PRESETS["demo"] and cfg.options.mae == MAEConfig.tiny(96) and cfg.options.disc_resolution == 96
    real = config_for_method("move", {"steps": 5}, arch="vits16").options
    assert real.mae == MAEConfig() and real.disc_resolution == 224  # MAE ViT-L/16 and the official 224
    sp = config_for_method("sempart", {"steps": 5}, options={"reduction_sr": "sum"})
    assert TrainConfig.from_dict(sp.to_dict(), SempartLossConfig) == sp
    selfcfg = config_for_method("self", {"steps": 5}, masks=True)
    assert selfcfg.options is None and TrainConfig.from_dict(selfcfg.to_dict()) == selfcfg
    # the run folder's config.json is the effective configuration, every default resolved
    written = json.loads(write_config(tmp_path, sp).read_text())
    assert written["options"]["reduction_sr"] == "sum" and written["options"]["lambda_sr"] == 20.0
    assert written["batch_size"] == 8 and written["model"]["backbone"]["patch_size"] == 8


def test_format_losses_shows_headline_losses_only():
    from unsegcli.pipelines.train import format_losses

    assert format_losses({"loss_d": 1.0, "loss_s": 2.5, "loss_min_max": 3.0, "mask_area": 0.4}) == "d 1.000 s 2.500"
    assert format_losses({"loss": 0.25, "mask_area": 0.4}) == "loss 0.250"


def test_cli_train_requires_weights_offline_with_one_clear_message(tmp_path, cli):
    from unsegcli.synth import write_dataset

    write_dataset(tmp_path / "d", 4, 64, seed=0)
    res = cli("train", tmp_path / "d" / "images", "--out", tmp_path / "r", "--steps", "1", "--crop", "64")
    assert res.exit_code == 1 and "backbone (DINO ViT) weights are required" in res.stderr
    assert "dino_deitsmall8_pretrain.pth" in res.stderr
    res = cli(
        "train",
        tmp_path / "d" / "images",
        "--out",
        tmp_path / "r",
        "--steps",
        "1",
        "--crop",
        "64",
        "--backbone-weights",
        tmp_path / "nope.pth",
    )
    assert res.exit_code == 1 and "nope.pth" in res.stderr
    res = cli("train", tmp_path / "d" / "images", "--out", tmp_path / "r", "--steps", "1", "--method", "nope")
    assert res.exit_code == 2 and "move, self" in res.stderr
    res = cli("train", tmp_path / "d" / "images", "--out", tmp_path / "r", "--steps", "1", "--method", "self")
    assert res.exit_code == 2 and "needs --from-masks" in res.stderr


def test_every_registered_objective_resolves_to_its_class():
    from unsegcli.methods import objective_class, objectives

    assert list(objectives()) == ["move", "self", "sempart"]
    for name in objectives():
        assert objective_class(name).name == name
    with pytest.raises(UsageError, match="unknown objective 'nope'"):
        objective_class("nope")


def test_synth_is_deterministic_and_masks_match_boxes(tmp_path, cli):
    a, b = generate(3, 7, 96), generate(3, 7, 96)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(generate(4, 7, 96).image, a.image)
    area = (a.mask > 0).mean()
    assert 0.02 < area < 0.7 and set(np.unique(a.mask)) <= {0, 255}
    for x0, y0, x1, y1 in a.boxes:
        assert a.mask[y0:y1, x0:x1].max() == 255
    res = cli("synth", tmp_path / "s", "--n", "3", "--size", "64", "--voc", "-q")
    assert res.exit_code == 0
    from unsegcli.io.datasets import read_voc

    gt = read_voc(tmp_path / "s" / "VOCdevkit", "trainval", "2007")
    s0 = generate(0, 0, 64)
    assert len(gt) == 3 and gt[0].boxes.tolist() == [list(b) for b in s0.boxes]


def test_timm_names_fail_clearly_offline(monkeypatch):
    import timm

    from unsegcli.errors import CheckpointError
    from unsegcli.model.state_dict import read_backbone_state

    def offline(*a, **k):
        raise OSError("could not reach the hub")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(CheckpointError, match="timm weights 'vit_small_patch8_224.dino'") as e:
        read_backbone_state("timm:vit_small_patch8_224.dino")
    assert "weight file" in e.value.hint


def test_config_for_method_fills_the_recipe_and_checks_parameters():
    from unsegcli.config import PRESETS
    from unsegcli.pipelines.train import config_for_method

    move = config_for_method(None, {"steps": 5, "batch_size": None})
    assert (move.objective, move.batch_size, move.crop, move.lr, move.betas) == (
        "move", 32, 224, 2e-4, (0.9, 0.95)  # MOVE sec. 3 and the official train.py
    )  # fmt: skip
    assert move.options.lr_d is None and move.options.inpainter == "mae"  # D's lr follows the segmenter's
    given = {"epochs": 2, "lr": 3e-4, "infer_size": 96}
    sp = config_for_method("sempart", given, arch="tiny", options={"tau": 0.3, "lambda_sr": None})
    assert (sp.batch_size, sp.crop, sp.betas) == (8, 320, (0.9, 0.999))  # Sempart's recipe (sempart.config)
    assert (sp.lr, sp.epochs, sp.steps) == (3e-4, 2, None)  # the given lr wins
    assert sp.options.tau == 0.3 and sp.options.lambda_sr == 20.0 and sp.preprocess.size == 96
    assert sp.model == PRESETS["tiny"]
    assert config_for_method(None, {"steps": 1}, masks=True).objective == "self"
    errors = [
        ((None, {"steps": 1, "epochs": 1}), {}, "give exactly one of steps or epochs"),
        (("self", {"steps": 1}), {}, "method self needs from_masks"),
        (("move", {"steps": 1}), {"masks": True}, "method move does not train on masks: drop from_masks"),
        (("move", {"steps": 1}), {"options": {"lambda_sr": 2.0}}, "lambda_sr: not an option of method move"),
        (("sempart", {"steps": 1}), {"options": {"tau": 1.0}}, "tau must be in [-1, 1), not 1.0"),
        (("move", {"steps": 1, "lr_d": 1.0, "nope": 1}), {}, "not training parameters: lr_d, nope"),
    ]
    for args, kwargs, message in errors:
        with pytest.raises(UsageError) as e:
            config_for_method(*args, **kwargs)
        assert e.value.message == message


def test_an_unreadable_training_image_is_named_up_front_and_the_run_goes_on(tmp_path, cli):
    """A bad file found hours into a run would stop it: it is checked, named and left out before step 1."""
    assert cli("synth", tmp_path / "d", "--n", "4", "--size", "64", "-q").exit_code == 0
    (tmp_path / "d" / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "d" / "masks" / "broken.png").write_bytes(b"")
    res = cli(
        "train",
        tmp_path / "d" / "images",
        "--from-masks",
        tmp_path / "d" / "masks",
        "--arch",
        "tiny",
        "--random-init",
        "--crop",
        "64",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "-j",
        "0",
        "-q",
        "--out",
        tmp_path / "run",
        "--device",
        "cpu",
    )
    assert res.exit_code == 1, res.output
    assert res.stderr.count("broken.png") == 1 and "left out of training" in res.stderr
    assert (tmp_path / "run" / "last.pt").exists()
