"""model.forward: torch and OpenVINO run the same forward; bf16 where native; the export cache.

Tolerances (docs/performance.md): OpenVINO fp32 against torch fp32, ViT features within 1e-5 relative and soft masks
within 1e-5 absolute, cuts equal; bf16 (either engine) soft masks within 2e-2 on these tiny random models."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unsegcli import runtime
from unsegcli.config import PRESETS, PreprocessConfig
from unsegcli.errors import UsageError
from unsegcli.methods.found.config import FoundConfig
from unsegcli.methods.found.model import FoundModel
from unsegcli.methods.move.predictor import Predictor
from unsegcli.methods.sempart.config import SempartConfig
from unsegcli.methods.sempart.model import SempartModel
from unsegcli.methods.sempart.predictor import SempartPredictor
from unsegcli.methods.spectral.options import MaskCutOptions, VoteCutOptions
from unsegcli.methods.spectral.predictor import SpectralPredictor
from unsegcli.methods.spectral.votecut import VoteCutPredictor
from unsegcli.model import forward
from unsegcli.model.forward import export_dir, export_key, inference_forward

from ..helpers import random_image, save_dino_backbone, tiny_model

CPU = torch.device("cpu")
needs_openvino = pytest.mark.skipif(not forward.openvino_installed(), reason="openvino extra not installed")
# one shape (each new shape is one more export, ~1 s): the seeds vary the content
IMAGES = [random_image(40, 60, seed=0), random_image(40, 60, seed=1)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xdg")


@pytest.fixture(autouse=True)
def _cache_env(cache, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))


@pytest.fixture(scope="module")
def dino8(tmp_path_factory) -> Path:
    return save_dino_backbone(tmp_path_factory.mktemp("w") / "dino.pth", patch_size=8)


def predict(predictor, images=IMAGES) -> list:
    return [predictor.run([predictor.prepare(i, im)])[0] for i, im in enumerate(images)]


@pytest.mark.slow  # one OpenVINO export each, ~5-15 s on 2 busy cores
@needs_openvino
def test_openvino_fp32_equals_torch_for_move_masks():
    model = tiny_model()
    ref = predict(Predictor(copy.deepcopy(model), PreprocessConfig(size=64), CPU))
    ov = predict(Predictor(copy.deepcopy(model), PreprocessConfig(size=64), CPU, engine="openvino"))
    worst = max(float(np.abs(a - b).max()) for a, b in zip(ref, ov, strict=True))
    assert worst < 1e-5
    assert max(float(a.max() - a.min()) for a in ref) > 0.5  # masks that vary: the comparison means something


@pytest.mark.slow  # one OpenVINO export each, ~5-15 s on 2 busy cores
@needs_openvino
def test_openvino_fp32_keys_and_cuts_equal_torch(dino8):
    """The spectral methods' keys, and their cuts; one shape (one image of 40x60 padded to 40x64, MaskCut padding
    too instead of its default 480x480 resize), so the keys, TokenCut and MaskCut share one export."""
    sp = SpectralPredictor("tokencut", backbone=dino8)
    ov = SpectralPredictor("tokencut", backbone=dino8, engine="openvino")
    for i, im in enumerate(IMAGES):
        x = sp.prepare(i, im).tensor[None]
        ref, keys = sp.keys(x), ov.keys(x)
        assert keys.shape == ref.shape == (1, 5 * 8, 64)
        assert float((keys - ref).abs().max() / ref.abs().max()) < 1e-5
    for method, opts in (("tokencut", None), ("maskcut", MaskCutOptions(geometry="pad"))):
        a = predict(SpectralPredictor(method, opts, backbone=dino8))
        b = predict(SpectralPredictor(method, opts, backbone=dino8, engine="openvino"))
        assert any(int(np.max(x_[0] if isinstance(x_, tuple) else x_)) > 0 for x_ in a)  # something was cut
        for x_, y_ in zip(a, b, strict=True):
            la, lb = (x_[0], y_[0]) if isinstance(x_, tuple) else (x_, y_)
            np.testing.assert_array_equal(la, lb)


@pytest.mark.slow  # one OpenVINO export each, ~5-15 s on 2 busy cores
@needs_openvino
def test_openvino_runs_every_forward_kind(dino8):
    """Tuple outputs (FOUND's logits, keys, attention), Sempart's branch, VoteCut's backbones."""
    torch.manual_seed(0)
    found = FoundModel(FoundConfig(backbone=PRESETS["tiny"].backbone)).eval()
    x = torch.randn(1, 3, 64, 96)
    ref, ov = inference_forward(found, CPU)(x), inference_forward(found, CPU, engine="openvino")(x)
    assert isinstance(ov, tuple) and len(ov) == 3
    for a, b in zip(ref, ov, strict=True):
        assert a.shape == b.shape and float((a - b).abs().max() / a.abs().max()) < 1e-5
    torch.manual_seed(0)
    sempart = SempartModel(SempartConfig.tiny())
    a = predict(SempartPredictor(copy.deepcopy(sempart), device=CPU))
    b = predict(SempartPredictor(copy.deepcopy(sempart), device=CPU, engine="openvino"))
    assert max(float(np.abs(p - q).max()) for p, q in zip(a, b, strict=True)) < 1e-5
    opts = VoteCutOptions(fixed_size=64)
    a = predict(VoteCutPredictor(options=opts, backbone=(str(dino8),)))
    b = predict(VoteCutPredictor(options=opts, backbone=(str(dino8),), engine="openvino"))
    for (la, _), (lb, _) in zip(a, b, strict=True):
        np.testing.assert_array_equal(la, lb)


@needs_openvino
def test_export_is_cached_by_weights_and_shape(monkeypatch, cache):
    model = tiny_model().eval()
    x = torch.randn(1, 3, 64, 96)  # MOVE's test exported this model at this shape: stored already, or now
    inference_forward(model, CPU, engine="openvino")(x)
    key = export_key(model, tuple(x.shape))
    assert (export_dir() / key / "model.xml").is_file()
    assert export_dir() == cache / "unseg" / "openvino"
    # a second predictor (another run) compiles the stored export: exporting again would fail here
    with monkeypatch.context() as m:
        m.setattr(torch.export, "export", lambda *a, **k: pytest.fail("exported twice"))
        out = inference_forward(model, CPU, engine="openvino", precision="bf16")(x)
    assert out.shape == (1, 1, 64, 96)
    other = tiny_model(seed=1).eval()
    assert export_key(other, tuple(x.shape)) != key  # other weights
    assert export_key(model, (1, 3, 64, 64)) != key  # another shape
    assert export_key(model, tuple(x.shape)) == key
    assert not [p for p in export_dir().iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.slow  # one more export
@needs_openvino
def test_every_compile_goes_through_one_core(monkeypatch):
    """A Core per compile (per shape) crashed a test worker with SIGSEGV after a few dozen compiles."""
    import openvino

    made: list[int] = []
    real = openvino.Core
    monkeypatch.setattr(openvino, "Core", lambda: made.append(1) or real())
    forward.openvino_core.cache_clear()
    try:
        model = tiny_model().eval()
        run = inference_forward(model, CPU, engine="openvino")
        for shape in ((1, 3, 64, 96), (1, 3, 64, 64)):  # two shapes: two compiles
            assert run(torch.randn(*shape)).shape == (1, 1, *shape[2:])
        inference_forward(copy.deepcopy(model), CPU, engine="openvino")(torch.randn(1, 3, 64, 96))  # another run
    finally:
        forward.openvino_core.cache_clear()
    assert made == [1]


def test_missing_openvino_is_a_usage_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    with pytest.raises(UsageError) as e:
        inference_forward(tiny_model(), CPU, engine="openvino")
    assert "pip install 'unseg[openvino]'" in (e.value.hint or "")


def test_engine_and_precision_combinations_are_checked():
    model = tiny_model()
    with pytest.raises(UsageError, match="compile"):
        inference_forward(model, CPU, engine="openvino", compile=True)
    with pytest.raises(UsageError, match="cuda"):
        forward.check_engine("openvino", torch.device("cuda"))
    with pytest.raises(UsageError, match="unknown"):
        inference_forward(model, CPU, engine="tensorrt")


def test_cpu_bf16_runs_where_native_and_is_refused_elsewhere(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_native_bf16", lambda: True)
    assert runtime.effective_precision(CPU, "bf16", cpu_bf16=True) == "bf16"
    assert runtime.effective_precision(CPU, "bf16") == "fp32"  # training: CPU runs fp32, as before
    with pytest.raises(UsageError, match="fp16 runs on GPU only"):
        runtime.effective_precision(CPU, "fp16", cpu_bf16=True)
    monkeypatch.setattr(runtime, "cpu_native_bf16", lambda: False)
    with pytest.raises(UsageError, match="no native bf16"):
        runtime.effective_precision(CPU, "bf16", cpu_bf16=True)
    assert runtime.effective_precision(CPU, "fp32", cpu_bf16=True) == "fp32"


def test_cpu_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    def flags(text: str) -> bool:
        (tmp_path / "cpuinfo").write_text(f"processor : 0\nflags\t\t: {text}\n")
        monkeypatch.setattr(runtime, "Path", lambda p: tmp_path / "cpuinfo")
        return runtime.cpu_native_bf16()

    assert flags("fpu avx512f avx512_bf16 sse") and flags("amx_bf16 amx_tile")
    assert not flags("fpu avx512f avx512bw")


def test_torch_bf16_autocast_gives_float32_close_to_fp32():
    model = tiny_model()
    ref = predict(Predictor(copy.deepcopy(model), PreprocessConfig(size=64), CPU))
    bf = predict(Predictor(copy.deepcopy(model), PreprocessConfig(size=64), CPU, "bf16"))
    assert all(m.dtype == np.float32 for m in bf)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(ref, bf, strict=True))
    assert 0 < worst < 2e-2  # bf16 did run (not fp32), within its documented deviation
