"""images/s of `unseg predict` versus an official-style loop on the same images and weights.

The official-style loop is MOVE's infer.py: batch 1, no bucketing, decoding in the main thread,
fp32, naive (unfused) attention, PIL writes. Both write the same mask PNGs.

    python benchmarks/predict_throughput.py --n 24 --size 224            # CPU
    python benchmarks/predict_throughput.py --n 512 --size 448 --device cuda --batch-size 32 --precision bf16
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import generated_images, machine  # noqa: E402


def official_style(model, paths, out: Path, size: int, device: str) -> float:
    from PIL import Image

    from unsegcli.config import PreprocessConfig
    from unsegcli.inference import preprocess

    model = model.to(device).eval()
    for blk in model.backbone.vit.blocks:
        blk.attn.fused_attn = False
    cfg = PreprocessConfig(size=size)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.no_grad():
        for p in paths:
            img = np.asarray(Image.open(p).convert("RGB"))
            x, (h, w) = preprocess(img, cfg, model.patch_size)
            m = torch.sigmoid(model(x[None].to(device)))[0, 0, :h, :w].cpu().numpy()
            Image.fromarray((m * 255).astype(np.uint8), "L").save(out / (p.stem + ".png"))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-official", action="store_true")
    args = ap.parse_args()

    from unsegcli.config import ModelConfig, PreprocessConfig
    from unsegcli.model.checkpoint import checkpoint_dict, save_checkpoint
    from unsegcli.model.segmenter import Segmenter

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = generated_images(tmp / "imgs", args.n)
        torch.manual_seed(0)
        model = Segmenter(ModelConfig())  # DINO ViT-S/8 + conv_minc128 shapes, random weights
        save_checkpoint(tmp / "w.pt", checkpoint_dict(model, PreprocessConfig(size=args.size)))
        cmd = [sys.executable, "-m", "unsegcli", "predict", str(tmp / "imgs"), "--out", str(tmp / "unseg"),
               "--weights", str(tmp / "w.pt"), "--device", args.device, "--batch-size", str(args.batch_size),
               "--precision", args.precision, "--workers", str(args.workers), "--quiet"]
        subprocess.run(cmd[:-1] + ["--out", str(tmp / "warm")] + cmd[-1:], check=True)  # warm caches
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        ours = args.n / (time.perf_counter() - start)
        print(f"machine: {machine()}")
        print(f"images: {args.n} generated 500x375/375x500 JPEGs, size {args.size}, ViT-S/8 + MOVE head")
        print(f"unseg predict (batch {args.batch_size}, {args.precision}, {args.workers} workers, "
              f"process start included): {ours:.2f} images/s")
        if not args.skip_official:
            off = official_style(model, paths, tmp / "official", args.size, args.device)
            print(f"official-style loop (batch 1, fp32, naive attention, main-thread decode): {off:.2f} images/s")
            print(f"ratio: {ours / off:.2f}x")


if __name__ == "__main__":
    main()
