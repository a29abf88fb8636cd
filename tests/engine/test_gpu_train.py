"""GPU twins of the CPU training tests (marker ``gpu``: skipped without CUDA): a few steps on ``cuda``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unsegcli.methods.loading import load_segmenter

from ..helpers import trainer

pytestmark = pytest.mark.gpu


def _losses(run_dir) -> list[dict]:
    return [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_self_training_on_cuda_follows_the_cpu_run(tmp_path):
    """Twin of the self-training run of test_short_runs_write_checkpoints_that_predict_loads_and_resume:
    the same seed, data and initial weights on both devices (the data order and crops come from the CPU
    generator), so the losses of 3 steps agree to float (and TF32 convolution) rounding."""
    cpu = trainer(tmp_path / "cpu", "self", steps=3)
    cpu.run()
    gpu = trainer(tmp_path / "gpu", "self", steps=3, device="cuda")
    gpu.run()
    a, b = _losses(tmp_path / "cpu" / "run"), _losses(tmp_path / "gpu" / "run")
    assert [m["step"] for m in a] == [m["step"] for m in b] == [1, 2, 3]
    np.testing.assert_allclose([m["loss"] for m in b], [m["loss"] for m in a], rtol=2e-2)


def test_move_steps_on_cuda_resume_and_load_on_the_cpu(tmp_path):
    """Twin of the MOVE run of test_short_runs_write_checkpoints_that_predict_loads_and_resume: segmenter,
    discriminator and inpainter on the GPU, finite losses, a resume on the GPU, a checkpoint the CPU loads.
    (DiffAugment draws from the device's generator, so the losses are not compared with the CPU's.)"""
    tr = trainer(tmp_path, "move", steps=3, inpainter="mae", device="cuda")
    last = tr.run()
    assert all(np.isfinite(list(m.values())).all() for m in _losses(tmp_path / "run"))
    again = trainer(tmp_path, "move", steps=4, inpainter="mae", device="cuda", resume=True)
    assert again.step == 3
    again.run()
    assert again.step == 4
    model, _, _ = load_segmenter(last)
    assert next(model.parameters()).device.type == "cpu"
