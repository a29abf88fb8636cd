"""The one-shot GPU check behind ``benchmarks/gpu_check.sh`` (read its header). Each part runs on its own, its
failure is recorded and the next part runs; the report says per part ok/FAILED, its figures and its time.

``--dry-run``: the same parts on the CPU with tiny models, small images and a few iterations (under a minute),
so that the script's first GPU run is not its first run; tests/e2e/test_gpu_check.py runs it in CI. Random
weights of the real shapes on the GPU: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import generated_images, machine  # noqa: E402


class Check:
    def __init__(self, dry: bool, work: Path):
        self.dry = dry
        self.work = work
        self.device = "cpu" if dry else "cuda"
        self.sections: list[tuple[str, bool, float, list[str]]] = []

    def part(self, title: str, fn: Callable[[], list[str]]) -> None:
        start = time.perf_counter()
        try:
            lines, ok = fn(), True
        except Exception:  # noqa: BLE001 - one failed part is recorded and must not hide the others
            lines, ok = ["```", *traceback.format_exc().splitlines()[-15:], "```"], False
        took = time.perf_counter() - start
        self.sections.append((title, ok, took, lines))
        print(f"[{'ok' if ok else 'FAILED'}] {title} ({took:.1f} s)", file=sys.stderr)

    def unseg(self, *args: str, env: dict | None = None, torchrun: bool = False) -> subprocess.CompletedProcess:
        """``unseg ARGS`` in its own process; in the dry run, a plain command (no torchrun, no environment of its
        own) runs in this process instead: the same command line, without an interpreter and torch start-up
        each (~3 s on 2 cores, most of the dry run's training part)."""
        if self.dry and not torchrun and env is None:
            from typer.testing import CliRunner

            from unsegcli.cli.app import app

            out = CliRunner().invoke(app, list(map(str, args)))
            res = subprocess.CompletedProcess(list(args), out.exit_code, out.stdout, out.stderr)
        else:
            launcher = ["-m", "torch.distributed.run", "--nproc-per-node", "1"] if torchrun else []
            prefix = [sys.executable, *launcher, "-m", "unsegcli"]
            res = subprocess.run(
                [*prefix, *map(str, args)], capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=ROOT
            )
        if res.returncode != 0:
            raise RuntimeError(f"unseg {' '.join(map(str, args))} exited {res.returncode}:\n{res.stderr[-3000:]}")
        return res


def gpu_tests(c: Check) -> list[str]:
    """The gpu-marked tests (they skip, saying so, without CUDA)."""
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider", "tests/engine/test_gpu_predict.py",
         "tests/engine/test_gpu_train.py", "-rs"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    tail = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-500:]
    if res.returncode not in (0, 5):  # 5: nothing collected/run
        raise RuntimeError(res.stdout[-3000:])
    return [f"pytest -m gpu: {tail}"]


def _segmenter(dry: bool):
    from unsegcli.config import PRESETS, ModelConfig
    from unsegcli.methods.move.segmenter import Segmenter

    torch.manual_seed(0)
    return Segmenter(PRESETS["tiny"] if dry else ModelConfig()).eval()  # tiny, or DINO ViT-S/8 + MOVE head


def predict_throughput(c: Check) -> list[str]:
    """MOVE at 448 in-process (prepared tensors of 500x375 images: decode and writing excluded), images/s."""
    import copy

    from unsegcli.config import PreprocessConfig
    from unsegcli.methods.move.predictor import Predictor, preprocess

    size = 64 if c.dry else 448
    n = 8 if c.dry else 128
    model = _segmenter(c.dry)
    rng = np.random.default_rng(0)
    prep = PreprocessConfig(size=size)
    x = preprocess(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8), prep, model.patch_size)[0]
    dev = torch.device(c.device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # official-style: batch 1, fp32, DINO's explicit attention, NCHW head
    official = copy.deepcopy(model).to(dev).set_fused_attention(False)
    with torch.no_grad():
        official(x[None].to(dev))
        sync()
        t = time.perf_counter()
        for _ in range(n // 4 if not c.dry else 2):
            torch.sigmoid(official(x[None].to(dev))).cpu()
        sync()
        off = (n // 4 if not c.dry else 2) / (time.perf_counter() - t)
    lines = [f"input 1x3x{x.shape[1]}x{x.shape[2]}; official-style loop (batch 1, fp32, explicit attention): "
             f"{off:.1f} images/s", "", "| batch | precision | compile | images/s | vs official-style |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    batches = (1, 2) if c.dry else (1, 8, 32, 64)
    precisions = ["fp32"] + (["bf16"] if not c.dry or _cpu_bf16() else [])
    for compiled in (False,) if c.dry else (False, True):  # inductor's CPU build takes minutes: GPU only
        for precision in precisions:
            for b in batches:
                pred = Predictor(copy.deepcopy(model), prep, dev, precision, compile=compiled)
                from unsegcli.engine.predictor import Prepared

                items = [Prepared(i, x, (x.shape[1], x.shape[2]), (x.shape[1], x.shape[2])) for i in range(b)]
                pred.run(items)  # warm-up (and compile)
                sync()
                reps = max(1, n // b) if not c.dry else 1
                t = time.perf_counter()
                for _ in range(reps):
                    pred.run(items)
                sync()
                rate = reps * b / (time.perf_counter() - t)
                lines.append(f"| {b} | {precision} | {'yes' if compiled else 'no'} | {rate:.1f} | {rate / off:.1f}x |")
    return lines


def _cpu_bf16() -> bool:
    from unsegcli.runtime import cpu_native_bf16

    return cpu_native_bf16()


def _dino_file(c: Check, shape: str) -> Path:
    from unsegcli.config import BackboneConfig
    from unsegcli.model.backbone import build_vit

    shapes = {
        "tiny8": BackboneConfig("", 8, 64, 2, 1, img_size=64),
        "vits8": BackboneConfig("", 8, 384, 12, 6),
        "vits16": BackboneConfig("", 16, 384, 12, 6),
        "v2-vits14": BackboneConfig("", 14, 384, 12, 6, img_size=518),
    }
    path = c.work / f"{shape}.pth"
    if not path.exists():
        torch.manual_seed(0)
        torch.save(build_vit(shapes[shape], layer_scale=shape.startswith("v2-")).state_dict(), path)
    return path


def training_free(c: Check) -> list[str]:
    """Every training-free method per image: the batched eigensolver on the device ("fast", fused attention)
    beside the official path ("exact": DINO's explicit attention, the dense LAPACK eigh on the CPU)."""
    from unsegcli.io.images import decode_image
    from unsegcli.methods import load, method_options, predict_method, predict_methods

    size = (96, 128) if c.dry else (375, 500)
    # few images: the official path's dense eigh of a 60x60 grid (MaskCut, VoteCut at 480) takes ~10-50 s per cut
    paths = generated_images(c.work / "tf_imgs", 2 if c.dry else 3, size=size)
    images = [decode_image(str(p)) for p in paths]
    main = _dino_file(c, "tiny8" if c.dry else "vits8")
    lines = ["| method | official path s/image | unseg fast on device s/image | speed-up | same labels |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for method in predict_methods()[1:]:
        if predict_method(method).kind != "training-free":
            continue
        given: dict = {}
        backbone: object = main
        if method == "votecut":  # two of CuVLER's six backbones (DINO and DINOv2), fast enough for the check
            backbone = (str(main), str(main if c.dry else _dino_file(c, "v2-vits14")))
        if c.dry and method in ("maskcut", "votecut"):
            given["fixed_size"] = 64  # 8x8 patches instead of 60x60
        runs = {}
        solvers = hasattr(method_options(method), "eigensolver")  # LOST and FOUND's discovery have no eigensolver
        for solver, device in (("exact", "cpu"), ("fast", c.device)):
            opts = method_options(method, **given, **({"eigensolver": solver} if solvers else {}))
            pred = load(predict_method(method).predictor or "")(method, opts, backbone=backbone, device=device)
            pred.run([pred.prepare(0, images[0])])  # warm-up
            t = time.perf_counter()
            outs = [pred.run([pred.prepare(i, im)])[0] for i, im in enumerate(images)]
            if device == "cuda":
                torch.cuda.synchronize()
            labels = [np.asarray(o[0] if isinstance(o, tuple) else o) for o in outs]
            runs[solver] = ((time.perf_counter() - t) / len(images), labels)
        (t_off, a), (t_ours, b) = runs["exact"], runs["fast"]
        same = sum(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        lines.append(f"| {method} | {t_off:.3f} | {t_ours:.3f} | {t_off / t_ours:.1f}x | {same}/{len(images)} |")
    return lines


def training_steps(c: Check) -> list[str]:
    """A few steps of MOVE, Sempart and FOUND on the device: finite losses, the metrics written, a checkpoint."""
    data = c.work / "synth"
    if not data.exists():
        c.unseg("synth", data, "--n", 16 if c.dry else 64, "--size", 64 if c.dry else 256, "-q")
    arch = ["--arch", "tiny"] if c.dry else ["--arch", "vits8"]
    common = ["--random-init", "--device", c.device, "-j", "0", "-q", "--log-every", "1", "--log-images-every", "0"]
    runs = {
        "move": ["--inpainter", "blur" if c.dry else "mae", "--batch-size", "4" if c.dry else "16"],
        "sempart": ["--batch-size", "2" if c.dry else "8"],
        "found": ["--batch-size", "4" if c.dry else "16"],
    }
    steps = 2 if c.dry else 10
    lines = ["| method | steps | first loss | last loss | finite | s/step |", "| --- | --- | --- | --- | --- | --- |"]
    failed = []
    for method, extra in runs.items():
        out = c.work / f"train_{method}"
        t = time.perf_counter()
        c.unseg("train", data, "--out", out, "--method", method, "--steps", steps, "--crop", 64 if c.dry else 224,
                *arch, *common, *extra)  # fmt: skip
        took = (time.perf_counter() - t) / steps
        metrics = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
        # the objective's total loss (MOVE: its segmenter's "loss_s"; Sempart: "loss_total"); every "loss*" value
        # must be finite
        main_key = next(k for k in ("loss", "loss_total", "loss_s") if k in metrics[0])
        losses = [m[main_key] for m in metrics]
        finite = all(np.isfinite(v) for m in metrics for k, v in m.items() if k.startswith("loss"))
        if not finite or not (out / "last.pt").is_file():
            failed.append(method)
        lines.append(
            f"| {method} ({main_key}) | {len(losses)} | {losses[0]:.4g} | {losses[-1]:.4g} | {finite} | {took:.2f} |"
        )
    if failed:
        raise RuntimeError("\n".join(lines) + f"\nnon-finite losses or no checkpoint: {', '.join(failed)}")
    return lines


def torchrun(c: Check) -> list[str]:
    """``torchrun --nproc-per-node 1 -m unsegcli predict``: NCCL on the GPU (gloo in the dry run)."""
    imgs = generated_images(c.work / "tr_imgs", 4, size=(48, 64))
    ckpt = c.work / "tr.pt"
    from unsegcli.config import PreprocessConfig
    from unsegcli.model.checkpoint import checkpoint_dict, save_checkpoint

    save_checkpoint(ckpt, checkpoint_dict(_segmenter(True), PreprocessConfig(size=64)))
    env = {"UNSEG_DIST_BACKEND": "gloo"} if c.dry else {}
    out = c.work / "tr_masks"
    res = c.unseg("predict", imgs[0].parent, "--out", out, "-w", ckpt, "--device", c.device, "-j", "0",
                  env=env, torchrun=True)  # fmt: skip
    written = len(list(out.glob("*.png")))
    if written != len(imgs):
        raise RuntimeError(f"{written} of {len(imgs)} masks written\n{res.stderr[-2000:]}")
    backend = "gloo (dry run)" if c.dry else "nccl"
    return [
        f"torchrun 1 process, backend {backend}: {written}/{len(imgs)} masks; {res.stderr.strip().splitlines()[-1]}"
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="every part on CPU with tiny models")
    ap.add_argument("--out", default="gpu_check_report.md", help="the report file (markdown)")
    args = ap.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device (use --dry-run to run every part on CPU)")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        c = Check(args.dry_run, Path(tmp))
        c.part("gpu-marked tests", lambda: gpu_tests(c))
        c.part("MOVE predict throughput", lambda: predict_throughput(c))
        c.part("training-free methods: device eigensolver vs official path", lambda: training_free(c))
        c.part("training steps on the device", lambda: training_steps(c))
        c.part("torchrun, one GPU", lambda: torchrun(c))
    total = time.perf_counter() - start
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    report = [
        f"# GPU check{' (dry run: CPU, tiny models)' if args.dry_run else ''}", "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {machine()} · {platform.platform()} · load: {load}",
        f"total {total:.0f} s · {'all parts ok' if all(s[1] for s in c.sections) else 'SOME PARTS FAILED'}", "",
    ]  # fmt: skip
    for title, ok, took, lines in c.sections:
        report += [f"## {title}: {'ok' if ok else 'FAILED'} ({took:.1f} s)", "", *lines, ""]
    Path(args.out).write_text("\n".join(report))
    print(f"report: {args.out} ({total:.0f} s)", file=sys.stderr)
    if not all(s[1] for s in c.sections):
        sys.exit(1)


if __name__ == "__main__":
    main()
