"""GPU twins of the CPU prediction tests (marker ``gpu``: skipped without CUDA): the same model and images on
``cuda`` give the CPU's masks. cuDNN convolutions may run in TF32 (torch's default for convolutions), so the
comparison is the one a user sees: the same pixels on either side of 0.5, and soft values within a level or two
of 255, as the bf16 test allows (engine/test_scale.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unsegcli.config import PreprocessConfig
from unsegcli.methods.move.predictor import predict_masks

from ..helpers import PREDICT_SIZES, random_image, tiny_model, write_images

pytestmark = pytest.mark.gpu


def _close(a: np.ndarray, b: np.ndarray) -> None:
    """Soft masks in [0, 1] or their 0-255 PNGs: the same size, >= 99.5% of pixels on the same side of the
    middle, and a mean difference under 2 levels of 255."""
    a8 = a if a.dtype == np.uint8 else np.floor(a * 255).astype(np.uint8)
    b8 = b if b.dtype == np.uint8 else np.floor(b * 255).astype(np.uint8)
    assert a8.shape == b8.shape
    assert ((a8 > 127) == (b8 > 127)).mean() >= 0.995
    assert np.abs(a8.astype(int) - b8.astype(int)).mean() < 2.0


def test_predict_masks_on_cuda_equals_the_cpu_in_fp32_and_bf16():
    """Twin of test_bucketing_gives_the_same_masks_as_batch_one and test_bf16_masks_agree_with_fp32: bucketed
    batches of mixed sizes on the GPU, fp32 and bf16, against batch-one fp32 on the CPU."""
    model = tiny_model()
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(PREDICT_SIZES)]
    cpu = predict_masks(model, images, PreprocessConfig(size=64), batch_size=1)
    for precision in ("fp32", "bf16"):
        gpu = predict_masks(model, images, PreprocessConfig(size=64), batch_size=3, device="cuda", precision=precision)
        for a, b in zip(cpu, gpu, strict=True):
            _close(a, b)


def test_cli_predict_on_cuda_writes_the_cpus_files(tmp_path, cli, tiny_ckpt):
    """Twin of test_workers_and_batches_write_the_same_files: `unseg predict --device cuda` with batches
    against the CPU run, file by file."""
    write_images(tmp_path / "imgs", PREDICT_SIZES)
    common = [tmp_path / "imgs", "-w", tiny_ckpt, "-j", "0", "-q"]
    assert cli("predict", *common, "-o", tmp_path / "cpu", "--device", "cpu").exit_code == 0
    res = cli("predict", *common, "-o", tmp_path / "gpu", "--device", "cuda", "--batch-size", "4")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "cpu").glob("*.png"))
    assert len(names) == len(PREDICT_SIZES) and names == sorted(p.name for p in (tmp_path / "gpu").glob("*.png"))
    for name in names:
        _close(np.asarray(Image.open(tmp_path / "cpu" / name)), np.asarray(Image.open(tmp_path / "gpu" / name)))
