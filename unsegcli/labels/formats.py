"""Pseudo-label output formats: one writer class per format, all listed in ``FORMATS``.

- coco: what CutLER / detectron2's ``register_coco_instances`` read (boxes XYWH here and only here;
  everything upstream is XYXY), one RLE per component.
- selfmask: SelfMask's ``{basename: RLE of the union of the kept components}``.
- lost-cad: LOST's CAD list-of-dicts with detectron2 ``meta_data``.
- jsonl: one JSON line per image, streamed as the labels arrive.

Adding a format means adding a writer class here, its name to ``LabelFormat`` and ``FORMATS``. A writer
declares what each image must carry (``needs_rle``, ``needs_union``) so the runner computes only
that, and whether its output is one file (``writes_folder = False``: it gets a binary stream, stdout
for '-', made atomic by the runner) or a folder (``True``: it gets the output path and writes the
folder's files itself, each atomically through ``unsegcli.io.files``).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar, Literal

from ..errors import UsageError

LabelFormat = Literal["coco", "selfmask", "lost-cad", "jsonl"]
CATEGORY = {"id": 1, "name": "fg", "supercategory": "fg"}


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


def _dumps(obj: object) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def xyxy_to_xywh(box: list[float]) -> list[float]:
    x0, y0, x1, y1 = box
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def coco_dataset(images: list[dict], annotations: list[dict]) -> dict:
    """The COCO document around images and annotations (also what `merge` writes)."""
    return {
        "info": {"description": "unseg pseudo-labels (MOVE)"},
        "images": images,
        "annotations": annotations,
        "categories": [dict(CATEGORY)],
    }


class LabelWriter(ABC):
    """Receives every image's labels in input order (``add``), then ``finish`` completes the output."""

    needs_rle: ClassVar[bool] = False  # ImageLabels.rles: one RLE per kept component
    needs_union: ClassVar[bool] = False  # ImageLabels.union_rle: RLE of their union
    writes_folder: ClassVar[bool] = False  # True: ``out`` is the output folder's Path, else a binary stream

    def __init__(self, out: IO[bytes] | Path, dirname: str = "") -> None:
        self.out = out
        self.dirname = dirname  # the image root the file names are relative to ('' when unknown)

    @abstractmethod
    def add(self, img: ImageLabels) -> None: ...

    def finish(self) -> None:  # noqa: B027 - streaming writers have nothing left to write
        """Complete the output after the last image."""

    @property
    def stream(self) -> IO[bytes]:
        if isinstance(self.out, Path):
            raise TypeError(f"{type(self).__name__} writes one file but was given a folder")
        return self.out


class CocoWriter(LabelWriter):
    needs_rle = True

    def __init__(self, out: IO[bytes] | Path, dirname: str = "") -> None:
        super().__init__(out, dirname)
        self.images: list[dict] = []
        self.annotations: list[dict] = []

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
                "segmentation": rle,
                "score": float(s),
            }
            for k, (b, a, s, rle) in enumerate(zip(img.boxes, img.areas, img.scores, img.rles, strict=True))
        )

    def finish(self) -> None:
        self.stream.write(_dumps(coco_dataset(self.images, self.annotations)))


class SelfMaskWriter(LabelWriter):
    needs_union = True

    def __init__(self, out: IO[bytes] | Path, dirname: str = "") -> None:
        super().__init__(out, dirname)
        self.entries: dict[str, dict | None] = {}

    def add(self, img: ImageLabels) -> None:
        key = os.path.basename(img.file_name)
        if key in self.entries:
            raise UsageError(f"two images share the basename '{key}', which SelfMask's format keys by")
        self.entries[key] = img.union_rle

    def finish(self) -> None:
        self.stream.write(_dumps(self.entries))


class LostCadWriter(LabelWriter):
    DATASET_NAME = "unseg_pseudo"  # meta_data.name: the name the file is registered under in detectron2

    def __init__(self, out: IO[bytes] | Path, dirname: str = "") -> None:
        super().__init__(out, dirname)
        self.records: list[dict] = []

    def add(self, img: ImageLabels) -> None:
        self.records.append(
            {
                "file_name": img.file_name,
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


FORMATS: dict[LabelFormat, type[LabelWriter]] = {
    "coco": CocoWriter,
    "selfmask": SelfMaskWriter,
    "lost-cad": LostCadWriter,
    "jsonl": JsonlWriter,
}


def writer_class(format: str) -> type[LabelWriter]:
    if format not in FORMATS:
        raise UsageError(f"unknown label format '{format}'", f"use one of {', '.join(FORMATS)}")
    return FORMATS[format]
