"""Exports (yolo, yolo-seg, voc, coco polygons, lost-cad paths) read back by independent readers, and the
box filters with hand-counted answers. ultralytics' own dataset check: benchmarks/check_exports.py."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from unsegcli.errors import UsageError
from unsegcli.io.datasets import read_voc_annotation
from unsegcli.labels.formats import mask_polygons
from unsegcli.labels.merge import merge_files
from unsegcli.labels.runner import BoxOptions, label_files, plan_tasks

from ..helpers import random_image

H, W = 64, 80
# Objects of a.png: (name, value written in the mask, bool mask). Scores are value / 255.
A_BOX = [5.0, 5.0, 31.0, 21.0]  # rows 5..20, cols 5..30
C_BOX = [10.0, 45.0, 26.0, 61.0]


def _a_objects() -> list[tuple[str, int, np.ndarray]]:
    rect_a = np.zeros((H, W), bool)
    rect_a[5:21, 5:31] = True
    disk_b = np.zeros((H, W), np.uint8)
    cv2.circle(disk_b, (55, 40), 8, 1, -1)
    rect_c = np.zeros((H, W), bool)
    rect_c[45:61, 10:26] = True
    tiny_d = np.zeros((H, W), bool)
    tiny_d[0:2, 78:80] = True  # 4 pixels: under 1% of 64 * 80
    return [("a", 250, rect_a), ("b", 200, disk_b.astype(bool)), ("c", 150, rect_c), ("d", 255, tiny_d)]


def _notched() -> np.ndarray:
    """A U: two 20-pixel posts joined at the bottom, one pixel apart (the notch must survive)."""
    m = np.zeros((H, W), bool)
    m[10:40, 20:30] = True
    m[10:40, 31:41] = True
    m[40:50, 20:41] = True
    return m


def _dataset(root: Path) -> tuple[Path, Path]:
    """images/ (a.jpg, sub/n.png, empty.png) and masks/ with the objects above."""
    imgs, masks = root / "images", root / "masks"
    (imgs / "sub").mkdir(parents=True)
    (masks / "sub").mkdir(parents=True)
    a = np.zeros((H, W), np.uint8)
    for _, value, m in _a_objects():
        a[m] = value
    for rel, mask in (("a", a), ("sub/n", _notched().astype(np.uint8) * 255), ("empty", np.zeros((H, W), np.uint8))):
        Image.fromarray(mask).save(masks / f"{rel}.png")
    Image.fromarray(random_image(H, W, 1)).save(imgs / "a.jpg")
    Image.fromarray(random_image(H, W, 2)).save(imgs / "sub" / "n.png")
    Image.fromarray(random_image(H, W, 3)).save(imgs / "empty.png")
    return imgs, masks


def _export(root: Path, format: str, out: Path, opts: BoxOptions | None = None, images: str | None = None, **kw):
    imgs, masks = root / "images", root / "masks"
    plan = plan_tasks([str(masks)], images or str(imgs))
    return label_files(plan, str(out), format, opts or BoxOptions(multi=True), dirname=images or str(imgs), **kw)


@pytest.fixture
def data(tmp_path) -> Path:
    _dataset(tmp_path)
    return tmp_path


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _coco_raster(polygons: list[list[float]], h: int = H, w: int = W) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)


# --- polygons -------------------------------------------------------------------------------------
def test_polygon_of_a_block_is_its_four_pixel_corners():
    m = np.zeros((8, 8), bool)
    m[2:5, 1:3] = True  # rows 2..4, cols 1..2: continuous [1, 3] x [2, 5]
    (poly,) = mask_polygons(m)
    assert sorted(map(tuple, poly.tolist())) == [(1.0, 2.0), (1.0, 5.0), (3.0, 2.0), (3.0, 5.0)]


def test_polygons_rasterise_back_to_the_mask_exactly():
    for _, _, m in [*_a_objects(), ("u", 0, _notched())]:
        polys = mask_polygons(m)
        assert len(polys) == 1
        np.testing.assert_array_equal(_coco_raster([polys[0].ravel().tolist()]), m)
    diagonal = np.zeros((6, 6), bool)
    diagonal[[1, 2, 3], [1, 2, 3]] = True  # 8-connected through corners only: one outline, exact
    (poly,) = mask_polygons(diagonal)
    np.testing.assert_array_equal(_coco_raster([poly.ravel().tolist()], 6, 6), diagonal)


# --- yolo -----------------------------------------------------------------------------------------
def test_yolo_dataset_links_images_and_boxes_come_back_within_a_pixel(data):
    out = data / "yolo"
    counts = _export(data, "yolo", out)
    assert (counts.images, counts.boxes, counts.empty) == (3, 4, 1)
    assert (out / "data.yaml").read_text().splitlines()[1:] == ["train: images", "val: images", "names:", "  0: object"]
    for rel in ("a.jpg", "sub/n.png", "empty.png"):
        assert (out / "images" / rel).resolve() == (data / "images" / rel).resolve()
    assert (out / "labels" / "empty.txt").read_text() == ""
    rows = np.loadtxt(out / "labels" / "a.txt", ndmin=2)
    assert (rows[:, 0] == 0).all()
    cx, cy, w, h = (rows[:, 1:] * [W, H, W, H]).T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    # sorted by box area: rect a (26x16), disk b (17x17), rect c (16x16)
    expected = np.array([A_BOX, [47.0, 32.0, 64.0, 49.0], C_BOX])
    assert np.abs(boxes - expected).max() < 1.0


def test_yolo_seg_polygons_rasterise_back_to_each_component(data):
    out = data / "yolo-seg"
    _export(data, "yolo-seg", out)
    objects = {"a": [m for _, _, m in _a_objects()[:3]], "sub/n": [_notched()]}
    for rel, masks in objects.items():
        lines = (out / "labels" / f"{rel}.txt").read_text().splitlines()
        assert len(lines) == len(masks)
        rastered = []
        for line in lines:
            values = np.array(line.split()[1:], float).reshape(-1, 2) * [W, H]
            rastered.append(_coco_raster([values.ravel().tolist()]))
        for m in masks:  # each component matches one polygon, in whatever order
            assert max(_iou(r, m) for r in rastered) >= 0.95


def test_yolo_needs_an_image_root(data, cli):
    with pytest.raises(UsageError, match="image root"):
        label_files(plan_tasks([str(data / "masks")], None), str(data / "y"), "yolo", BoxOptions())
    res = cli("boxes", data / "masks", "--format", "yolo", "--out", data / "y")
    assert res.exit_code == 2 and "needs --images" in res.stderr
    res = cli("boxes", data / "masks", "--format", "voc", "--segmentation", "polygon", "--out", data / "v")
    assert res.exit_code == 2 and "--segmentation" in res.stderr


# --- voc ------------------------------------------------------------------------------------------
def test_voc_xml_parses_to_the_same_boxes(data):
    out = data / "voc"
    _export(data, "voc", out)
    name, width, height, boxes, hard = read_voc_annotation(out / "Annotations" / "a.xml")  # LOST's reading rule
    assert (name, width, height) == ("a.jpg", W, H) and not hard.any()
    np.testing.assert_array_equal(boxes, [A_BOX, [47.0, 32.0, 64.0, 49.0], C_BOX])
    sub = read_voc_annotation(out / "Annotations" / "sub" / "n.xml")
    assert sub[0] == "sub/n.png" and sub[3].tolist() == [[20.0, 10.0, 41.0, 50.0]]  # JPEGImages/<filename>
    assert read_voc_annotation(out / "Annotations" / "empty.xml")[3].shape == (0, 4)
    assert (out / "ImageSets" / "Main" / "trainval.txt").read_text().split() == ["a", "empty", "sub/n"]


# --- coco -----------------------------------------------------------------------------------------
def _load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_coco_polygons_load_in_pycocotools_and_match_the_rle_masks(data):
    _export(data, "coco", data / "rle.json")
    _export(data, "coco", data / "poly.json", segmentation="polygon")
    rle, poly = _load_coco(data / "rle.json"), _load_coco(data / "poly.json")
    for doc in (rle.dataset, poly.dataset):  # what CVAT's importer asks for
        assert doc["licenses"] == [{"id": 0, "name": "", "url": ""}] and doc["info"]["contributor"] == "unseg"
    assert len(poly.anns) == len(rle.anns) == 4
    for k, ann in poly.anns.items():
        assert isinstance(ann["segmentation"], list) and ann["bbox"] == rle.anns[k]["bbox"]
        np.testing.assert_array_equal(poly.annToMask(ann), rle.annToMask(rle.anns[k]))


def test_merge_reads_polygon_coco_parts(data):
    _export(data, "coco", data / "poly.json", segmentation="polygon")
    counts = merge_files([str(data / "poly.json"), str(data / "poly.json")], str(data / "merged.json"))
    assert (counts.images, counts.boxes) == (3, 4)
    merged, part = (json.loads((data / f).read_text()) for f in ("merged.json", "poly.json"))
    assert merged["licenses"] == part["licenses"]
    assert [a["segmentation"] for a in merged["annotations"]] == [a["segmentation"] for a in part["annotations"]]


def test_segmentation_applies_to_coco_only(data):
    with pytest.raises(UsageError, match="coco format only"):
        _export(data, "jsonl", data / "x.jsonl", segmentation="polygon")


# --- filters --------------------------------------------------------------------------------------
def _jsonl_boxes(path: Path) -> dict[str, list]:
    return {r["file_name"]: r["boxes"] for r in map(json.loads, path.read_text().splitlines())}


def test_filters_remove_known_boxes_and_count_them(data):
    # a.png: a (score .98), b (.78), c (.59), d (too small); n.png: one U (score 1)
    counts = _export(data, "jsonl", data / "all.jsonl")
    assert counts.removed == {"min_area": 1, "min_score": 0, "max_boxes": 0} and counts.boxes == 4

    counts = _export(data, "jsonl", data / "s.jsonl", BoxOptions(multi=True, min_score=0.7))
    assert counts.removed == {"min_area": 1, "min_score": 1, "max_boxes": 0}
    assert _jsonl_boxes(data / "s.jsonl")["a.jpg"] == [A_BOX, [47.0, 32.0, 64.0, 49.0]]

    counts = _export(data, "jsonl", data / "m.jsonl", BoxOptions(multi=True, max_boxes=2))
    assert counts.removed == {"min_area": 1, "min_score": 0, "max_boxes": 1}
    assert _jsonl_boxes(data / "m.jsonl")["a.jpg"] == [A_BOX, [47.0, 32.0, 64.0, 49.0]]  # c had the lowest score

    counts = _export(data, "jsonl", data / "both.jsonl", BoxOptions(multi=True, min_score=0.99, max_boxes=1))
    assert counts.removed == {"min_area": 1, "min_score": 3, "max_boxes": 0} and counts.boxes == 1  # only the U

    counts = _export(data, "jsonl", data / "one.jsonl", BoxOptions(min_score=0.99))  # largest of those left
    assert _jsonl_boxes(data / "one.jsonl") == {"a.jpg": [], "sub/n.png": [[20.0, 10.0, 41.0, 50.0]], "empty.png": []}


def test_cli_summary_names_what_each_filter_removed(data, cli):
    res = cli(
        "boxes", data / "masks", "--images", data / "images", "--multi", "--min-score", "0.7", "--max-boxes", "1",
        "--format", "jsonl", "--out", data / "f.jsonl",
    )  # fmt: skip
    assert res.exit_code == 0
    assert "removed by --min-area 1 · --min-score 1 · --max-boxes 1" in res.stderr
    assert cli("boxes", data / "masks", "--max-boxes", "0", "--out", "-").exit_code == 2


# --- lost-cad -------------------------------------------------------------------------------------
def test_lost_cad_file_names_open_from_another_working_directory(data, monkeypatch):
    monkeypatch.chdir(data)
    _export(data, "lost-cad", data / "cad.json", images="images")  # a relative root, as typed
    elsewhere = data / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    records = json.loads((data / "cad.json").read_text())["dataset"]
    assert len(records) == 3
    for rec in records:
        assert os.path.isabs(rec["file_name"])
        with Image.open(rec["file_name"]) as img:
            assert img.size == (rec["width"], rec["height"])


def test_ultralytics_own_dataset_check_reads_the_yolo_export(data):
    """ultralytics is not an unseg dependency (it pulls its own torch): benchmarks/check_exports.py runs
    this check and one training epoch in a separate environment; here it runs only where importable."""
    pytest.importorskip("ultralytics", reason="ultralytics not installed (see benchmarks/check_exports.py)")
    from ultralytics.data.utils import check_det_dataset

    _export(data, "yolo", data / "yolo")
    info = check_det_dataset(str(data / "yolo" / "data.yaml"), autodownload=False)
    assert info["nc"] == 1 and Path(info["train"]) == (data / "yolo" / "images").resolve()


# --- licences -------------------------------------------------------------------------------------
def test_every_known_weight_states_its_licence(cli):
    rows = {r["name"]: r for r in json.loads(cli("weights", "list", "--json").stdout)}
    assert all(r["licence"] and r["licence"] != "unknown" for r in rows.values())
    assert rows["mae-vitl16-gan"]["licence"].startswith("CC BY-NC 4.0")  # facebookresearch/mae LICENSE
    assert rows["dino-vits8"]["licence"].startswith("Apache-2.0")
    assert rows["efficientnet-lite0"]["licence"].startswith("Apache-2.0")
