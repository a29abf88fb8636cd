"""Shared helpers for the benchmark scripts: machine description and generated data."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
from PIL import Image


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} cores ({cpu}), {gpu}, torch {torch.__version__}, python {platform.python_version()}"


def generated_images(folder: Path, n: int, size=(375, 500), seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = size if i % 3 else size[::-1]  # two aspect ratios, as in VOC
        small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
        p = folder / f"{i:05d}.jpg"
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(p, quality=90)
        paths.append(p)
    return paths
