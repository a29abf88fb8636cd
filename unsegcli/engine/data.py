"""Training data: random resized crops (scale (0.9, 1), ratio (3/4, 4/3), bicubic) and horizontal
flips as the official train.py, applied jointly to an image and its pseudo-mask. Every sample's
randomness comes from (seed, epoch, index), so runs are reproducible whatever the worker count."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..config import IMAGENET_MEAN, IMAGENET_STD
from ..errors import InputError

SCALE = (0.9, 1.0)
RATIO = (3 / 4, 4 / 3)


def rrc_params(rng: np.random.Generator, h: int, w: int, scale=SCALE, ratio=RATIO) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop.get_params: (top, left, height, width)."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h  # fallback: central crop
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class CropDataset(torch.utils.data.Dataset):
    """Images (and optional pseudo-masks) -> (3, S, S) normalised crops (and (1, S, S) masks in [0, 1])."""

    def __init__(self, images: list[str], size: int, seed: int, masks: list[str] | None = None):
        self.images, self.masks, self.size, self.seed = images, masks, size, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        from ..io.images import decode_image
        from ..io.instances import read_mask_or_instances

        rng = np.random.default_rng([self.seed, self.epoch, i])
        img = decode_image(self.images[i])
        h, w = img.shape[:2]
        top, left, ch, cw = rrc_params(rng, h, w)
        flip = rng.random() < 0.5
        box = (left, top, left + cw, top + ch)
        crop = Image.fromarray(img).resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
        pixels = np.asarray(crop, np.float32) / 255.0
        if flip:
            pixels = pixels[:, ::-1]
        normed = (pixels - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        x = torch.from_numpy(np.ascontiguousarray(normed.transpose(2, 0, 1)))
        if self.masks is None:
            return x
        m = read_mask_or_instances(self.masks[i])  # an instance PNG: the union of its objects
        if m.shape != (h, w):
            raise InputError(f"{self.masks[i]}: mask {m.shape[::-1]} does not match image {(w, h)}")
        mc = Image.fromarray(m).resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        mt = np.asarray(mc, np.float32) / 255.0
        if flip:
            mt = mt[:, ::-1]
        return x, torch.from_numpy(np.ascontiguousarray(mt))[None]


def pair_masks(images: list[tuple[str, str]], mask_root: str) -> tuple[list[str], list[str], list[str]]:
    """(path, rel) images -> (image paths, mask paths, images without one mask); a mask pairs by relative path
    without extension (``io.pairing``, the rule of `mask_path_for`); an ambiguous one (a.png, a.PNG) is none."""
    from ..io.pairing import FileIndex, key_of

    index = FileIndex(mask_root, (".png",))
    ims, ms, missing = [], [], []
    for path, rel in images:
        found = index.by_key(key_of(rel))
        if found.item is not None:
            ims.append(path)
            ms.append(found.item.path)
        else:
            missing.append(path)
    return ims, ms, missing
