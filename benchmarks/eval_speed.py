"""Evaluation speed on generated data laid out like the real datasets.

CorLoc: 5,011 VOC07-style images (XML annotations) scored from an `unseg boxes` JSONL file.
Saliency: 5,000 GT/prediction pairs at 400x300.

    python benchmarks/eval_speed.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine


def voc_tree(base: Path, n: int, rng) -> list[str]:
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "Annotations").mkdir()
    ids = [f"{i:06d}" for i in range(n)]
    lines = []
    for i in ids:
        objs = "".join(
            f"<object><name>x</name><truncated>0</truncated><difficult>0</difficult><bndbox>"
            f"<xmin>{x}</xmin><ymin>{y}</ymin><xmax>{x + 100}</xmax><ymax>{y + 80}</ymax></bndbox></object>"
            for x, y in rng.integers(1, 300, (rng.integers(1, 4), 2))
        )
        (base / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>500</width><height>375</height></size>{objs}</annotation>"
        )
        x, y = rng.integers(0, 300, 2)
        lines.append(
            json.dumps(
                {
                    "file_name": f"{i}.jpg",
                    "width": 500,
                    "height": 375,
                    "boxes": [[float(x), float(y), float(x + 100), float(y + 80)]],
                    "areas": [8000],
                    "scores": [0.9],
                }
            )
        )
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids) + "\n")
    return lines


def saliency_pairs(root: Path, n: int, rng) -> None:
    (root / "gt").mkdir(parents=True)
    (root / "pred").mkdir()
    for i in range(n):
        g = np.zeros((300, 400), np.uint8)
        cv2.circle(g, tuple(int(v) for v in rng.integers(80, 300, 2)), int(rng.integers(30, 90)), 255, -1)
        p = cv2.GaussianBlur(g, (31, 31), 0)
        cv2.imwrite(str(root / "gt" / f"{i:05d}.png"), g)
        cv2.imwrite(str(root / "pred" / f"{i:05d}.png"), p)


def timed(cmd) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = voc_tree(tmp / "VOC2007", 5011, rng)
        (tmp / "boxes.jsonl").write_text("\n".join(lines) + "\n")
        saliency_pairs(tmp / "sal", 5000, rng)
        unseg = [sys.executable, "-m", "unsegcli"]
        t_corloc = timed(
            unseg
            + ["corloc", "voc07", "--root", str(tmp / "VOC2007"), "--pred", str(tmp / "boxes.jsonl"), "--json", "-"]
        )
        t_sal = timed(
            unseg
            + [
                "eval",
                "saliency",
                "--gt",
                str(tmp / "sal" / "gt"),
                "--pred",
                str(tmp / "sal" / "pred"),
                "--json",
                "-",
                "--workers",
                "2",
            ]
        )
        print(f"machine: {machine()}")
        print(f"unseg corloc voc07, 5,011 images from a JSONL boxes file (process start included): {t_corloc:.2f} s")
        print(f"unseg eval saliency, 5,000 pairs at 400x300, 2 workers (process start included): {t_sal:.2f} s")


if __name__ == "__main__":
    main()
