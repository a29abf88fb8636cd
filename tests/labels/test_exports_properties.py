"""Property-based tests (hypothesis) of the label writers read back by independent readers, and of the
name -> output path rules, over generated names (markup, control characters, bytes that are not UTF-8,
255-byte names) and generated masks. Every format either carries a name faithfully or refuses it as
one failed input (InputError), never anything else."""

from __future__ import annotations

import io
import json
import os
import posixpath
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the dev extra")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402
from scipy import ndimage  # noqa: E402

from unsegcli.errors import InputError  # noqa: E402
from unsegcli.io.datasets import read_voc_annotation  # noqa: E402
from unsegcli.io.images import IMAGE_EXTENSIONS  # noqa: E402
from unsegcli.io.labels import read_label_file  # noqa: E402
from unsegcli.io.masks import mask_path_for  # noqa: E402
from unsegcli.labels.components import rle_encode  # noqa: E402
from unsegcli.labels.formats import (  # noqa: E402
    FORMATS,
    ImageLabels,
    _yolo_label_path,
    join_pieces,
    mask_polygons,
    rle_polygons,
)

FAST = settings(max_examples=40, deadline=None)

# one path segment as a file system holds it: any bytes but '/' and NUL, as Python sees them
# (os.fsdecode: bytes that are not UTF-8 become lone surrogates), with markup, line breaks, control
# characters and Latin-1 bytes drawn often
_piece = st.one_of(
    st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)).map(str.encode),
    st.sampled_from([b"<", b">", b"&", b'"', b"]]>", b"\r", b"\n", b"\t", b"#", b" ", b"\x01", b"\xef\xbf\xbe"]),
    st.integers(0x80, 0xFF).map(lambda b: bytes([b])),
)
segment = (
    st.lists(_piece, min_size=1, max_size=8)
    .map(lambda parts: os.fsdecode(b"".join(parts)))
    .filter(lambda s: s not in (".", "..") and len(os.fsencode(s)) <= 200)
)
stem = st.one_of(segment, st.just("n" * 250))  # 250 + '.jpeg' = 255 bytes, the longest name most systems hold
rel_image = st.builds(
    lambda dirs, s, ext: posixpath.join(*dirs, s + ext),
    st.lists(segment, max_size=2),
    stem,
    st.sampled_from(IMAGE_EXTENSIONS),
)


def _labels(file_name: str, boxes: list[list[float]], w: int = 50, h: int = 40, index: int = 0) -> ImageLabels:
    return ImageLabels(
        index, file_name, w, h, boxes, [int((b[2] - b[0]) * (b[3] - b[1])) for b in boxes], [0.5] * len(boxes)
    )


box = st.builds(
    lambda x0, y0, bw, bh: [float(x0), float(y0), float(x0 + bw), float(y0 + bh)],
    st.integers(0, 40),
    st.integers(0, 30),
    st.integers(1, 10),
    st.integers(1, 10),
)


# --- name -> output path ------------------------------------------------------------------------
@FAST
@given(st.lists(rel_image, min_size=1, max_size=6, unique_by=lambda r: posixpath.splitext(r)[0]))
def test_mask_path_keeps_the_folder_and_stem_and_never_merges_two_names(rels):
    masks = [mask_path_for(r) for r in rels]
    assert len(set(masks)) == len(rels)  # distinct stems, distinct masks (same stem: scan_inputs names it)
    for rel, mask in zip(rels, masks, strict=True):
        assert mask == posixpath.splitext(rel)[0] + ".png"
        assert len(os.fsencode(posixpath.basename(mask))) <= len(os.fsencode(posixpath.basename(rel)))  # fits
        assert os.fsdecode(os.fsencode(mask)) == mask  # the same bytes on disk as the input's


@FAST
@given(st.lists(rel_image, min_size=1, max_size=6, unique_by=lambda r: posixpath.splitext(r)[0]))
def test_yolo_label_paths_are_where_ultralytics_looks_and_distinct(rels):
    paths = [_yolo_label_path(r) for r in rels]
    assert len(set(paths)) == len(rels)
    for rel, path in zip(rels, paths, strict=True):
        # ultralytics data/utils.py img2label_paths, applied to the dataset's image path
        image = f"/data/images/{rel}"
        expected = "/labels/".join(image.rsplit("/images/", 1)).rsplit(".", 1)[0] + ".txt"
        assert "/data/" + path == expected


# --- JSON formats: any name is carried --------------------------------------------------------------
def _write(format: str, images: list[ImageLabels], dirname: str = "") -> bytes:
    stream = io.BytesIO()
    writer = FORMATS[format](stream, dirname)  # type: ignore[call-arg]
    for img in images:
        writer.add(img)
    writer.finish()
    return stream.getvalue()


@FAST
@given(st.lists(st.tuples(rel_image, st.lists(box, max_size=3)), min_size=1, max_size=4))
def test_coco_and_jsonl_carry_every_name_and_box(items):
    images = [_labels(name, boxes, index=k) for k, (name, boxes) in enumerate(items)]
    for img in images:
        img.rles = [rle_encode(np.zeros((img.height, img.width), bool)) for _ in img.boxes]
    with tempfile.TemporaryDirectory() as d:
        for format in ("coco", "jsonl"):
            data = _write(format, images)
            data.decode("ascii")  # \\u escapes: any byte-safe pipe or file carries it
            path = Path(d, f"out.{format}")
            path.write_bytes(data)
            parsed = read_label_file(str(path))
            if format == "coco":
                doc = parsed.data  # type: ignore[union-attr]
                assert [i["file_name"] for i in doc["images"]] == [img.file_name for img in images]
                got = [[a["bbox"] for a in doc["annotations"] if a["image_id"] == i + 1] for i in range(len(images))]
                xywh = [[[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in img.boxes] for img in images]
                assert got == xywh
            else:
                rows = parsed.rows  # type: ignore[union-attr]
                assert [(r["file_name"], r["boxes"]) for r in rows] == [(i.file_name, i.boxes) for i in images]


@FAST
@given(st.lists(rel_image, min_size=1, max_size=4, unique_by=posixpath.basename), st.booleans())
def test_selfmask_and_lost_cad_carry_every_name(names, absolute):
    rng = np.random.default_rng(len(names))
    images = [_labels(n, [[0.0, 0.0, 5.0, 5.0]], index=k) for k, n in enumerate(names)]
    for img in images:
        img.union_rle = rle_encode(rng.random((img.height, img.width)) > 0.5)
    selfmask = json.loads(_write("selfmask", images))
    assert selfmask == {posixpath.basename(i.file_name): i.union_rle for i in images}
    for img in images:  # RLE read back by pycocotools
        m = mask_utils.decode(selfmask[posixpath.basename(img.file_name)])
        np.testing.assert_array_equal(m, mask_utils.decode(img.union_rle))
    root = "/data/imgs" if absolute else ""
    cad = json.loads(_write("lost-cad", images, root))
    for rec, img in zip(cad["dataset"], images, strict=True):
        assert rec["file_name"] == (os.path.join(root, img.file_name) if root else img.file_name)
        assert rec["annotations"][0]["bbox"] == img.boxes[0]


# --- VOC: a name is carried exactly or refused as one input --------------------------------------
@FAST
@given(rel_image, st.lists(box, max_size=3))
def test_voc_carries_a_name_exactly_or_refuses_that_image(name, boxes):
    with tempfile.TemporaryDirectory() as d:
        writer = FORMATS["voc"](Path(d))  # type: ignore[call-arg]
        try:
            writer.add(_labels(name, boxes))
        except InputError as e:
            assert "cannot hold this file name" in e.message
            stem = posixpath.splitext(name)[0]
            unsafe = any(
                0xDC80 <= ord(c) <= 0xDCFF or (ord(c) < 0x20 and c not in "\t\n\r") or c in "\ufffe\uffff" for c in name
            )
            assert unsafe or stem != stem.strip() or stem.startswith("#") or "\n" in stem or "\r" in stem
            return
        writer.finish()
        xml = Path(d, "Annotations", posixpath.splitext(name)[0] + ".xml")
        assert ET.parse(xml).getroot().findtext("filename") == name  # markup and carriage returns survive
        file_name, w, h, got, _ = read_voc_annotation(xml)
        assert (file_name, w, h) == (name, 50, 40)
        np.testing.assert_array_equal(got.reshape(-1, 4), np.array(boxes).reshape(-1, 4))
        listed = Path(d, "ImageSets", "Main", "trainval.txt").read_text(encoding="utf-8")
        assert [line.strip() for line in listed.splitlines()] == [posixpath.splitext(name)[0]]


# --- yolo: boxes and names on disk ----------------------------------------------------------------
@FAST
@given(rel_image, st.lists(box, max_size=3))
def test_yolo_boxes_come_back_and_names_keep_their_bytes(name, boxes):
    with tempfile.TemporaryDirectory() as d:
        writer = FORMATS["yolo"](Path(d, "out"), d)  # type: ignore[call-arg]
        writer.add(_labels(name, boxes))
        writer.finish()
        assert os.readlink(Path(d, "out", "images", name)) == os.path.join(d, name)
        rows = np.array(Path(d, "out", _yolo_label_path(name)).read_text().split(), float).reshape(-1, 5)
        cx, cy, bw, bh = (rows[:, 1:] * [50, 40, 50, 40]).T
        back = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        np.testing.assert_allclose(back, np.array(boxes).reshape(-1, 4), atol=1e-3)


# --- masks: COCO RLE / polygon and yolo-seg rasterise back ----------------------------------------
masks = st.builds(
    lambda seed, h, w, p: np.random.default_rng(seed).random((h, w)) < p,
    st.integers(0, 2**16),
    st.integers(3, 24),
    st.integers(3, 24),
    st.floats(0.2, 0.8),
)


def _decode_polygons(polygons: list[np.ndarray], h: int, w: int) -> np.ndarray:
    rles = mask_utils.frPyObjects([p.ravel().tolist() for p in polygons], h, w)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


@FAST
@given(masks)
def test_rle_and_polygons_of_a_component_decode_to_it(mask):
    """One 8-connected component, holes filled (polygons keep outer boundaries only): the RLE decodes
    to it, and its polygon (as coco --segmentation polygon writes it) rasterises to it exactly."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return
    comp = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:])))
    rle = rle_encode(comp)
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), comp)
    ys, xs = np.nonzero(comp)
    polys = rle_polygons(rle, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    assert len(polys) == 1
    np.testing.assert_array_equal(_decode_polygons(polys, *comp.shape), comp)


@FAST
@given(masks)
def test_yolo_seg_polygon_of_an_object_of_many_pieces_covers_every_piece(mask):
    """All pieces of a mask as one object: the joined polygon rasterises (even-odd, pycocotools) to the
    union of the pieces' outlines, i.e. every piece, holes filled."""
    polys = mask_polygons(mask)
    if not polys:
        return
    joined = join_pieces(polys)
    expected = _decode_polygons(polys, *mask.shape)  # each piece on its own, merged
    np.testing.assert_array_equal(_decode_polygons([joined], *mask.shape), expected)
    assert (expected | ~mask).all()  # and the pieces cover the mask
