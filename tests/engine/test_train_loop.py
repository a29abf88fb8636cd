"""The training loop: exact resume, a non-finite loss, fp16 loss scaling, the log line."""

from __future__ import annotations

import json

import pytest
import torch

from unsegcli.model.checkpoint import read_checkpoint

from ..helpers import trainer


@pytest.mark.parametrize("objective", ["self", "move"])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, objective):
    a = trainer(tmp_path / "a", objective, steps=4, inpainter="blur")
    a.run()
    b = trainer(tmp_path / "b", objective, steps=2, inpainter="blur")
    b.run()
    c = trainer(tmp_path / "b", objective, steps=4, inpainter="blur", resume=True)
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
    a = trainer(tmp_path, "self", steps=2, precision="fp16")
    assert set(a.ctx.scalers) == {"segmenter"}
    scaler = a.ctx.scalers["segmenter"]
    scaler.load_state_dict({**scaler.state_dict(), "scale": 1024.0})  # not the default 65536
    a.run()
    scale = scaler.get_scale()
    assert scale <= 1024.0  # halves on an overflow, grows only after 2000 good steps
    assert read_checkpoint(tmp_path / "run" / "last.pt")["train_state"]["scalers"]["segmenter"]["scale"] == scale
    b = trainer(tmp_path, "self", steps=3, precision="fp16", resume=True)
    assert b.ctx.scalers["segmenter"].get_scale() == scale
    b.run()
    assert all(torch.isfinite(p).all() for p in b.objective.segmenter.parameters())


def test_format_losses_shows_headline_losses_only():
    from unsegcli.pipelines.train import format_losses

    assert format_losses({"loss_d": 1.0, "loss_s": 2.5, "loss_min_max": 3.0, "mask_area": 0.4}) == "d 1.000 s 2.500"
    assert format_losses({"loss": 0.25, "mask_area": 0.4}) == "loss 0.250"
