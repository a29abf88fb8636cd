"""images/s of `unseg predict` versus an official-style loop on the same images and weights.

The official-style loop is MOVE's infer.py: batch 1, no bucketing, decoding in the main thread,
fp32, naive (unfused) attention, PIL writes. Both write the same mask PNGs.

    python benchmarks/predict_throughput.py --n 24 --size 224            # CPU
    python benchmarks/predict_throughput.py --n 512 --size 448 --device cuda --batch-size 32 --precision bf16
    python benchmarks/predict_throughput.py --gpu-sweep --n 512      # batch 1/8/32/64 x fp32/bf16 at 448
    python benchmarks/predict_throughput.py --n 12 --size 448 --batch-size 1 --rounds 2 \
        --variants torch:fp32,openvino:fp32,openvino:bf16                 # CPU engines, interleaved rounds

With ``--variants`` every ENGINE:PRECISION runs as the whole command (start-up, decode, writing included) after
one untimed warm-up run (OpenVINO's export is cached then), interleaved with the official-style loop round by
round; the medians are reported, with the share of this CPU's measured matmul peak (fp32 and bf16) the
forward's FLOPs reach.
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
from PIL import Image


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


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 8) -> float:
    """This CPU's measured matmul throughput (FLOP/s) in ``dtype``: the best of ``reps`` n x n products."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def forward_flops(model, size: int) -> float:
    """FLOPs of one MOVE forward at a 500x375 image's input (shorter side ``size``, padded to the patch)."""
    from torch.utils.flop_counter import FlopCounterMode

    from unsegcli.config import PreprocessConfig
    from unsegcli.methods.move.predictor import preprocess

    x = preprocess(np.zeros((375, 500, 3), np.uint8), PreprocessConfig(size=size), model.patch_size)[0][None]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return float(counter.get_total_flops())


def unseg_command(tmp: Path, out: Path, args, batch: int, precision: str, engine: str = "torch") -> list[str]:
    return [
        sys.executable, "-m", "unsegcli", "predict", str(tmp / "imgs"), "--out", str(out),
        "--weights", str(tmp / "w.pt"), "--device", args.device, "--batch-size", str(batch),
        "--precision", precision, "--engine", engine, "--workers", str(args.workers), "--quiet", "--overwrite",
    ]  # fmt: skip


def engine_rounds(model, tmp: Path, args) -> None:
    """Every ENGINE:PRECISION of ``args.variants`` as the whole command, interleaved with the official-style loop."""
    import statistics

    variants = [tuple(v.split(":")) for v in args.variants.split(",")]
    for engine, precision in variants:  # warm-up: file caches; OpenVINO exports each input shape once (cached)
        subprocess.run(unseg_command(tmp, tmp / "warm", args, args.batch_size, precision, engine), check=True)
    rates: dict[str, list[float]] = {"official-style loop": []} | {f"{e} {p}": [] for e, p in variants}
    for r in range(args.rounds):
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        rates["official-style loop"].append(
            official_style(model, sorted((tmp / "imgs").iterdir()), tmp / "off", args.size, "cpu")
        )
        for engine, precision in variants:
            start = time.perf_counter()
            subprocess.run(
                unseg_command(tmp, tmp / f"{engine}_{precision}", args, args.batch_size, precision, engine), check=True
            )
            rates[f"{engine} {precision}"].append(args.n / (time.perf_counter() - start))
        print(f"round {r}: {load}; " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in rates.items()))
    masks = {k: [np.asarray(Image.open(p), np.int16) for p in sorted((tmp / k.replace(" ", "_")).glob("*.png"))]
             for k in rates if k != "official-style loop"}  # fmt: skip
    flops = forward_flops(model, args.size)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    off = statistics.median(rates["official-style loop"])
    print(f"forward: {flops / 1e9:.1f} GFLOP per image; matmul peak fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")  # fmt: skip
    print("| run | median images/s | s/image | vs official-style | share of this precision's matmul peak | "
          "8-bit mask max diff vs torch fp32 |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for name, values in rates.items():
        rate = statistics.median(values)
        precision = name.split()[-1] if name != "official-style loop" else "fp32"
        share = flops * rate / peaks.get(precision, peaks["fp32"])
        diff = (
            ""
            if name not in masks
            else max(int(np.abs(a - b).max()) for a, b in zip(masks[name], masks["torch fp32"], strict=True))
        )
        print(f"| {name} | {rate:.3f} | {1 / rate:.2f} | **{rate / off:.2f}x** | {share:.0%} | {diff} |")


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
    ap.add_argument("--variants", help="CPU: ENGINE:PRECISION,... as whole commands in interleaved rounds")
    ap.add_argument("--rounds", type=int, default=2)
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
        if args.variants:
            engine_rounds(model, tmp, args)
            return
        configs = (
            [(b, p) for p in ("fp32", "bf16") for b in (1, 8, 32, 64)]
            if args.gpu_sweep
            else [(args.batch_size, args.precision)]
        )
        best = 0.0
        for batch, precision in configs:
            out = tmp / f"unseg_{batch}_{precision}"
            cmd = unseg_command(tmp, out, args, batch, precision)
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
