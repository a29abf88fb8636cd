"""Check the folder exports with the readers they are made for, each in its own environment (they pull
their own torch, OpenCV and Pillow, so they stay out of unseg's):

- `unseg boxes --format yolo`: ultralytics' dataset check, then (with --epochs) a short training run
  from the export's data.yaml, from a random model (no weights download).

      python3 -m venv /tmp/ultra && /tmp/ultra/bin/pip install ultralytics
      make demo                                    # writes demo_out/yolo (boxes --format yolo)
      /tmp/ultra/bin/python benchmarks/check_exports.py demo_out/yolo --epochs 1

  Offline: YOLO_OFFLINE=1 stops ultralytics' online checks, plots=False its font download, and a model
  built from yolov8n.yaml with pretrained=False needs no weights file. Its settings and runs go to a
  temporary folder.

- `unseg boxes --format voc --images DIR`: imported as a VOC dataset by datumaro (CVAT's dataset
  engine), every item with its image, every box of the one declared class, no import error:

      python3 -m venv /tmp/dm && /tmp/dm/bin/pip install datumaro
      unseg boxes demo_out/masks --images demo_data/images --multi --format voc --out demo_out/voc
      /tmp/dm/bin/python benchmarks/check_exports.py --voc demo_out/voc

Exit 0 when every check passes, 1 when one fails, 2 when a reader is missing.
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
    parser.add_argument(
        "dataset", type=Path, nargs="?", help="folder written by `unseg boxes --format yolo` (holds data.yaml)"
    )
    parser.add_argument("--voc", type=Path, help="folder written by `unseg boxes --format voc`: import with datumaro")
    parser.add_argument("--epochs", type=int, default=0, help="also train this many epochs on CPU (0: check only)")
    parser.add_argument("--imgsz", type=int, default=96, help="training image size")
    parser.add_argument("--model", default="yolov8n.yaml", help="ultralytics model config (built at random)")
    args = parser.parse_args()
    if args.dataset is None and args.voc is None:
        parser.error("give a yolo export, --voc DIR, or both")
    if args.voc is not None:
        status = check_voc(args.voc)
        if status or args.dataset is None:
            return status
    return check_yolo(args)


def check_voc(folder: Path) -> int:
    """datumaro's VOC importer with its strict error policy (any item or annotation error raises)."""
    try:
        import datumaro
        from datumaro.components.annotation import AnnotationType
    except ImportError:
        print("datumaro is not importable here: see this script's docstring", file=sys.stderr)
        return 2
    dataset = datumaro.Dataset.import_from(str(folder), "voc")
    labels = [c.name for c in dataset.categories()[AnnotationType.label]]
    ids = (folder / "ImageSets" / "Main" / "trainval.txt").read_text(encoding="utf-8").split("\n")[:-1]
    items = list(dataset)
    problems = []
    if labels != ["object"]:
        problems.append(f"labels {labels}, not ['object']")
    if sorted(it.id for it in items) != sorted(ids):
        problems.append(f"{len(items)} items imported for {len(ids)} listed")
    n_boxes = 0
    for it in items:
        if it.media is None or not Path(it.media.path).is_file():
            problems.append(f"{it.id}: no image ({it.media.path if it.media else None})")
        n_boxes += sum(a.type == AnnotationType.bbox for a in it.annotations)
    version = getattr(datumaro, "__version__", "?")
    print(f"datumaro {version}: imported {folder} as voc: {len(items)} items, {n_boxes} boxes, labels {labels}")
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


def check_yolo(args: argparse.Namespace) -> int:
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
