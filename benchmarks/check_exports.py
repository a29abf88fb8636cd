"""Check a `unseg boxes --format yolo` export with ultralytics' own code: its dataset check, then (with
--epochs) a short training run from the export's data.yaml, from a random model (no weights download).

ultralytics pulls torch and many packages, so it lives in its own environment, not in unseg's:

    python3 -m venv /tmp/ultra && /tmp/ultra/bin/pip install ultralytics
    make demo                                    # writes demo_out/yolo (boxes --format yolo)
    /tmp/ultra/bin/python benchmarks/check_exports.py demo_out/yolo --epochs 1

Offline: YOLO_OFFLINE=1 stops ultralytics' online checks, plots=False its font download, and a model
built from yolov8n.yaml with pretrained=False needs no weights file. Its settings and runs go to a
temporary folder. Exit 0 when every check passes, 1 when one fails, 2 when ultralytics is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="folder written by `unseg boxes --format yolo` (holds data.yaml)")
    parser.add_argument("--epochs", type=int, default=0, help="also train this many epochs on CPU (0: check only)")
    parser.add_argument("--imgsz", type=int, default=96, help="training image size")
    parser.add_argument("--model", default="yolov8n.yaml", help="ultralytics model config (built at random)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="unseg-ultra-"))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(work / "config"))  # settings.json, fonts: not in $HOME
    try:
        import ultralytics
        from ultralytics import YOLO
        from ultralytics.data.utils import check_det_dataset
    except ImportError:
        print("ultralytics is not importable here: see this script's docstring", file=sys.stderr)
        return 2

    yaml = args.dataset / "data.yaml"
    data = check_det_dataset(str(yaml), autodownload=False)
    n_images = len(list((args.dataset / "images").rglob("*.*")))
    n_labels = sum(1 for p in (args.dataset / "labels").rglob("*.txt"))
    print(
        f"ultralytics {ultralytics.__version__}: check_det_dataset ok: nc={data['nc']} names={data['names']} "
        f"train={data['train']} ({n_images} images, {n_labels} label files)"
    )
    if args.epochs:
        start = time.perf_counter()
        model = YOLO(args.model)
        model.train(
            data=str(yaml),
            epochs=args.epochs,
            imgsz=args.imgsz,
            device="cpu",
            pretrained=False,
            amp=False,
            plots=False,
            workers=0,
            batch=16,
            project=str(work / "runs"),
            name="check",
            verbose=False,
        )
        metrics = model.trainer.metrics if model.trainer else {}
        print(
            f"trained {args.epochs} epoch(s) from {args.model} in {time.perf_counter() - start:.1f} s; "
            f"box mAP50 {metrics.get('metrics/mAP50(B)', float('nan')):.4f} (a random model: only proves it runs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
