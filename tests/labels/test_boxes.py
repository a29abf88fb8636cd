"""`unseg boxes`: components, the 1% rule, formats read back by pycocotools, bad input."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from unsegcli.errors import InputError, UsageError
from unsegcli.io.files import atomic_write_bytes
from unsegcli.labels.components import binarize, extract_boxes
from unsegcli.labels.formats import FORMATS, ImageLabels, LabelFormat, LabelWriter
from unsegcli.labels.runner import BoxOptions, label_files, plan_tasks
from unsegcli.parallel import Failed, parallel_map

from ..helpers import random_image


def test_diagonal_pixels_tell_4_from_8_connectivity():
    m = np.zeros((10, 10), np.uint8)
    m[2, 2] = m[3, 3] = m[4, 4] = 255  # touching only at corners
    eight, _ = extract_boxes(m, connectivity=8, min_area=0, multi=True)
    four, _ = extract_boxes(m, connectivity=4, min_area=0, multi=True)
    assert [b.xyxy for b in eight] == [(2.0, 2.0, 5.0, 5.0)] and eight[0].area == 3
    assert sorted(b.xyxy for b in four) == [(2.0, 2.0, 3.0, 3.0), (3.0, 3.0, 4.0, 4.0), (4.0, 4.0, 5.0, 5.0)]


def test_one_percent_rule_at_the_boundary():
    m = np.zeros((100, 100), np.uint8)  # 1% of the image = 100 px of box area
    m[0:10, 0:10] = 255  # box 10x10 = exactly 1%: kept
    m[50:59, 50:61] = 255  # 9 x 11 = 99: dropped
    m[80:81, 0:100] = 255  # 1 x 100 thin line: box area 100, kept even though it is thin
    boxes, _ = extract_boxes(m, multi=True)
    assert sorted(b.xyxy for b in boxes) == [(0.0, 0.0, 10.0, 10.0), (0.0, 80.0, 100.0, 81.0)]


def test_single_mode_keeps_the_biggest_box_and_ties_are_deterministic():
    m = np.zeros((50, 50), np.uint8)
    m[30:40, 30:40] = 255  # 10x10, area 100
    m[5:15, 5:15] = 255  # 10x10, area 100: same box and pixel area -> the upper-left wins
    m[0:2, 40:50] = 255  # small
    boxes, _ = extract_boxes(m)
    assert [b.xyxy for b in boxes] == [(5.0, 5.0, 15.0, 15.0)]
    hollow = np.zeros((50, 50), np.uint8)
    hollow[0:10, 0:10] = 255
    hollow[2:8, 2:8] = 0  # same box as a full square, fewer pixels
    hollow[20:30, 20:30] = 255
    boxes, _ = extract_boxes(hollow, multi=True)
    assert [b.xyxy for b in boxes] == [(20.0, 20.0, 30.0, 30.0), (0.0, 0.0, 10.0, 10.0)]


def test_scores_threshold_and_empty_or_full_masks():
    m = np.zeros((20, 20), np.uint8)
    m[0:10, 0:10] = 200
    m[0:10, 0:5] = 100  # 100/255 < 0.5: background at the default threshold
    boxes, _ = extract_boxes(m)
    assert boxes[0].xyxy == (5.0, 0.0, 10.0, 10.0) and boxes[0].score == pytest.approx(200 / 255)
    assert binarize(np.array([[127, 128]], np.uint8)).tolist() == [[False, True]]  # 127.5 is the cut
    assert extract_boxes(np.zeros((5, 5), np.uint8), multi=True)[0] == []
    full, _ = extract_boxes(np.full((7, 3), 255, np.uint8))
    assert full[0].xyxy == (0.0, 0.0, 3.0, 7.0) and full[0].area == 21


def _write_masks(folder, masks: dict[str, np.ndarray]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, m in masks.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(m).save(folder / name)


def _fixture(tmp_path):
    """Masks with known components and matching images (one in a subfolder, one EXIF-rotated)."""
    a = np.zeros((40, 60), np.uint8)
    a[5:15, 5:25] = 255  # 20 x 10
    a[20:38, 30:58] = 230  # 28 x 18 (largest)
    a[0, 59] = 255  # one pixel: under 1%
    b = np.zeros((30, 20), np.uint8)
    b[10:20, 5:15] = 180
    masks = {"a.png": a, "sub/b.png": b, "empty.png": np.zeros((10, 10), np.uint8)}
    _write_masks(tmp_path / "masks", masks)
    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    Image.fromarray(random_image(40, 60)).save(imgs / "a.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 20x30 (w x h), displayed 30 high x 20 wide -> matches mask b
    Image.fromarray(random_image(20, 30)).save(imgs / "sub" / "b.JPG", exif=exif)
    Image.fromarray(random_image(10, 10)).save(imgs / "empty.png")
    return masks


def test_coco_output_round_trips_through_pycocotools(tmp_path, cli):
    masks = _fixture(tmp_path)
    out = tmp_path / "p.json"
    res = cli("boxes", tmp_path / "masks", "--images", tmp_path / "imgs", "--multi", "--out", out, "-j", "2")
    assert res.exit_code == 0, res.output
    assert "images 3 · boxes 3 · without any box 1 · failed 0" in res.stderr
    coco = COCO(str(out))
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in coco.dataset["images"]] == [
        (1, "a.jpg", 60, 40),
        (2, "empty.png", 10, 10),
        (3, "sub/b.JPG", 20, 30),
    ]
    assert list(coco.dataset["images"][0]) == ["id", "file_name", "width", "height"]
    assert coco.dataset["categories"] == [{"id": 1, "name": "fg", "supercategory": "fg"}]
    anns = coco.dataset["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3] and [a["image_id"] for a in anns] == [1, 1, 3]
    assert [a["bbox"] for a in anns] == [[30.0, 20.0, 28.0, 18.0], [5.0, 5.0, 20.0, 10.0], [5.0, 10.0, 10.0, 10.0]]
    for ann in anns:
        src = masks["a.png"] if ann["image_id"] == 1 else masks["sub/b.png"]
        x, y, w, h = (int(v) for v in ann["bbox"])
        expected = np.zeros(src.shape, np.uint8)
        expected[y : y + h, x : x + w] = src[y : y + h, x : x + w] > 127
        np.testing.assert_array_equal(coco.annToMask(ann), expected)
        assert ann["area"] == expected.sum() and ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
        assert mask_utils.toBbox(ann["segmentation"]).tolist() == ann["bbox"]
    assert anns[0]["score"] == pytest.approx(230 / 255)
    # detector-style results load as well
    res_coco = coco.loadRes([{k: a[k] for k in ("image_id", "category_id", "bbox", "score")} for a in anns])
    assert len(res_coco.dataset["annotations"]) == 3
    # re-runs are byte-identical
    cli("boxes", tmp_path / "masks", "--images", tmp_path / "imgs", "--multi", "--out", tmp_path / "q.json", "-j", "0")
    assert out.read_bytes() == (tmp_path / "q.json").read_bytes()


def test_single_mode_selfmask_lostcad_and_jsonl(tmp_path, cli):
    masks = _fixture(tmp_path)
    args = [tmp_path / "masks", "--images", tmp_path / "imgs", "-j", "0", "-q"]
    assert cli("boxes", *args, "--out", tmp_path / "single.json").exit_code == 0
    single = json.loads((tmp_path / "single.json").read_text())
    assert [a["bbox"] for a in single["annotations"]] == [[30.0, 20.0, 28.0, 18.0], [5.0, 10.0, 10.0, 10.0]]

    assert cli("boxes", *args, "--multi", "--format", "selfmask", "--out", tmp_path / "sm.json").exit_code == 0
    sm = json.loads((tmp_path / "sm.json").read_text())
    assert sorted(sm) == ["a.jpg", "b.JPG", "empty.png"]
    union = mask_utils.decode({"size": sm["a.jpg"]["size"], "counts": sm["a.jpg"]["counts"].encode()})
    expected = masks["a.png"] > 127
    expected[0, 59] = False  # the one-pixel component was dropped by the 1% rule
    np.testing.assert_array_equal(union.astype(bool), expected)
    assert mask_utils.decode({"size": [10, 10], "counts": sm["empty.png"]["counts"].encode()}).sum() == 0

    assert cli("boxes", *args, "--format", "lost-cad", "--out", tmp_path / "cad.json").exit_code == 0
    cad = json.loads((tmp_path / "cad.json").read_text())
    assert cad["meta_data"]["thing_classes"] == ["object"]
    rec = cad["dataset"][0]
    assert rec["file_name"] == str(tmp_path / "imgs" / "a.jpg")  # the root joined, absolute: LOST opens it as is
    assert rec["image_id"] == "a" and (rec["height"], rec["width"]) == (40, 60)
    assert rec["annotations"] == [{"bbox": [30.0, 20.0, 58.0, 38.0], "bbox_mode": 0, "category_id": 0, "iscrowd": 0}]

    res = cli("boxes", *args, "--multi", "--format", "jsonl", "--out", "-")
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [len(r["boxes"]) for r in lines] == [2, 0, 1]
    assert lines[0]["boxes"][0] == [30.0, 20.0, 58.0, 38.0] and lines[0]["areas"][0] == 28 * 18


def test_without_images_file_names_are_mask_paths(tmp_path, cli):
    _fixture(tmp_path)
    res = cli("boxes", tmp_path / "masks", "--out", "-", "--format", "jsonl", "-q", "-j", "0")
    assert [json.loads(line)["file_name"] for line in res.stdout.splitlines()] == ["a.png", "empty.png", "sub/b.png"]


def test_bad_masks_are_reported_and_the_rest_written(tmp_path, cli):
    _fixture(tmp_path)
    masks = tmp_path / "masks"
    (masks / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (masks / "zero.png").write_bytes(b"")
    Image.fromarray(np.full((1, 1), 255, np.uint8)).save(masks / "dot.png")
    Image.fromarray(np.full((40, 60, 3), 255, np.uint8)).save(masks / "rgb.png")
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(masks / "deep.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(masks / "mismatch.png")
    imgs = tmp_path / "imgs"
    for name, (h, w) in {
        "corrupt": (4, 4),
        "zero": (4, 4),
        "dot": (1, 1),
        "rgb": (40, 60),
        "deep": (8, 8),
        "mismatch": (6, 5),
    }.items():
        Image.fromarray(random_image(h, w)).save(imgs / f"{name}.png")
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(masks / "orphan.png")  # no image for it
    out = tmp_path / "p.json"
    res = cli("boxes", masks, "--images", imgs, "--multi", "--out", out, "-j", "2")
    assert res.exit_code == 1
    for name in ("corrupt.png", "zero.png", "mismatch.png", "orphan.png"):
        assert name in res.stderr
    assert "mask is 5x5 but image" in res.stderr
    data = json.loads(out.read_text())
    names = [i["file_name"] for i in data["images"]]
    assert names == ["a.jpg", "deep.png", "dot.png", "empty.png", "rgb.png", "sub/b.JPG"]
    by_name = {i["file_name"]: i["id"] for i in data["images"]}
    full = [
        a["bbox"]
        for a in data["annotations"]
        if a["image_id"] in (by_name["rgb.png"], by_name["deep.png"], by_name["dot.png"])
    ]
    assert full == [[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 60.0, 40.0]]


def test_usage_errors(tmp_path, cli):
    _fixture(tmp_path)
    assert cli("boxes", tmp_path / "masks", "--out", "-", "--format", "voc").exit_code == 2
    assert cli("boxes", tmp_path / "masks", "--out", "-", "--connectivity", "6").exit_code == 2
    assert cli("boxes", tmp_path / "nothing", "--out", "-").exit_code == 2
    res = cli("boxes", tmp_path / "masks", "--images", tmp_path / "masks" / "a.png", "--out", "-")
    assert res.exit_code == 2 and "--images must be a folder" in res.stderr


def test_every_format_name_has_one_writer_that_declares_its_needs():
    assert set(FORMATS) == set(get_args(LabelFormat))
    needs = {name: (cls.needs_rle, cls.needs_union, cls.writes_folder) for name, cls in FORMATS.items()}
    assert needs == {
        "coco": (True, False, False),
        "selfmask": (False, True, False),
        "lost-cad": (False, False, False),
        "jsonl": (False, False, False),
        "yolo": (False, False, True),
        "yolo-seg": (True, False, True),  # polygons are traced from each component's RLE
        "voc": (False, False, True),
    }


def _half(x: int) -> float:
    if x == 3:
        raise InputError(f"item {x}: odd one out")
    if x == 5:
        raise ZeroDivisionError("boom")
    return x / 2


def _name(x: int) -> str:
    return f"job {x}"


def test_parallel_map_keeps_order_and_reports_failures_in_place():
    expected = [0.0, 0.5, 1.0, Failed("item 3: odd one out"), 2.0, Failed("job 5: ZeroDivisionError: boom"), 3.0]
    for workers in (0, 2):  # serial and a fork pool give the same sequence
        assert list(parallel_map(_half, range(7), workers, describe=_name, chunksize=2)) == expected


class _NamesWriter(LabelWriter):
    """A folder format for the test: one text file per image holding its box count."""

    writes_folder = True

    def add(self, img: ImageLabels) -> None:
        assert isinstance(self.out, Path)
        atomic_write_bytes(self.out / f"{img.index:03d}.txt", f"{img.file_name} {len(img.boxes)}\n".encode())


def test_a_folder_format_gets_the_out_path(tmp_path, monkeypatch):
    _fixture(tmp_path)
    monkeypatch.setitem(FORMATS, "names", _NamesWriter)
    plan = plan_tasks([str(tmp_path / "masks")], None)
    counts = label_files(plan, str(tmp_path / "out"), "names", BoxOptions(multi=True))
    assert (counts.images, counts.boxes, counts.empty, counts.failed) == (3, 3, 1, 0)
    written = {p.name: p.read_text() for p in (tmp_path / "out").iterdir()}
    assert written == {"000.txt": "a.png 2\n", "001.txt": "empty.png 0\n", "002.txt": "sub/b.png 1\n"}
    with pytest.raises(UsageError, match="writes a folder"):
        label_files(plan, "-", "names", BoxOptions())


def test_plan_names_masks_whose_image_is_ambiguous_and_keeps_the_rest(tmp_path):
    """`a.jpg` and `a.png` under --images: the mask `a.png` cannot be paired; `b.png` still is."""
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    for name in ("a.jpg", "a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(imgs / name)
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / name)
    plan = plan_tasks([str(masks)], str(imgs))
    assert [t.file_name for t in plan.tasks] == ["b.png"]
    assert len(plan.errors) == 1 and "a.jpg" in plan.errors[0] and "a.png" in plan.errors[0]


def test_plan_names_stdin_masks_relative_to_root(tmp_path):
    (tmp_path / "m" / "100").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "m" / "100" / "x.png")
    listing = io.StringIO(f"{tmp_path}/m/100/x.png\n")
    old, sys.stdin = sys.stdin, listing
    try:
        plan = plan_tasks(["-"], None, root=str(tmp_path / "m"))
    finally:
        sys.stdin = old
    assert [t.file_name for t in plan.tasks] == ["100/x.png"]


def test_plan_counts_files_of_other_extensions(tmp_path):
    (tmp_path / "m").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "m" / "a.png")
    (tmp_path / "m" / "notes.json").write_text("{}")
    (tmp_path / "m" / "b.jpg").write_bytes(b"x")
    plan = plan_tasks([str(tmp_path / "m")], None)
    assert [t.file_name for t in plan.tasks] == ["a.png"]
    assert plan.ignored == "ignored 2 files with other extensions (.jpg .json)"
