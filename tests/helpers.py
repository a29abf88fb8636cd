"""Builders shared by the tests: tiny random models, generated images, short training runs, a real
`unseg` process. Fixtures live in conftest.py."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unsegcli.config import PRESETS
from unsegcli.methods.move.segmenter import Segmenter

# image sizes (h, w) of mixed shapes and aspect ratios, some repeated: buckets, padding and resizing all happen
PREDICT_SIZES = [(40, 60), (60, 40), (40, 60), (33, 47), (40, 61), (64, 64), (40, 60)]
SHARD_SIZES = [(40, 60), (60, 40), (33, 47), (40, 60), (50, 50), (41, 61), (40, 60)]


def randomize_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so that the eval path of the head is exercised, not an identity."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)


def tiny_model(seed: int = 0, **kw) -> Segmenter:
    """The 'tiny' preset (or ``ModelConfig.tiny(**kw)``), randomly initialised with spread-out logits."""
    from unsegcli.config import ModelConfig

    torch.manual_seed(seed)
    model = Segmenter(ModelConfig.tiny(**kw) if kw else PRESETS["tiny"])
    randomize_batchnorm(model.head)
    with torch.no_grad():  # spread the logits so masks vary across the image (default init is ~constant)
        model.head.model[-1].weight.mul_(600.0)
    return model.eval()


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colours (not white noise), so masks vary across the image."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))


def write_images(folder: Path, sizes: list[tuple[int, int]], ext: str = "png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"img_{i:02d}.{ext}"
        Image.fromarray(random_image(h, w, seed=i)).save(p)
        paths.append(p)
    return paths


def dino_key_names(depth: int) -> set[str]:
    """The keys of DINO's own ViT checkpoints (dino_deitsmall16_pretrain.pth: a plain state dict of
    vision_transformer.py's VisionTransformer, no head), transcribed from DINO's module names."""
    block = [
        f"{m}.{p}"
        for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
        for p in ("weight", "bias")
    ]
    names = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    return names | {f"blocks.{i}.{k}" for i in range(depth) for k in block}


def save_dino_backbone(
    path: Path, patch_size: int = 16, embed_dim: int = 64, depth: int = 2, img_size: int = 64, seed: int = 0
) -> Path:
    """A random DINO-shaped ViT (64-d heads, as every DINO ViT) saved as DINO's own .pth: a plain state
    dict in DINO's key layout (checked against ``dino_key_names``)."""
    from unsegcli.config import BackboneConfig
    from unsegcli.model.backbone import build_vit

    torch.manual_seed(seed)
    cfg = BackboneConfig(
        timm_name="",
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=max(1, embed_dim // 64),
        img_size=img_size,
    )
    state = dict(build_vit(cfg).state_dict())
    assert set(state) == dino_key_names(depth), set(state) ^ dino_key_names(depth)
    torch.save(state, path)
    return path


def square_mask_png(path: Path, w: int = 32, h: int = 32, box: tuple[int, int, int, int] = (4, 4, 20, 20)) -> None:
    """A 0/255 mask PNG with one filled box (x0, y0, x1, y1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    m[box[1] : box[3], box[0] : box[2]] = 255
    Image.fromarray(m).save(path)


def noise_photo(path: Path, w: int = 32, h: int = 32) -> None:
    """A colour photo of uniform noise (no mask reader takes it for a mask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def trainer(tmp_path: Path, objective: str = "move", steps: int = 3, inpainter: str = "blur", resume=False, **kw):
    """A Trainer of the 'tiny' preset on 8 synth images of 64 px (random init, CPU, no workers): a few steps
    of MOVE (with its small frozen networks) or self-training run in seconds."""
    from unsegcli.config import PRESETS, PreprocessConfig
    from unsegcli.engine.config import TrainConfig, WeightSources
    from unsegcli.methods.move.config import MoveOptions
    from unsegcli.pipelines.train import start_training
    from unsegcli.synth import write_dataset

    write_dataset(tmp_path / "data", 8, 64, seed=0)
    masks = str(tmp_path / "data" / "masks") if objective == "self" else None
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


class Cli:
    """``unseg ARGS`` in this process (the `cli` fixture; module-scoped fixtures make their own): no interpreter
    start-up, for what does not need a real process."""

    def __init__(self) -> None:
        from typer.testing import CliRunner

        self.runner = CliRunner()

    def __call__(self, *args: str | Path, input: str | bytes | None = None):
        from unsegcli.cli.app import app

        return self.runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def run_unseg(
    *args, cwd: Path | None = None, input: str | bytes | None = None, env: dict | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    """``python -m unsegcli ARGS`` in a fresh interpreter, as a user runs it (stderr not a terminal); no
    traceback may reach stderr."""
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    res = subprocess.run(
        [sys.executable, "-m", "unsegcli", *map(str, args)],
        cwd=cwd,
        input=input,
        capture_output=True,
        timeout=timeout,
        env=full_env,
        text=not isinstance(input, bytes),
    )
    assert "Traceback" not in stderr_of(res), stderr_of(res)
    return res


def torchrun(args: list, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node N -m unsegcli ARGS` with gloo on CPU, one thread per process."""
    env = {**os.environ, "UNSEG_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-port", str(29500 + os.getpid() % 1000), "-m", "unsegcli", *map(str, args)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def stderr_of(res: subprocess.CompletedProcess) -> str:
    return res.stderr if isinstance(res.stderr, str) else res.stderr.decode()
