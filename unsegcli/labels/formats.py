"""Pseudo-label output formats: one writer class per format, all listed in ``FORMATS``.

- coco: what CutLER / detectron2's ``register_coco_instances`` read (boxes XYWH here and only here;
  everything upstream is XYXY), one RLE per component, or its outline as a polygon
  (``segmentation='polygon'``, for polygon-only tools).
- selfmask: SelfMask's ``{basename: RLE of the union of the kept components}``.
- lost-cad: LOST's CAD list-of-dicts with detectron2 ``meta_data``.
- jsonl: one JSON line per image, streamed as the labels arrive.
- yolo / yolo-seg: an ultralytics dataset folder (``images/`` links, ``labels/*.txt``, ``data.yaml``),
  boxes or component polygons.
- voc: one Pascal VOC XML per image, as labelling tools import them.

Adding a format means adding a writer class here, its name to ``LabelFormat`` and ``FORMATS``. A writer
declares what each image must carry (``needs_rle``, ``needs_union``) so the runner computes only
that, and whether its output is one file (``writes_folder = False``: it gets a binary stream, stdout
for '-', made atomic by the runner) or a folder (``True``: it gets the output path and writes the
folder's files itself, each atomically through ``unsegcli.io.files``).
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar, Literal
from xml.sax.saxutils import escape

from ..errors import UsageError
from ..io.files import atomic_write_bytes

if TYPE_CHECKING:
    import numpy as np

LabelFormat = Literal["coco", "selfmask", "lost-cad", "jsonl", "yolo", "yolo-seg", "voc"]
Segmentation = Literal["rle", "polygon"]  # how the coco format stores each component's mask
CATEGORY = {"id": 1, "name": "fg", "supercategory": "fg"}
CLASS_NAME = "object"  # the one class of the yolo / voc exports (LOST-CAD's thing_classes)


@dataclass
class ImageLabels:
    """Everything one mask yields, independent of the output format."""

    index: int  # position in the sorted input list: image id = index + 1 (stable across re-runs)
    file_name: str
    width: int
    height: int
    boxes: list[list[float]] = field(default_factory=list)  # XYXY
    areas: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    rles: list[dict] = field(default_factory=list)  # per kept component, when the writer needs_rle
    union_rle: dict | None = None  # union of the kept components, when the writer needs_union
    removed: dict[str, int] = field(default_factory=dict)  # filter name -> boxes it removed in this image


def _dumps(obj: object) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def xyxy_to_xywh(box: list[float]) -> list[float]:
    x0, y0, x1, y1 = box
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def coco_dataset(images: list[dict], annotations: list[dict]) -> dict:
    """The COCO document around images and annotations (also what `merge` writes).

    ``info`` carries COCO's six keys and ``licenses`` one empty entry, as CVAT's own COCO export
    writes them: CVAT's importer (datumaro) rejects a file without a licenses section ("Cannot find
    the licenses section", cvat-ai/cvat#9406). Values are fixed, so re-runs and merges stay identical.
    """
    return {
        "info": {
            "description": "unseg pseudo-labels (MOVE)",
            "url": "",
            "version": "",
            "year": "",
            "contributor": "unseg",
            "date_created": "",
        },
        "licenses": [{"id": 0, "name": "", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": [dict(CATEGORY)],
    }


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outer boundaries of a binary HxW mask as polygons (each (N, 2) float x, y) that follow the pixel
    edges exactly, in continuous coordinates (pixel (x, y) covers [x, x+1] x [y, y+1]): COCO's
    convention, so pycocotools rasterises them back to the mask (holes are not kept).

    OpenCV traces pixel centres, which loses half a pixel all round (a 10x10 square would come back
    as 9x9). So the mask is doubled, the corners of its pixels are traced instead (a corner is set
    when any of its four pixels is), each diagonal step of the trace is replaced by the two edge steps
    that go around its pixel on the mask's side, and collinear points are dropped.
    """
    import cv2
    import numpy as np

    up = np.repeat(np.repeat(np.asarray(mask, bool), 2, axis=0), 2, axis=1)  # 1-pixel notches stay open
    pad = np.pad(up, 1)  # pad[y + 1, x + 1] = up[y, x]; out of range is background
    corners = pad[:-1, :-1] | pad[:-1, 1:] | pad[1:, :-1] | pad[1:, 1:]  # (2H+1, 2W+1): corner (y, x)
    contours, _ = cv2.findContours(corners.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polygons = []
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.int64)
        nxt = np.roll(pts, -1, axis=0)
        diagonal = np.all(np.abs(nxt - pts) == 1, axis=1)
        # The diagonal step a -> b crosses pixel q (top-left corner min(a, b)). Going first along x
        # walks the edge between q and the pixel r across row a_y; it is a boundary edge when q and
        # r differ, else the boundary goes first along y.
        qx, qy = np.minimum(pts, nxt).T
        ry = np.clip(np.where(nxt[:, 1] > pts[:, 1], qy - 1, qy + 1), -1, len(up))  # clip: straight steps
        x_first = pad[qy + 1, qx + 1] != pad[ry + 1, qx + 1]
        mid = np.where(x_first[:, None], np.stack([nxt[:, 0], pts[:, 1]], 1), np.stack([pts[:, 0], nxt[:, 1]], 1))
        path = np.stack([pts, mid], axis=1).reshape(-1, 2)[np.stack([np.ones_like(diagonal), diagonal], 1).ravel()]
        step = np.roll(path, -1, axis=0) - path
        turn = np.any(step != np.roll(step, 1, axis=0), axis=1)  # keep points where the direction changes
        poly = path[turn] / 2.0
        if len(poly) >= 3:
            polygons.append(poly)
    return polygons


def rle_polygons(rle: dict, box: list[float]) -> list[np.ndarray]:
    """One component's RLE -> its polygons, traced inside its box only (cheap for small components)."""
    import numpy as np
    from pycocotools import mask as mask_utils

    x0, y0, x1, y1 = (int(v) for v in box)
    full = mask_utils.decode(rle)
    return [p + np.array([x0, y0]) for p in mask_polygons(full[y0:y1, x0:x1])]


def _largest(polygons: list[np.ndarray]) -> np.ndarray:
    """The polygon with the largest area (shoelace): a component has one outer boundary."""
    import numpy as np

    def area(p: np.ndarray) -> float:
        x, y = p[:, 0], p[:, 1]
        return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2

    return max(polygons, key=area)


class LabelWriter(ABC):
    """Receives every image's labels in input order (``add``), then ``finish`` completes the output."""

    needs_rle: ClassVar[bool] = False  # ImageLabels.rles: one RLE per kept component
    needs_union: ClassVar[bool] = False  # ImageLabels.union_rle: RLE of their union
    writes_folder: ClassVar[bool] = False  # True: ``out`` is the output folder's Path, else a binary stream
    takes_segmentation: ClassVar[bool] = False  # the writer honours ``segmentation``

    def __init__(self, out: IO[bytes] | Path, dirname: str = "", segmentation: Segmentation = "rle") -> None:
        if segmentation != "rle" and not self.takes_segmentation:
            raise UsageError(f"segmentation='{segmentation}' applies to the coco format only")
        self.out = out
        self.dirname = dirname  # the image root the file names are relative to ('' when unknown)
        self.segmentation = segmentation

    @abstractmethod
    def add(self, img: ImageLabels) -> None: ...

    def finish(self) -> None:  # noqa: B027 - streaming writers have nothing left to write
        """Complete the output after the last image."""

    @property
    def stream(self) -> IO[bytes]:
        if isinstance(self.out, Path):
            raise TypeError(f"{type(self).__name__} writes one file but was given a folder")
        return self.out

    @property
    def folder(self) -> Path:
        if not isinstance(self.out, Path):
            raise TypeError(f"{type(self).__name__} writes a folder but was given a stream")
        return self.out


class CocoWriter(LabelWriter):
    needs_rle = True
    takes_segmentation = True

    def __init__(self, out: IO[bytes] | Path, dirname: str = "", segmentation: Segmentation = "rle") -> None:
        super().__init__(out, dirname, segmentation)
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def _segmentation(self, rle: dict, box: list[float]) -> dict | list[list[float]]:
        if self.segmentation == "rle":
            return rle
        return [[round(float(v), 2) for v in p.ravel()] for p in rle_polygons(rle, box)]

    def add(self, img: ImageLabels) -> None:
        # key order as COCO's own files: id, file_name, width, height
        self.images.append({"id": img.index + 1, "file_name": img.file_name, "width": img.width, "height": img.height})
        first = len(self.annotations) + 1
        self.annotations.extend(
            {
                "id": first + k,
                "image_id": img.index + 1,
                "category_id": CATEGORY["id"],
                "bbox": xyxy_to_xywh(b),
                "area": int(a),
                "iscrowd": 0,
                "segmentation": self._segmentation(rle, b),
                "score": float(s),
            }
            for k, (b, a, s, rle) in enumerate(zip(img.boxes, img.areas, img.scores, img.rles, strict=True))
        )

    def finish(self) -> None:
        self.stream.write(_dumps(coco_dataset(self.images, self.annotations)))


class SelfMaskWriter(LabelWriter):
    needs_union = True

    def __init__(self, out: IO[bytes] | Path, dirname: str = "", segmentation: Segmentation = "rle") -> None:
        super().__init__(out, dirname, segmentation)
        self.entries: dict[str, dict | None] = {}

    def add(self, img: ImageLabels) -> None:
        key = os.path.basename(img.file_name)
        if key in self.entries:
            raise UsageError(f"two images share the basename '{key}', which SelfMask's format keys by")
        self.entries[key] = img.union_rle

    def finish(self) -> None:
        self.stream.write(_dumps(self.entries))


class LostCadWriter(LabelWriter):
    """LOST's trainer (tools/train_net_for_LOST_CAD.py) opens ``file_name`` as written, from LOST's own
    folder. LOST's prepare scripts write the image root joined with the name; we also make it absolute,
    so the file opens from any working directory (without an image root it stays the mask's name)."""

    DATASET_NAME = "unseg_pseudo"  # meta_data.name: the name the file is registered under in detectron2

    def __init__(self, out: IO[bytes] | Path, dirname: str = "", segmentation: Segmentation = "rle") -> None:
        super().__init__(out, dirname, segmentation)
        self.records: list[dict] = []

    def add(self, img: ImageLabels) -> None:
        path = os.path.abspath(os.path.join(self.dirname, img.file_name)) if self.dirname else img.file_name
        self.records.append(
            {
                "file_name": path,
                "image_id": os.path.splitext(os.path.basename(img.file_name))[0],
                "height": img.height,
                "width": img.width,
                "annotations": [
                    {"bbox": [float(v) for v in b], "bbox_mode": 0, "category_id": 0, "iscrowd": 0} for b in img.boxes
                ],
            }
        )

    def finish(self) -> None:
        meta = {
            "name": self.DATASET_NAME,
            "dirname": self.dirname,
            "evaluator_type": "coco",
            "thing_classes": ["object"],
        }
        self.stream.write(_dumps({"dataset": self.records, "meta_data": meta}))


class JsonlWriter(LabelWriter):
    """Streams: each line is written (and flushed) as its image arrives, so `--out -` feeds a pipe."""

    def add(self, img: ImageLabels) -> None:
        row = {
            "file_name": img.file_name,
            "width": img.width,
            "height": img.height,
            "boxes": img.boxes,
            "areas": img.areas,
            "scores": img.scores,
        }
        self.stream.write(_dumps(row))
        self.stream.flush()


def _link(target: str, link: Path) -> None:
    """``link`` -> ``target`` (absolute), replacing what was there atomically; a copy where the file
    system has no symbolic links."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover link: copying onto it would write through it
    try:
        os.symlink(target, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, link)


class YoloWriter(LabelWriter):
    """An ultralytics detection dataset its trainer opens as it is (`yolo train data=OUT/data.yaml`):
    ``images/REL`` links to each image, ``labels/REL.txt`` (ultralytics finds a label by replacing the
    last ``/images/`` of the image path with ``/labels/`` and the extension with .txt: data/utils.py
    ``img2label_paths``) with one ``0 cx cy w h`` line per box, normalised to [0, 1], and ``data.yaml``
    with one class. train and val both name ``images/`` (pseudo-labels have no held-out split); the yaml
    has no ``path``, so ultralytics resolves the folders from the yaml's own folder."""

    writes_folder = True
    FORMAT = "yolo"

    def __init__(self, out: IO[bytes] | Path, dirname: str = "", segmentation: Segmentation = "rle") -> None:
        super().__init__(out, dirname, segmentation)
        if not dirname:
            raise UsageError(f"the {self.FORMAT} format needs the image root (images_root), to link the images")

    def lines(self, img: ImageLabels) -> list[str]:
        return ["0 " + " ".join(f"{v:.6f}" for v in _normalised_cxcywh(b, img.width, img.height)) for b in img.boxes]

    def add(self, img: ImageLabels) -> None:
        rel = Path(img.file_name)
        _link(os.path.abspath(os.path.join(self.dirname, img.file_name)), self.folder / "images" / rel)
        text = "".join(line + "\n" for line in self.lines(img))
        atomic_write_bytes(self.folder / "labels" / rel.with_suffix(".txt"), text.encode())

    def finish(self) -> None:
        yaml = (
            "# ultralytics dataset written by `unseg boxes` (pseudo-labels): yolo train data=THIS_FILE\n"
            "train: images\nval: images\nnames:\n"
            f"  0: {CLASS_NAME}\n"
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.folder / "data.yaml", yaml.encode())
        # ultralytics caches labels in labels.cache, keyed by file names and sizes only: a re-export
        # with other boxes of the same byte size would be read from a stale cache.
        (self.folder / "labels.cache").unlink(missing_ok=True)


def _normalised_cxcywh(box: list[float], width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height


class YoloSegWriter(YoloWriter):
    """ultralytics segmentation labels: ``0 x1 y1 x2 y2 ...`` per component, its outer boundary
    normalised by the image size (as ultralytics' own COCO converter writes COCO polygons)."""

    needs_rle = True
    FORMAT = "yolo-seg"

    def lines(self, img: ImageLabels) -> list[str]:
        out = []
        for rle, box in zip(img.rles, img.boxes, strict=True):
            poly = _largest(rle_polygons(rle, box)) / [img.width, img.height]
            out.append("0 " + " ".join(f"{v:.6f}" for v in poly.ravel()))
        return out


class VocWriter(LabelWriter):
    """One Pascal VOC XML per image, ``OUT/REL.xml``, as LabelImg, CVAT and Label Studio import them.
    VOC boxes are 1-based inclusive pixel indices: xmin = x0 + 1, xmax = x1 for our 0-based exclusive
    XYXY (the inverse of how VOC ground truth is read, io/datasets.read_voc_annotation)."""

    writes_folder = True

    def add(self, img: ImageLabels) -> None:
        objects = "".join(
            f"  <object>\n    <name>{CLASS_NAME}</name>\n    <pose>Unspecified</pose>\n"
            "    <truncated>0</truncated>\n    <difficult>0</difficult>\n    <bndbox>\n"
            f"      <xmin>{int(b[0]) + 1}</xmin>\n      <ymin>{int(b[1]) + 1}</ymin>\n"
            f"      <xmax>{int(b[2])}</xmax>\n      <ymax>{int(b[3])}</ymax>\n    </bndbox>\n  </object>\n"
            for b in img.boxes
        )
        folder, name = os.path.split(img.file_name)
        path = os.path.abspath(os.path.join(self.dirname, img.file_name)) if self.dirname else img.file_name
        xml = (
            "<annotation>\n"
            f"  <folder>{escape(folder)}</folder>\n  <filename>{escape(name)}</filename>\n"
            f"  <path>{escape(path)}</path>\n  <source>\n    <database>unseg pseudo-labels</database>\n  </source>\n"
            f"  <size>\n    <width>{img.width}</width>\n    <height>{img.height}</height>\n"
            "    <depth>3</depth>\n  </size>\n  <segmented>0</segmented>\n"
            f"{objects}</annotation>\n"
        )
        atomic_write_bytes(self.folder / Path(img.file_name).with_suffix(".xml"), xml.encode())


FORMATS: dict[LabelFormat, type[LabelWriter]] = {
    "coco": CocoWriter,
    "selfmask": SelfMaskWriter,
    "lost-cad": LostCadWriter,
    "jsonl": JsonlWriter,
    "yolo": YoloWriter,
    "yolo-seg": YoloSegWriter,
    "voc": VocWriter,
}


def writer_class(format: str) -> type[LabelWriter]:
    if format not in FORMATS:
        raise UsageError(f"unknown label format '{format}'", f"use one of {', '.join(FORMATS)}")
    return FORMATS[format]
