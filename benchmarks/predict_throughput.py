"""images/s of `unseg predict` versus an official-style loop on the same images and weights.

The official-style loop is MOVE's infer.py: batch 1, no bucketing, decoding in the main thread,
fp32, naive (unfused) attention, PIL writes. Both write the same mask PNGs.

    python benchmarks/predict_throughput.py --n 24 --size 224            # CPU
    python benchmarks/predict_throughput.py --n 512 --size 448 --device cuda --batch-size 32 --precision bf16
    python benchmarks/predict_throughput.py --gpu-sweep --n 512      # batch 1/8/32/64 x fp32/bf16 at 448
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
from _common import generated_images, machine


def official_style(model, paths, out: Path, size: int, device: str) -> float:
    from PIL import Image

    from unsegcli.config import PreprocessConfig
    from unsegcli.methods.move.predictor import preprocess

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
    ap.add_argument("--gpu-sweep", action="store_true", help="CUDA, size 448: every batch size x precision")
    args = ap.parse_args()
    if args.gpu_sweep:
        if not torch.cuda.is_available():
            sys.exit("--gpu-sweep needs a CUDA device")
        args.device, args.size = "cuda", 448

    from unsegcli.config import ModelConfig, PreprocessConfig
    from unsegcli.methods.move.segmenter import Segmenter
    from unsegcli.model.checkpoint import checkpoint_dict, save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = generated_images(tmp / "imgs", args.n)
        torch.manual_seed(0)
        model = Segmenter(ModelConfig())  # DINO ViT-S/8 + conv_minc128 shapes, random weights
        save_checkpoint(tmp / "w.pt", checkpoint_dict(model, PreprocessConfig(size=args.size)))
        print(f"machine: {machine()}")
        print(f"images: {args.n} generated 500x375/375x500 JPEGs, size {args.size}, ViT-S/8 + MOVE head")
        configs = (
            [(b, p) for p in ("fp32", "bf16") for b in (1, 8, 32, 64)]
            if args.gpu_sweep
            else [(args.batch_size, args.precision)]
        )
        best = 0.0
        for batch, precision in configs:
            out = tmp / f"unseg_{batch}_{precision}"
            cmd = [
                sys.executable,
                "-m",
                "unsegcli",
                "predict",
                str(tmp / "imgs"),
                "--out",
                str(out),
                "--weights",
                str(tmp / "w.pt"),
                "--device",
                args.device,
                "--batch-size",
                str(batch),
                "--precision",
                precision,
                "--workers",
                str(args.workers),
                "--quiet",
            ]
            warm = cmd[:6] + [str(out) + "_warm"] + cmd[7:]
            subprocess.run(warm, check=True)  # warm-up run: file caches, cuDNN autotuning
            start = time.perf_counter()
            subprocess.run(cmd, check=True)
            ours = args.n / (time.perf_counter() - start)
            best = max(best, ours)
            print(
                f"unseg predict (batch {batch}, {precision}, {args.workers} workers, process start included): "
                f"{ours:.2f} images/s"
            )
        if not args.skip_official:
            off = official_style(model, paths, tmp / "official", args.size, args.device)
            print(f"official-style loop (batch 1, fp32, naive attention, main-thread decode): {off:.2f} images/s")
            print(f"ratio (best unseg / official-style): {best / off:.2f}x")


if __name__ == "__main__":
    main()
