"""VOC and COCO ground truth -> plain records with 0-based continuous XYXY boxes.

The conventions are those of LOST's datasets.py (valeoai/LOST), which TokenCut and MOVE reuse for
CorLoc; each is applied here, once, with the reason beside it.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputError, UsageError

DatasetName = Literal["voc07", "voc12", "voc", "coco20k", "coco"]

# name -> (kind, VOC year or None): the benchmarks CorLoc is reported on (LOST, TokenCut, MOVE Table 2),
# plus 'voc' (any VOC-style folder) and 'coco' (any instances JSON)
DATASETS: dict[DatasetName, tuple[Literal["voc", "coco"], str | None]] = {
    "voc07": ("voc", "2007"),
    "voc12": ("voc", "2012"),
    "voc": ("voc", None),
    "coco20k": ("coco", None),
    "coco": ("coco", None),
}
COCO20K_HINT = (
    "COCO20k is the 19,817 train2014 images listed in LOST's datasets/coco_20k_filenames.txt "
    "(github.com/valeoai/LOST); pass that file as the image list"
)


@dataclass
class GTImage:
    image_id: str | int  # VOC id (str) or COCO image id (int)
    file_name: str  # image path relative to the dataset's image folder
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (N, 4) float64 XYXY
    hard: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # VOC difficult or truncated

    @property
    def stem(self) -> str:
        return os.path.splitext(os.path.basename(self.file_name))[0]


def find_voc_year_dir(root: str | Path, year: str | None) -> Path:
    """Accept VOCdevkit/, VOCdevkit/VOC20xx/ or a VOC-style folder itself (ImageSets + Annotations)."""
    root = Path(root).expanduser()
    if (root / "ImageSets").is_dir() and (root / "Annotations").is_dir():
        return root
    candidates = [root / f"VOC{year}"] if year else sorted(root.glob("VOC20*"))
    for c in candidates:
        if (c / "ImageSets").is_dir() and (c / "Annotations").is_dir():
            return c
    raise UsageError(
        f"{root} is not a VOC folder (no ImageSets/ and Annotations/"
        + (f" in it or in VOC{year}/" if year else "")
        + ")",
        "pass VOCdevkit/, VOCdevkit/VOC2007/ or a folder laid out like it",
    )


def _text(node, tag: str, default: str = "0") -> str:
    el = node.find(tag)
    return el.text.strip() if el is not None and el.text else default


def read_voc_annotation(path: Path) -> tuple[str, int, int, np.ndarray, np.ndarray]:
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as e:
        raise InputError(f"{path}: cannot parse annotation ({e})") from None
    ann = tree.getroot()
    size = ann.find("size")
    width, height = int(_text(size, "width")), int(_text(size, "height"))
    boxes, hard = [], []
    for obj in ann.findall("object"):
        bb = obj.find("bndbox")
        # LOST extract_gt_VOC: int() of each value, then xmin - 1 and ymin - 1 (1-based inclusive pixel
        # indices -> continuous 0-based coordinates), xmax / ymax unchanged. float() first because a few
        # VOC2012 files write decimals.
        x0, y0, x1, y1 = (int(float(_text(bb, t))) for t in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([x0 - 1, y0 - 1, x1, y1])
        # LOST discard_hard_voc / extract_gt_VOC: "hard" = truncated == "1" or difficult == "1".
        hard.append(_text(obj, "truncated") == "1" or _text(obj, "difficult") == "1")
    return (
        _text(ann, "filename", path.stem + ".jpg"),
        width,
        height,
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(hard, bool),
    )


def read_voc(root: str | Path, split: str = "trainval", year: str | None = None) -> list[GTImage]:
    """Images of ImageSets/Main/<split>.txt with ALL their objects (difficult and truncated too)."""
    base = find_voc_year_dir(root, year)
    ids_file = base / "ImageSets" / "Main" / f"{split}.txt"
    if not ids_file.exists():
        raise UsageError(f"split file not found: {ids_file}")
    out = []
    for line in ids_file.read_text().split():
        filename, w, h, boxes, hard = read_voc_annotation(base / "Annotations" / f"{line}.xml")
        out.append(GTImage(line, filename, w, h, boxes, hard))
    return out


def coco_id_from_filename(name: str) -> int:
    # LOST select_coco_20k: int(s.split("_")[-1].split(".")[0]) for "COCO_train2014_000000000009.jpg"
    return int(os.path.basename(name).split("_")[-1].split(".")[0])


def read_coco(ann_file: str | Path, image_list: str | Path | None = None) -> list[GTImage]:
    """COCO instances -> records; crowd annotations skipped (LOST extract_gt_COCO remove_iscrowd),
    boxes xywh -> xyxy rounded with int(round(v)) as LOST does. Images whose GT is all crowd stay
    (they can only be misses). ``image_list`` restricts to the listed files (COCO20k)."""
    ann_file = Path(ann_file).expanduser()
    if not ann_file.exists():
        raise UsageError(f"annotation file not found: {ann_file}")
    with open(ann_file) as f:
        data = json.load(f)
    images = {img["id"]: img for img in data["images"]}
    if image_list is not None:
        names = [s.strip() for s in Path(image_list).read_text().splitlines() if s.strip()]
        ids = [coco_id_from_filename(n) for n in names]
        missing = [i for i in ids if i not in images]
        if missing:
            raise UsageError(
                f"{len(missing)} images of {image_list} are not in {ann_file} (e.g. id {missing[0]})",
                "COCO20k needs instances_train2014.json",
            )
    else:
        ids = sorted(images)
    boxes: dict[int, list] = {i: [] for i in ids}
    for a in data["annotations"]:
        if a["image_id"] in boxes and not a.get("iscrowd", 0):
            x, y, w, h = a["bbox"]
            boxes[a["image_id"]].append([int(round(v)) for v in (x, y, x + w, y + h)])
    return [
        GTImage(
            i,
            images[i]["file_name"],
            images[i]["width"],
            images[i]["height"],
            np.asarray(boxes[i], np.float64).reshape(-1, 4),
        )
        for i in ids
    ]


def load_gt(
    name: DatasetName,
    root: str | Path | None = None,
    split: str = "trainval",
    ann: str | Path | None = None,
    image_list: str | Path | None = None,
) -> list[GTImage]:
    """Ground truth of a dataset of ``DATASETS``. VOC reads ``root``'s ImageSets/Main/<split>.txt;
    COCO reads ``ann`` (default ``root``/annotations/instances_train2014.json, the COCO20k source),
    restricted to ``image_list`` (required for coco20k)."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset '{name}'", f"use one of {', '.join(DATASETS)}")
    kind, year = DATASETS[name]
    if kind == "voc":
        if root is None:
            raise UsageError("VOC datasets need a root folder")
        return read_voc(root, split, year)
    if name == "coco20k" and image_list is None:
        raise UsageError("coco20k needs its image list (coco_20k_filenames.txt)", COCO20K_HINT)
    if ann is None:
        if root is None:
            raise UsageError("COCO needs an annotation file, or a root holding annotations/instances_train2014.json")
        ann = Path(root).expanduser() / "annotations" / "instances_train2014.json"
    return read_coco(ann, image_list)
