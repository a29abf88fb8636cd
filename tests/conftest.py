"""Shared fixtures: tiny random models saved in our format, generated images, a CLI runner."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unsegcli.cli.app import _register, app
from unsegcli.config import ModelConfig, PreprocessConfig
from unsegcli.model.checkpoint import checkpoint_dict, save_checkpoint
from unsegcli.model.segmenter import Segmenter


def tiny_model(seed: int = 0, **kw) -> Segmenter:
    torch.manual_seed(seed)
    model = Segmenter(ModelConfig.tiny(**kw))
    # Non-trivial BN statistics so the head's eval path is exercised, not an identity.
    for m in model.head.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():  # spread the logits so masks vary across the image (default init is ~constant)
        model.head.model[-1].weight.mul_(600.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(path, checkpoint_dict(tiny_model(), PreprocessConfig(size=64), {"source": "test"}))
    return path


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colours (not white noise), so masks vary across the image."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


def write_images(folder: Path, sizes: list[tuple[int, int]], ext: str = "png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"img_{i:02d}.{ext}"
        Image.fromarray(random_image(h, w, seed=i)).save(p)
        paths.append(p)
    return paths


class Cli:
    def __init__(self):
        _register()
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None):
        return self.runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def cli() -> Cli:
    return Cli()
