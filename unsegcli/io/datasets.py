"""VOC and COCO ground truth -> plain records with 0-based continuous XYXY boxes.

The conventions are those of LOST's datasets.py (valeoai/LOST), which TokenCut and MOVE reuse for
CorLoc; each is applied here, once, with the reason beside it.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
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


def _raise(message: str) -> None:
    raise InputError(message)


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


def _number(path: Path, node, tag: str, where: str) -> int:
    """A required integer field; a missing or non-numeric value is this annotation's error, named."""
    el = node.find(tag)
    text = el.text.strip() if el is not None and el.text else ""
    if not text:
        raise InputError(f"{path}: no <{tag}> in <{where}>")
    try:
        # float() first because a few VOC2012 files write decimals; LOST then takes int()
        return int(float(text))
    except ValueError:
        raise InputError(f"{path}: <{tag}> in <{where}> is not a number ({text!r})") from None


def read_voc_annotation(path: Path) -> tuple[str, int, int, np.ndarray, np.ndarray]:
    """One VOC XML -> (file name, width, height, boxes, hard). Raises InputError naming the file and
    what is wrong: not XML, no <size> or <bndbox>, a missing or non-numeric coordinate."""
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise InputError(f"{path}: annotation not found") from None
    except (ET.ParseError, OSError) as e:
        raise InputError(f"{path}: not a readable XML annotation ({e})") from None
    ann = tree.getroot()
    size = ann.find("size")
    if size is None:
        raise InputError(f"{path}: no <size> element")
    width, height = _number(path, size, "width", "size"), _number(path, size, "height", "size")
    if width <= 0 or height <= 0:
        raise InputError(f"{path}: <size> is {width}x{height}")
    boxes, hard = [], []
    for k, obj in enumerate(ann.findall("object"), 1):
        bb = obj.find("bndbox")
        if bb is None:
            raise InputError(f"{path}: <object> {k} has no <bndbox>")
        # LOST extract_gt_VOC: int() of each value, then xmin - 1 and ymin - 1 (1-based inclusive pixel
        # indices -> continuous 0-based coordinates), xmax / ymax unchanged.
        x0, y0, x1, y1 = (_number(path, bb, t, "bndbox") for t in ("xmin", "ymin", "xmax", "ymax"))
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


def read_voc(
    root: str | Path,
    split: str = "trainval",
    year: str | None = None,
    on_error: Callable[[str], None] = _raise,
) -> list[GTImage]:
    """Images of ImageSets/Main/<split>.txt with ALL their objects (difficult and truncated too).

    An unreadable annotation goes to ``on_error`` and its image is left out of the ground truth (it
    cannot be scored); by default it raises. An empty split is a UsageError."""
    base = find_voc_year_dir(root, year)
    ids_file = base / "ImageSets" / "Main" / f"{split}.txt"
    if not ids_file.is_file():
        raise UsageError(f"split file not found: {ids_file}")
    try:
        # one id a line, taken whole: an id may hold spaces (VOC exports of file names with spaces)
        ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the split file {ids_file} ({e})") from None
    if not ids:
        raise UsageError(f"the split file {ids_file} lists no images")
    out = []
    for line in ids:
        try:
            filename, w, h, boxes, hard = read_voc_annotation(base / "Annotations" / f"{line}.xml")
        except InputError as e:
            on_error(e.message)
            continue
        out.append(GTImage(line, filename, w, h, boxes, hard))
    return out


def coco_id_from_filename(name: str) -> int:
    # LOST select_coco_20k: int(s.split("_")[-1].split(".")[0]) for "COCO_train2014_000000000009.jpg"
    return int(os.path.basename(name).split("_")[-1].split(".")[0])


def _read_image_list(image_list: str | Path) -> list[int]:
    """COCO image ids of a list of file names (COCO20k's coco_20k_filenames.txt)."""
    try:
        names = [s.strip() for s in Path(image_list).expanduser().read_text().splitlines() if s.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the image list {image_list} ({e})") from None
    ids = []
    for n, name in enumerate(names, 1):
        try:
            ids.append(coco_id_from_filename(name))
        except ValueError:
            raise UsageError(
                f"{image_list}:{n}: '{name}' is not a COCO file name (no numeric id before the extension)"
            ) from None
    if not ids:
        raise UsageError(f"the image list {image_list} names no images")
    return ids


def read_coco(ann_file: str | Path, image_list: str | Path | None = None) -> list[GTImage]:
    """COCO instances -> records; crowd annotations skipped (LOST extract_gt_COCO remove_iscrowd),
    boxes xywh -> xyxy rounded with int(round(v)) as LOST does. Images whose GT is all crowd stay
    (they can only be misses). ``image_list`` restricts to the listed files (COCO20k)."""
    from .labels import read_coco_document

    ann_file = Path(ann_file).expanduser()
    if not ann_file.is_file():
        raise UsageError(f"annotation file not found: {ann_file}")
    data = read_coco_document(str(ann_file))
    images = {img["id"]: img for img in data["images"]}
    if image_list is not None:
        ids = _read_image_list(image_list)
        missing = [i for i in ids if i not in images]
        if missing:
            raise UsageError(
                f"{len(missing)} images of {image_list} are not in {ann_file} (e.g. id {missing[0]})",
                "COCO20k needs instances_train2014.json",
            )
    else:
        ids = sorted(images, key=lambda i: (isinstance(i, str), i))
    if not ids:
        raise UsageError(f"{ann_file} holds no images")
    boxes: dict[int, list] = {i: [] for i in ids}
    for a in data["annotations"]:
        if a["image_id"] in boxes and not a.get("iscrowd", 0):
            x, y, w, h = a["bbox"]
            boxes[a["image_id"]].append([int(round(v)) for v in (x, y, x + w, y + h)])
    return [
        GTImage(
            i,
            images[i]["file_name"],
            int(images[i]["width"]),
            int(images[i]["height"]),
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
    on_error: Callable[[str], None] = _raise,
) -> list[GTImage]:
    """Ground truth of a dataset of ``DATASETS``. VOC reads ``root``'s ImageSets/Main/<split>.txt;
    COCO reads ``ann`` (default ``root``/annotations/instances_train2014.json, the COCO20k source),
    restricted to ``image_list`` (required for coco20k). VOC annotations that cannot be read go to
    ``on_error`` and are left out; a COCO file that cannot be read is one InputError."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset '{name}'", f"use one of {', '.join(DATASETS)}")
    kind, year = DATASETS[name]
    if kind == "voc":
        if root is None:
            raise UsageError("VOC datasets need a root folder")
        return read_voc(root, split, year, on_error)
    if name == "coco20k" and image_list is None:
        raise UsageError("coco20k needs its image list (coco_20k_filenames.txt)", COCO20K_HINT)
    if ann is None:
        if root is None:
            raise UsageError("COCO needs an annotation file, or a root holding annotations/instances_train2014.json")
        ann = Path(root).expanduser() / "annotations" / "instances_train2014.json"
    return read_coco(ann, image_list)
