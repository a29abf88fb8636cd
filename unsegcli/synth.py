"""Procedurally generated images with known masks: textured backgrounds and 1-3 shaded shapes.

Deterministic for a seed (image i uses the generator seeded with [seed, i]), so every command of
the pipeline has a fixture with exact answers: masks (saliency GT), VOC XML boxes (CorLoc).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .io.files import Manifest, atomic_write_bytes, dumps_json
from .io.masks import encode_png


@dataclass(frozen=True)
class SynthSample:
    image: np.ndarray  # HxWx3 uint8
    mask: np.ndarray  # HxW uint8, 0/255 union of the shapes
    boxes: list[tuple[int, int, int, int]]  # per visible shape, 0-based XYXY exclusive


def _texture(rng, h, w, base, contrast) -> np.ndarray:
    """Smooth colour noise at a random scale plus stripes: a background with structure."""
    scale = int(rng.integers(4, 16))
    small = rng.normal(0, 1, (max(h // scale, 2), max(w // scale, 2), 3)).astype(np.float32)
    tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang, freq = rng.uniform(0, np.pi), rng.uniform(0.05, 0.4)
    stripes = np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * freq)[..., None]
    img = base[None, None, :] + contrast * (0.6 * tex + 0.4 * stripes)
    return img


def _shape_mask(rng, h, w, target_area: float) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    kind = rng.integers(0, 3)
    side = np.sqrt(target_area * h * w)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    if kind == 0:  # ellipse
        ax = side * rng.uniform(0.45, 0.8)
        ay = target_area * h * w / (np.pi * ax)
        cv2.ellipse(
            m, (int(cx), int(cy)), (max(int(ax), 2), max(int(ay), 2)), float(rng.uniform(0, 180)), 0, 360, 1, -1
        )
    elif kind == 1:  # rotated rectangle
        aspect = rng.uniform(0.5, 2.0)
        rw, rh = side * np.sqrt(aspect), side / np.sqrt(aspect)
        pts = cv2.boxPoints(((cx, cy), (rw, rh), float(rng.uniform(0, 90)))).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    else:  # star-ish polygon
        n = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = side * 0.65 * rng.uniform(0.6, 1.2, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    return m.astype(bool)


def generate(seed: int, index: int, size: int) -> SynthSample:
    rng = np.random.default_rng([seed, index])
    h = size
    w = int(round(size * rng.choice([1.0, 4 / 3, 3 / 4])))
    bg_base = rng.uniform(40, 200, 3)
    img = _texture(rng, h, w, bg_base, rng.uniform(10, 35))
    mask = np.zeros((h, w), bool)
    shapes: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, 4))):
        m = _shape_mask(rng, h, w, rng.uniform(0.05, 0.4) / 2)
        if m.sum() < 16:
            continue
        colour = bg_base + rng.choice([-1, 1], 3) * rng.uniform(50, 110, 3)
        fg = _texture(rng, h, w, colour, rng.uniform(5, 20))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        shade = 1.0 + 0.25 * ((xx - w / 2) / w - (yy - h / 2) / h)  # directional light
        img = np.where(m[..., None], fg * shade[..., None], img)
        for s in shapes:  # later shapes occlude earlier ones
            s &= ~m
        shapes.append(m)
        mask |= m
    image = np.clip(img, 0, 255).astype(np.uint8)
    boxes = []
    for s in shapes:
        ys, xs = np.nonzero(s)
        if len(xs):
            boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return SynthSample(image, mask.astype(np.uint8) * 255, boxes)


def _voc_xml(stem: str, w: int, h: int, boxes) -> str:
    # VOC boxes are 1-based inclusive pixel indices: xmin = x0 + 1, xmax = x1 (see io/datasets.py)
    objs = "".join(
        f"<object><name>shape</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for x0, y0, x1, y1 in boxes
    )
    return (
        f"<annotation><folder>VOC2007</folder><filename>{stem}.jpg</filename><size><width>{w}</width>"
        f"<height>{h}</height><depth>3</depth></size><segmented>0</segmented>{objs}</annotation>\n"
    )


def _coco_document(samples: list[tuple[str, SynthSample]]) -> dict:
    """A COCO instances document: every shape one annotation (category 1), its segmentation the shape's visible
    pixels as RLE (mask AP needs them), its box the tight box."""
    from pycocotools import mask as mask_utils

    images: list[dict] = []
    annotations: list[dict] = []
    for image_id, (name, s) in enumerate(samples, start=1):
        h, w = s.mask.shape
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for x0, y0, x1, y1 in s.boxes:
            obj = np.zeros((h, w), np.uint8)
            obj[y0:y1, x0:x1] = s.mask[y0:y1, x0:x1] > 0
            rle = mask_utils.encode(np.asfortranarray(obj))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(obj.sum()),
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
            })  # fmt: skip
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "shape"}]}


# the saliency benchmarks in their official archives' layouts (io/benchmarks.py finds them): folder, images, GT
SALIENCY_LAYOUTS = (
    ("ECSSD", "images", "ground_truth_mask"),
    ("DUTS-TE", "DUTS-TE-Image", "DUTS-TE-Mask"),
    ("DUT-OMRON", "DUT-OMRON-image", "pixelwiseGT-new-PNG"),
)


def write_dataset(
    out: str | Path, n: int, size: int, seed: int, voc: bool = False, on_progress=None, benchmarks: bool = False
) -> int:
    """OUT/images/<stem>.png, OUT/masks/<stem>.png (0/255: also the saliency GT) and, with voc,
    OUT/VOCdevkit/VOC2007/{JPEGImages, Annotations, ImageSets/Main/trainval.txt}. With ``benchmarks``, the same
    samples also in every layout `unseg bench` finds: VOC2007 and VOC2012 (VOCdevkit), COCO train2014 with
    LOST's 20k list, COCO val2017 (instances JSON with RLE masks), ECSSD, DUTS-TE and DUT-OMRON. The folder's
    files are owned through a ``Manifest``: a re-run (smaller, another seed, without voc) removes the files of
    the earlier one it did not write again. Returns how many it removed."""
    out = Path(out)
    owned = Manifest(out)
    stems = [f"synth_{seed}_{i:06d}" for i in range(n)]
    vocs = [Path("VOCdevkit", "VOC2007")] if voc or benchmarks else []
    vocs += [Path("VOCdevkit", "VOC2012")] if benchmarks else []
    coco: dict[str, list[tuple[str, SynthSample]]] = {"train2014": [], "val2017": []}

    def write(rel: Path, data: bytes) -> None:
        atomic_write_bytes(out / rel, data)
        owned.add(rel)

    for i, stem in enumerate(stems):
        s = generate(seed, i, size)
        write(Path("images", f"{stem}.png"), encode_png(s.image[:, :, ::-1]))
        write(Path("masks", f"{stem}.png"), encode_png(s.mask))
        jpg = cv2.imencode(".jpg", s.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        for voc_dir in vocs:
            write(voc_dir / "JPEGImages" / f"{stem}.jpg", jpg)
            h, w = s.mask.shape
            write(voc_dir / "Annotations" / f"{stem}.xml", _voc_xml(stem, w, h, s.boxes).encode())
        if benchmarks:
            for split, prefix in (("train2014", "COCO_train2014_"), ("val2017", "")):
                name = f"{prefix}{i + 1:012d}.jpg"  # COCO's names: the image id, zero-padded
                write(Path("COCO", split, name), jpg)
                coco[split].append((name, s))
            for folder, images, gt in SALIENCY_LAYOUTS:
                write(Path(folder, images, f"{stem}.jpg"), jpg)
                write(Path(folder, gt, f"{stem}.png"), encode_png(s.mask))
        if on_progress:
            on_progress(1)
    for voc_dir in vocs:
        write(voc_dir / "ImageSets" / "Main" / "trainval.txt", ("\n".join(stems) + "\n").encode())
    if benchmarks:
        for split, samples in coco.items():
            write(Path("COCO", "annotations", f"instances_{split}.json"), dumps_json(_coco_document(samples)))
        listing = "".join(f"train2014/{name}\n" for name, _ in coco["train2014"])
        write(Path("COCO", "coco_20k_filenames.txt"), listing.encode())  # LOST's list: paths under COCO/
    os.makedirs(out, exist_ok=True)
    removed = owned.remove_stale()
    owned.save()
    return removed
