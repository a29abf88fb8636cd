"""The standard benchmarks in their usual folder layouts under one data folder, and the published numbers.

``discover(data)`` finds each benchmark of ``BENCHMARKS`` under ``data`` in the layout its official download
extracts to (and the common variants other repositories use), and lists the ones it cannot find with where
to get them. Nothing is downloaded. A found benchmark says which images its protocol runs on, in the
protocol's order, with the key each image has in the ground truth, so a ``--limit`` takes a prefix of both.

``published()`` reads ``unsegcli/data/published.json``: the numbers papers report, each with its source.
Torch-free.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError, UsageError
from .datasets import COCO20K_HINT, coco_id_from_filename, find_voc_year_dir
from .images import IMAGE_EXTENSIONS
from .pairing import FileIndex, key_of

Protocol = Literal["corloc", "saliency", "detection"]


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    protocol: Protocol
    title: str
    how: str  # where to get it and where to put it under the data folder


_VOC_SITE = "http://host.robots.ox.ac.uk/pascal/VOC/"
BENCHMARKS: dict[str, BenchmarkSpec] = {
    s.name: s
    for s in [
        BenchmarkSpec(
            "voc07", "corloc", "VOC07 trainval",
            f"VOCtrainval_06-Nov-2007.tar from {_VOC_SITE}voc2007/, extracted in DATA (DATA/VOCdevkit/VOC2007)",
        ),
        BenchmarkSpec(
            "voc12", "corloc", "VOC12 trainval",
            f"VOCtrainval_11-May-2012.tar from {_VOC_SITE}voc2012/, extracted in DATA (DATA/VOCdevkit/VOC2012)",
        ),
        BenchmarkSpec(
            "coco20k", "corloc", "COCO20k",
            "train2014.zip and annotations_trainval2014.zip from https://cocodataset.org/#download extracted in "
            "DATA/COCO (train2014/, annotations/instances_train2014.json), and LOST's datasets/"
            "coco_20k_filenames.txt (github.com/valeoai/LOST) in DATA/COCO",
        ),
        BenchmarkSpec(
            "ecssd", "saliency", "ECSSD",
            "images.zip and ground_truth_mask.zip from "
            "https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/dataset.html, extracted in DATA/ECSSD "
            "(images/, ground_truth_mask/)",
        ),
        BenchmarkSpec(
            "duts-te", "saliency", "DUTS-TE",
            "DUTS-TE.zip from http://saliencydetection.net/duts/, extracted in DATA (DATA/DUTS-TE/DUTS-TE-Image, "
            "DUTS-TE-Mask)",
        ),
        BenchmarkSpec(
            "dut-omron", "saliency", "DUT-OMRON",
            "the images and the pixel-wise ground truth from http://saliencydetection.net/dut-omron/, extracted "
            "in DATA/DUT-OMRON (DUT-OMRON-image/, pixelwiseGT-new-PNG/)",
        ),
        BenchmarkSpec(
            "coco-val2017", "detection", "COCO val2017",
            "val2017.zip and annotations_trainval2017.zip from https://cocodataset.org/#download extracted in "
            "DATA/COCO (val2017/, annotations/instances_val2017.json)",
        ),
    ]
}  # fmt: skip

# folder names each layout is known by: the official archive's first, then the variants of TokenCut, SelfMask,
# FOUND and MOVE's data loaders
_VOC_DIRS = ("VOCdevkit/VOC{year}", "VOC{year}/VOCdevkit/VOC{year}", "VOC{year}")
_COCO_DIRS = ("COCO", "coco", "MSCOCO", "mscoco")
_COCO20K_LIST = "coco_20k_filenames.txt"
_SALIENCY: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # name -> (dataset folders, image folders inside, GT folders inside)
    "ecssd": (("ECSSD",), ("images", "img", "Imgs", "image"), ("ground_truth_mask", "gt", "GT", "masks", "mask")),
    "duts-te": (
        ("DUTS-TE", "DUTS/DUTS-TE"),
        ("DUTS-TE-Image", "images", "img", "Image"),
        ("DUTS-TE-Mask", "gt", "GT", "masks", "Mask"),
    ),
    "dut-omron": (
        ("DUT-OMRON", "DUT_OMRON", "DUTOMRON"),
        ("DUT-OMRON-image", "images", "img", "image"),
        ("pixelwiseGT-new-PNG", "DUT-OMRON-GT", "gt", "GT", "masks"),
    ),
}


@dataclass
class Benchmark:
    """A benchmark found under the data folder: the images its protocol runs on and its ground truth."""

    spec: BenchmarkSpec
    images: Path  # the image root; ``files`` are relative to it (and so are the masks' names)
    files: list[str]  # the protocol's images, in its order
    keys: list[str]  # each file's key in the ground truth: VOC id, COCO image id, GT mask relative path
    gt: Path  # VOC: the VOC20xx folder; COCO: the instances JSON; saliency: the GT mask folder
    image_list: Path | None = None  # COCO20k's coco_20k_filenames.txt
    problems: list[str] = field(default_factory=list)  # GT entries without an image, ambiguous pairs

    @property
    def name(self) -> str:
        return self.spec.name

    def limited(self, limit: int | None) -> tuple[list[str], list[str]]:
        """The first ``limit`` files and their keys (all of them for None)."""
        n = len(self.files) if limit is None else limit
        return self.files[:n], self.keys[:n]


@dataclass
class Discovery:
    found: list[Benchmark]
    missing: list[BenchmarkSpec]


def _existing(base: Path, names: tuple[str, ...], test) -> Path | None:
    for name in names:
        p = base / name
        if test(p):
            return p
    return None


def _voc(data: Path, spec: BenchmarkSpec, year: str) -> Benchmark | None:
    def complete(p: Path) -> bool:
        return (p / "JPEGImages").is_dir() and (p / "ImageSets" / "Main" / "trainval.txt").is_file()

    base = _existing(data, tuple(d.format(year=year) for d in _VOC_DIRS), complete)
    if base is None:
        return None
    base = find_voc_year_dir(base, year)
    ids_file = base / "ImageSets" / "Main" / "trainval.txt"
    try:  # one id a line, as io.datasets.read_voc reads it
        ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the split file {ids_file} ({e})") from None
    # LOST's VOC loader reads JPEGImages/<id>.jpg
    return Benchmark(spec, base / "JPEGImages", [f"{i}.jpg" for i in ids], ids, base)


def _coco_root(data: Path, images: str, ann: str) -> Path | None:
    return _existing(data, _COCO_DIRS, lambda p: (p / images).is_dir() and (p / "annotations" / ann).is_file())


def _coco20k(data: Path, spec: BenchmarkSpec) -> Benchmark | None:
    root = _coco_root(data, "train2014", "instances_train2014.json")
    if root is None:
        return None
    image_list = _existing(root, (_COCO20K_LIST,), Path.is_file) or _existing(data, (_COCO20K_LIST,), Path.is_file)
    if image_list is None:
        raise UsageError(f"COCO train2014 found in {root} but not {_COCO20K_LIST}", COCO20K_HINT)
    names = [s.strip() for s in image_list.read_text().splitlines() if s.strip()]
    files = [f"{os.path.basename(n)}" for n in names]
    keys = [str(coco_id_from_filename(n)) for n in names]
    return Benchmark(
        spec, root / "train2014", files, keys, root / "annotations" / "instances_train2014.json", image_list
    )


def _coco_val2017(data: Path, spec: BenchmarkSpec) -> Benchmark | None:
    root = _coco_root(data, "val2017", "instances_val2017.json")
    if root is None:
        return None
    index = FileIndex(str(root / "val2017"), IMAGE_EXTENSIONS)
    files = [it.rel for it in index.items]
    return Benchmark(spec, root / "val2017", files, files, root / "annotations" / "instances_val2017.json")


def _saliency(data: Path, spec: BenchmarkSpec) -> Benchmark | None:
    folders, image_dirs, gt_dirs = _SALIENCY[spec.name]
    for folder in folders:
        base = data / folder
        images = _existing(base, image_dirs, Path.is_dir)
        gt = _existing(base, gt_dirs, Path.is_dir)
        if images is None or gt is None:
            continue
        # the GT masks, as `unseg eval saliency` lists them, each paired with its image by io.pairing's rule
        masks = FileIndex(str(gt), (".png",)).items
        index = FileIndex(str(images), IMAGE_EXTENSIONS)
        files, keys, problems = [], [], []
        for m in masks:
            found = index.find(key_of(m.rel))
            if found.item is None:
                problems.append(found.problem(m.path, "image", str(images)))
            else:
                files.append(found.item.rel)
                keys.append(m.rel)
        return Benchmark(spec, images, files, keys, gt, problems=problems)
    return None


def discover(data: str | Path, names: list[str] | None = None) -> Discovery:
    """The benchmarks of ``names`` (default: all of ``BENCHMARKS``) found under ``data``, and those missing."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UsageError(f"the data folder {data} is not a folder")
    unknown = [n for n in names or () if n not in BENCHMARKS]
    if unknown:
        raise UsageError(f"unknown benchmark {', '.join(unknown)}", f"choose from {', '.join(BENCHMARKS)}")
    out = Discovery([], [])
    for name in names or list(BENCHMARKS):
        spec = BENCHMARKS[name]
        if spec.protocol == "saliency":
            found = _saliency(root, spec)
        elif name == "coco20k":
            found = _coco20k(root, spec)
        elif name == "coco-val2017":
            found = _coco_val2017(root, spec)
        else:
            found = _voc(root, spec, "2007" if name == "voc07" else "2012")
        if found is None:
            out.missing.append(spec)
        else:
            out.found.append(found)
    return out


# ------------------------------------------------------------------------------------ published numbers


@dataclass(frozen=True)
class Published:
    """One published result: a method (and backbone) on a benchmark, with or without a refinement."""

    method: str
    backbone: str | None  # the backbone's known-weights name, or None for a trained checkpoint
    dataset: str
    refine: str | None  # "bilateral" for the papers' "+Bilateral" / "+BS" rows
    metrics: dict[str, float]  # corloc (%), or accuracy / iou / max_fbeta (fractions)
    source: str  # paper and table (or repository file) the numbers are copied from


def published() -> list[Published]:
    """Every published number of ``unsegcli/data/published.json``."""
    text = resources.files("unsegcli").joinpath("data/published.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return [
        Published(r["method"], r.get("backbone"), r["dataset"], r.get("refine"), dict(r["metrics"]), r["source"])
        for r in data["results"]
    ]
