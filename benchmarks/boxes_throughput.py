"""masks/s of `unseg boxes --multi --format coco` end to end (PNG decode -> JSON written) on
generated 500x375 masks with 1-5 components each.

    python benchmarks/boxes_throughput.py --n 2000 --workers 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine


def generated_masks(folder: Path, n: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        m = np.zeros((375, 500), np.uint8)
        for _ in range(rng.integers(1, 6)):
            cx, cy = rng.integers(40, 460), rng.integers(40, 335)
            ax, ay = rng.integers(15, 60), rng.integers(15, 60)
            cv2.ellipse(m, (int(cx), int(cy)), (int(ax), int(ay)), 0, 0, 360, int(rng.integers(150, 256)), -1)
        cv2.imwrite(str(folder / f"{i:06d}.png"), m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generated_masks(tmp / "masks", args.n)
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "unsegcli",
                "boxes",
                str(tmp / "masks"),
                "--multi",
                "--format",
                "coco",
                "--out",
                str(tmp / "p.json"),
                "--workers",
                str(args.workers),
                "--quiet",
            ],
            check=True,
        )
        sec = time.perf_counter() - start
        print(f"machine: {machine()}")
        print(
            f"unseg boxes --multi --format coco, {args.n} masks 500x375, {args.workers} workers, "
            f"process start included: {args.n / sec:.0f} masks/s ({sec:.2f} s)"
        )


if __name__ == "__main__":
    main()
