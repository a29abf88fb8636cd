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
folder's files itself, each atomically through ``unsegcli.io.files``, and owns them through a
``Manifest``: a re-export removes the files of an earlier run that it no longer writes).

File names that are not UTF-8 (bytes of another locale: Python holds them surrogate-escaped): each
writer's docstring says how it carries them. JSON writes them as ``\\uDCxx`` escapes, which Python's
json (pycocotools, detectron2, datumaro) reads back to the same string and so the same bytes on disk;
paths on disk keep their bytes; XML has no way to write them, so the VOC export names such an image as
failed (``InputError`` from ``add``: the runner counts it and goes on).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar, Literal
from xml.sax.saxutils import escape

from ..errors import InputError, UsageError
from ..io.files import Manifest, atomic_write_bytes, mkstemp_beside

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


class LabelWriter(ABC):
    """Receives every image's labels in input order (``add``), then ``finish`` completes the output."""

    needs_rle: ClassVar[bool] = False  # ImageLabels.rles: one RLE per kept component
    needs_union: ClassVar[bool] = False  # ImageLabels.union_rle: RLE of their union
    writes_folder: ClassVar[bool] = False  # True: ``out`` is the output folder's Path, else a binary stream
    takes_segmentation: ClassVar[bool] = False  # the writer honours ``segmentation``
    removed_stale = 0  # files of an earlier export into the same folder that ``finish`` removed

    def __init__(
        self, out: IO[bytes] | Path, dirname: str = "", segmentation: Segmentation = "rle", part: str = ""
    ) -> None:
        if segmentation != "rle" and not self.takes_segmentation:
            raise UsageError(f"segmentation='{segmentation}' applies to the coco format only")
        self.out = out
        self.dirname = dirname  # the image root the file names are relative to ('' when unknown)
        self.segmentation = segmentation
        self.part = part  # an independent shard's name ('3of16'), '' for a whole run

    @abstractmethod
    def add(self, img: ImageLabels) -> None:
        """Write (or keep) one image's labels; InputError when the format cannot hold this image."""

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
    """One COCO instances file (``--format coco``, the default), as pycocotools and detectron2's
    ``register_coco_instances`` load it, CutLER-style: ``info`` and ``licenses`` (CVAT's importer rejects
    COCO without them), one category ``{"id": 1, "name": "fg"}``, ``images`` (``id`` from 1 in input order,
    ``file_name``: the image path relative to the image root, or the mask's without one; ``width``,
    ``height``) and one annotation per kept component or object: ``id``, ``image_id``, ``category_id`` 1,
    ``bbox`` [x, y, w, h] (0-based pixels), ``area`` (its pixel count), ``iscrowd`` 0, ``segmentation`` and
    ``score`` (the mean soft-mask value inside it, or the object's stored score; 1 when there is none).

    ``segmentation`` is compressed RLE by default, which detectron2 reads only with ``INPUT.MASK_FORMAT
    bitmask`` and Label Studio's importer cannot read; ``segmentation="polygon"`` (``--segmentation
    polygon``) writes each component's outer outlines as polygons instead."""

    needs_rle = True
    takes_segmentation = True

    def __init__(
        self, out: IO[bytes] | Path, dirname: str = "", segmentation: Segmentation = "rle", part: str = ""
    ) -> None:
        super().__init__(out, dirname, segmentation, part)
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
    """SelfMask's pseudo-mask file (``--format selfmask``): one JSON object mapping each image's basename
    to the compressed RLE of the union of its kept components (an all-background mask when none is kept).
    Keys are
    basenames, so two images with one basename are a usage error."""

    needs_union = True

    def __init__(
        self, out: IO[bytes] | Path, dirname: str = "", segmentation: Segmentation = "rle", part: str = ""
    ) -> None:
        super().__init__(out, dirname, segmentation, part)
        self.entries: dict[str, dict | None] = {}

    def add(self, img: ImageLabels) -> None:
        key = os.path.basename(img.file_name)
        if key in self.entries:
            raise UsageError(f"two images share the basename '{key}', which SelfMask's format keys by")
        self.entries[key] = img.union_rle

    def finish(self) -> None:
        self.stream.write(_dumps(self.entries))


class LostCadWriter(LabelWriter):
    """LOST's class-agnostic detection (CAD) file (``--format lost-cad``): ``{"dataset": [...],
    "meta_data": {"name": "unseg_pseudo", "dirname", "evaluator_type": "coco", "thing_classes":
    ["object"]}}``, one detectron2 record per image: ``file_name``, ``image_id`` (the basename without its
    extension), ``height``, ``width`` and ``annotations`` (``bbox`` [x0, y0, x1, y1] 0-based, ``bbox_mode``
    0 = XYXY_ABS, ``category_id`` 0, ``iscrowd`` 0).

    LOST's trainer (tools/train_net_for_LOST_CAD.py) opens ``file_name`` as written, from LOST's own
    folder. LOST's prepare scripts write the image root joined with the name; we also make it absolute,
    so the file opens from any working directory (without an image root it stays the mask's name)."""

    DATASET_NAME = "unseg_pseudo"  # meta_data.name: the name the file is registered under in detectron2

    def __init__(
        self, out: IO[bytes] | Path, dirname: str = "", segmentation: Segmentation = "rle", part: str = ""
    ) -> None:
        super().__init__(out, dirname, segmentation, part)
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
    """JSON lines (``--format jsonl``): one object per image, ``{"file_name", "width", "height", "boxes":
    [[x0, y0, x1, y1], ...] (0-based, exclusive end), "areas": [pixels, ...], "scores": [...]}``, the boxes
    largest first. Streams: each line is written (and flushed) as its image arrives, so `--out -` feeds a pipe."""

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


def _link(target: str, link: Path, hard: bool = False) -> None:
    """``link`` -> ``target`` (absolute), replacing what was there atomically: a symbolic link, or with
    ``hard`` a hard link; a copy where the file system has neither (or, for a hard link, the target is
    on another one). The temp name is the short one of ``mkstemp_beside``, so a 255-byte link name
    still has one and a killed run's leftover is removed by the next run."""
    link.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = mkstemp_beside(link)
    os.close(fd)
    try:
        os.unlink(tmp)  # the name stays ours (pid and random part), the link takes its place
        try:
            (os.link if hard else os.symlink)(target, tmp)
        except OSError:
            shutil.copyfile(target, tmp)
        os.replace(tmp, link)
    finally:
        # gone after a rename, but rename(2) leaves both names when they are hard links of one file
        # (a re-export's JPEGImages entry): then the temp name goes here
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class FolderWriter(LabelWriter):
    """A format written as a folder of files, which the export owns through a ``Manifest``: ``finish``
    writes the files shared by every image (``complete``), then removes those of an earlier export
    into the same folder that this one did not write."""

    writes_folder = True
    SHARED: ClassVar[tuple[str, ...]] = ()  # the files ``complete`` writes, relative to the folder

    def __init__(
        self, out: IO[bytes] | Path, dirname: str = "", segmentation: Segmentation = "rle", part: str = ""
    ) -> None:
        super().__init__(out, dirname, segmentation, part)
        self.manifest = Manifest(self.folder, part)

    def write(self, rel: str | Path, data: bytes) -> None:
        atomic_write_bytes(self.folder / rel, data)
        self.manifest.add(rel)

    def link(self, rel: str | Path, target: str, hard: bool = False) -> None:
        _link(target, self.folder / rel, hard)
        self.manifest.add(rel)

    @abstractmethod
    def complete(self) -> None:
        """Write the files shared by every image (after the last ``add``)."""

    def finish(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for rel in self.SHARED:
            self.manifest.add(rel)
        self.removed_stale = self.manifest.remove_stale()  # first: ``complete`` may list the folder
        self.complete()
        self.manifest.save()


def _yolo_label_path(rel: str) -> str:
    """Where ultralytics looks for the label of ``images/REL``: data/utils.py ``img2label_paths``
    replaces the LAST ``/images/`` of the image path with ``/labels/`` and the text after the last dot
    with ``txt``. So an image under a folder itself named ``images`` (``a/images/x.jpg``) has its label at
    ``images/a/labels/x.txt``, not ``labels/a/images/x.txt``; following the rule keeps every name."""
    head, sep, tail = f"/images/{rel}".rpartition("/images/")
    return (head + "/labels/" + tail).lstrip("/").rsplit(".", 1)[0] + ".txt"


class YoloWriter(FolderWriter):
    """An ultralytics detection dataset its trainer opens as it is (`yolo train data=OUT/data.yaml`):
    ``images/REL`` links to each image, ``labels/REL.txt`` (where ultralytics finds it:
    ``_yolo_label_path``) with one ``0 cx cy w h`` line per box, normalised to [0, 1], and ``data.yaml``
    with one class. train and val both name ``images/`` (pseudo-labels have no held-out split); the yaml
    has no ``path``, so ultralytics resolves the folders from the yaml's own folder.

    Names: every name the file system holds is written as it is (paths keep their bytes: a name that is
    not UTF-8 stays so, and ultralytics, which works on Python paths, finds it)."""

    FORMAT = "yolo"
    SHARED = ("data.yaml",)

    def __init__(
        self, out: IO[bytes] | Path, dirname: str = "", segmentation: Segmentation = "rle", part: str = ""
    ) -> None:
        if not dirname:
            raise UsageError(f"the {self.FORMAT} format needs the image root (images_root), to link the images")
        super().__init__(out, dirname, segmentation, part)

    def lines(self, img: ImageLabels) -> list[str]:
        return ["0 " + " ".join(f"{v:.6f}" for v in _normalised_cxcywh(b, img.width, img.height)) for b in img.boxes]

    def add(self, img: ImageLabels) -> None:
        self.link(Path("images", img.file_name), os.path.abspath(os.path.join(self.dirname, img.file_name)))
        self.write(_yolo_label_path(img.file_name), "".join(line + "\n" for line in self.lines(img)).encode())

    def complete(self) -> None:
        yaml = (
            "# ultralytics dataset written by `unseg boxes` (pseudo-labels): yolo train data=THIS_FILE\n"
            "train: images\nval: images\nnames:\n"
            f"  0: {CLASS_NAME}\n"
        )
        self.write("data.yaml", yaml.encode())
        # ultralytics caches labels in labels.cache, keyed by file names and sizes only: a re-export
        # with other boxes of the same byte size would be read from a stale cache.
        (self.folder / "labels.cache").unlink(missing_ok=True)


def _normalised_cxcywh(box: list[float], width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height


def _closest_vertices(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(i, j): the vertex a[i] and the vertex b[j] nearest each other."""
    import numpy as np

    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return int(i), int(j)


def join_pieces(polygons: list[np.ndarray]) -> np.ndarray:
    """The outlines of an object's pieces as ONE polygon, as ultralytics' segment format needs (one
    polygon per object line; its COCO converter, data/converter.py ``merge_multi_segment``, joins an
    object's pieces the same way): consecutive pieces are linked at their closest vertices by a bridge
    walked there and back, so the bridges have no area and every piece keeps its own outline. Under the
    even-odd rule pycocotools uses it rasterises to the union of the pieces exactly; OpenCV's fillPoly
    (ultralytics' rasteriser) adds the one-pixel line of each bridge.

    Piece k is entered at ``enter[k]``, walked all the way round, and left for piece k + 1 (and later
    returned to) at ``leave[k]``; the pieces are taken in the given order.
    """
    import numpy as np

    if len(polygons) == 1:
        return polygons[0]
    links = [_closest_vertices(a, b) for a, b in zip(polygons, polygons[1:], strict=False)]
    enter = [links[0][0]] + [j for _, j in links]
    leave = [i for i, _ in links]

    def walk(k: int) -> list[np.ndarray]:
        ring = np.roll(polygons[k], -enter[k], axis=0)  # starts where piece k is entered
        if k == len(polygons) - 1:
            return [ring, ring[:1]]  # round the last piece, back to its entry
        d = (leave[k] - enter[k]) % len(ring)
        return [ring[: d + 1], *walk(k + 1), ring[d:], ring[:1]]

    return np.concatenate(walk(0)[:-1])  # the first piece closes by itself: no repeated start


class YoloSegWriter(YoloWriter):
    """ultralytics segmentation labels: ``0 x1 y1 x2 y2 ...`` per object, its outline normalised by the
    image size (as ultralytics' own COCO converter writes COCO polygons); an object of several pieces
    (an instance mask's object) is one polygon through all of them (``join_pieces``). Names: as yolo."""

    needs_rle = True
    FORMAT = "yolo-seg"

    def lines(self, img: ImageLabels) -> list[str]:
        out = []
        for rle, box in zip(img.rles, img.boxes, strict=True):
            poly = join_pieces(rle_polygons(rle, box)) / [img.width, img.height]
            out.append("0 " + " ".join(f"{v:.6f}" for v in poly.ravel()))
        return out


def _xml_problem(text: str) -> str | None:
    """Why XML 1.0 cannot hold ``text``, or None. Its Char production (section 2.2) allows tab, line feed,
    carriage return, U+0020-U+D7FF, U+E000-U+FFFD and U+10000 up, and no escape writes anything else:
    neither other control characters nor lone surrogates, which is how Python holds file-name bytes
    that are not UTF-8."""
    for ch in text:
        c = ord(ch)
        if 0xDC80 <= c <= 0xDCFF:
            return f"bytes that are not UTF-8 (0x{c - 0xDC00:02X})"
        if not (c in (0x9, 0xA, 0xD) or 0x20 <= c <= 0xD7FF or 0xE000 <= c <= 0xFFFD or c >= 0x10000):
            return f"the character U+{c:04X}"
    return None


def _xml_escape(text: str) -> str:
    """Markup characters as entities, and a carriage return as a character reference: XML parsers turn
    a literal one into a line feed (XML 1.0 section 2.11), a reference survives."""
    return escape(text).replace("\r", "&#13;")


def _voc_id_problem(item_id: str) -> str | None:
    """Why a VOC list (ImageSets/Main/*.txt, one id a line) cannot hold ``item_id``, or None: datumaro
    (voc/base.py ``_load_subset_list``) strips each line and skips empty ones and those starting '#'."""
    if "\n" in item_id or "\r" in item_id:
        return "a line break"
    if item_id != item_id.strip():
        return "white space at its start or end"
    if item_id.startswith("#"):
        return "a leading '#' (a comment line)"
    return None


class VocWriter(FolderWriter):
    """A Pascal VOC detection dataset, as datumaro (CVAT's importer), FiftyOne and supervision read it:
    ``Annotations/ID.xml`` per image (ID: the image's relative path without its extension),
    ``ImageSets/Main/trainval.txt`` listing the IDs in that folder, ``labelmap.txt`` declaring the one
    class (datumaro refuses labels its map lacks; without the file it assumes VOC's 20 classes) and,
    with an image root, ``JPEGImages/REL``: the images as hard links (copies across file systems), since
    datumaro opens ``JPEGImages/<filename>`` and refuses a symbolic link that leads out of the folder
    (util/os_util.py ``join_within_base``, datumaro 1.13).
    VOC boxes are 1-based inclusive pixel indices: xmin = x0 + 1, xmax = x1 for our 0-based exclusive
    XYXY (the inverse of how VOC ground truth is read, io/datasets.read_voc_annotation).

    Names: XML cannot hold a name that is not UTF-8 or has a control character, and the ID list
    cannot hold one with a line break, surrounding white space or a leading '#': such an image is
    named as failed (InputError) and the export goes on. Markup characters are escaped.
    """

    SPLIT = "trainval"  # the split VOC's devkit and `unseg corloc` read by default
    SHARED = ("labelmap.txt", f"ImageSets/Main/{SPLIT}.txt")
    LABELMAP = f"# label:color_rgb:parts:actions\n{CLASS_NAME}:::\n"  # datumaro voc/format.py parse_label_map

    def add(self, img: ImageLabels) -> None:
        path = os.path.abspath(os.path.join(self.dirname, img.file_name)) if self.dirname else img.file_name
        item_id = os.path.splitext(img.file_name)[0]
        problem = _xml_problem(path) or _voc_id_problem(item_id)
        if problem:
            raise InputError(f"{path}: the VOC export cannot hold this file name: it has {problem}")
        objects = "".join(
            f"  <object>\n    <name>{CLASS_NAME}</name>\n    <pose>Unspecified</pose>\n"
            "    <truncated>0</truncated>\n    <difficult>0</difficult>\n    <bndbox>\n"
            f"      <xmin>{int(b[0]) + 1}</xmin>\n      <ymin>{int(b[1]) + 1}</ymin>\n"
            f"      <xmax>{int(b[2])}</xmax>\n      <ymax>{int(b[3])}</ymax>\n    </bndbox>\n  </object>\n"
            for b in img.boxes
        )
        xml = (
            "<annotation>\n"
            f"  <folder>JPEGImages</folder>\n  <filename>{_xml_escape(img.file_name)}</filename>\n"
            f"  <path>{_xml_escape(path)}</path>\n  <source>\n    <database>unseg pseudo-labels</database>\n"
            f"  </source>\n  <size>\n    <width>{img.width}</width>\n    <height>{img.height}</height>\n"
            "    <depth>3</depth>\n  </size>\n  <segmented>0</segmented>\n"
            f"{objects}</annotation>\n"
        )
        self.write(Path("Annotations", item_id + ".xml"), xml.encode())
        if self.dirname:
            self.link(Path("JPEGImages", img.file_name), path, hard=True)

    def complete(self) -> None:
        # the list holds every annotation in the folder, so shards writing one folder all appear in it
        ann = self.folder / "Annotations"
        found = (p.relative_to(ann).with_suffix("").as_posix() for p in ann.rglob("*.xml"))
        ids = sorted(i for i in found if not (_xml_problem(i) or _voc_id_problem(i)))  # others' files too
        labelmap, split = self.SHARED
        self.write(labelmap, self.LABELMAP.encode())
        self.write(split, "".join(i + "\n" for i in ids).encode())


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
