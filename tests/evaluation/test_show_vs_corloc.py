"""`unseg show --gt` and `unseg corloc` on the same tricky inputs: one evaluation path, so equal CorLoc and
equal exit codes (duplicate stems, an instance mask with a thin object, a malformed annotation, a mask at
another scale, detector results whose COCO ids are not the numbers in the file names)."""

from __future__ import annotations

import json
import re

import numpy as np
from PIL import Image

from unsegcli.io.instances import encode_instances


def _voc(root, images: dict[str, tuple[int, int, tuple[int, int, int, int]]], broken: tuple[str, ...] = ()):
    """A VOC-style folder; boxes given 0-based XYXY (written 1-based as VOC does)."""
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for i, (w, h, (x0, y0, x1, y1)) in images.items():
        xml = (
            f"<annotation><filename>{i}.jpg</filename><size><width>{w}</width><height>{h}</height></size>"
            f"<object><name>x</name><truncated>0</truncated><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin>"
            f"<ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>"
        )
        (root / "Annotations" / f"{i}.xml").write_text("<annotation><size>" if i in broken else xml)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(images) + "\n")


def _mask(path, w, h, box, value=255):
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = value
    Image.fromarray(m).save(path)


def _shown_corloc(output: str) -> float:
    m = re.search(r"CorLoc (\d+\.\d+)%", output)
    assert m, output
    return float(m.group(1))


def test_masks_with_duplicate_stems_thin_objects_and_a_bad_annotation(tmp_path, cli):
    voc = tmp_path / "voc"
    box = (4, 4, 20, 20)
    _voc(voc, {f"00000{k}": (32, 32, box) for k in range(1, 7)}, broken=("000006",))
    masks = tmp_path / "masks"
    _mask(masks / "000001.png", 32, 32, box)  # a hit
    _mask(masks / "a" / "000002.png", 32, 32, box)  # the same stem twice: ambiguous, a miss for corloc
    _mask(masks / "b" / "000002.png", 32, 32, box)
    thin = np.zeros((32, 32), np.uint8)
    thin[np.arange(32), np.arange(32)] = 1  # a diagonal: the largest box, 32 pixels
    thin[4:20, 4:20] = 2  # the largest object (256 pixels) is the GT box
    (masks / "000003.png").write_bytes(encode_instances(thin))
    _mask(masks / "000005.png", 16, 16, (2, 2, 10, 10))  # made at half the size: scaled to the GT, a hit
    # 000004 has no mask: a miss; 000006's annotation is not XML: named, left out by both

    res = cli("corloc", "voc", "--root", voc, "--pred", masks, "--json", "-", "-j", "0")
    shown = cli("show", masks, "--gt", voc, "--out", tmp_path / "review", "-j", "0")
    expected = json.loads(res.stdout)
    assert (expected["images"], expected["hits"]) == (5, 3)  # 000001, 000003, 000005
    assert _shown_corloc(shown.output) == round(expected["corloc"], 2) == 60.0
    assert res.exit_code == shown.exit_code == 1
    for out in (res.output, shown.output):
        assert "a/000002.png" in out and "b/000002.png" in out and "000006.xml" in out
    page = (tmp_path / "review" / "index.html").read_text()
    assert "000006.xml" in page  # the failure tied to no image is in the report too
    data = json.loads(re.search(r'id="review-data">(.*?)</script>', page, re.S).group(1))
    hits = {d["n"]: d["h"] for d in data["items"]}
    assert hits == {"000001.png": True, "000003.png": True, "000005.png": True, "a/000002.png": None,
                    "b/000002.png": None}  # fmt: skip


def test_detector_results_with_coco_ids_that_are_not_file_name_numbers(tmp_path, cli):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32)).save(images / "000001.jpg")
    Image.new("RGB", (64, 32)).save(images / "000002.jpg")
    gt = {
        "images": [
            {"id": 1, "file_name": "000002.jpg", "width": 64, "height": 32},  # id 1 is the file numbered 2
            {"id": 2, "file_name": "000001.jpg", "width": 32, "height": 32},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "bbox": [40, 4, 20, 20], "category_id": 1, "iscrowd": 0, "area": 400},
            {"id": 2, "image_id": 2, "bbox": [4, 4, 16, 16], "category_id": 1, "iscrowd": 0, "area": 256},
        ],
        "categories": [{"id": 1, "name": "object"}],
    }
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(gt))
    results = tmp_path / "coco_instances_results.json"
    results.write_text(
        json.dumps(
            [
                {"image_id": 1, "bbox": [40, 4, 20, 20], "score": 0.9, "category_id": 1},  # hit
                {"image_id": 2, "bbox": [16, 16, 16, 16], "score": 0.8, "category_id": 1},  # miss
            ]
        )
    )
    res = cli("corloc", "coco", "--ann", ann, "--pred", results, "--json", "-")
    shown = cli("show", results, "--images", images, "--gt", ann, "--out", tmp_path / "review", "-j", "0")
    assert res.exit_code == shown.exit_code == 0, shown.output
    assert _shown_corloc(shown.output) == round(json.loads(res.stdout)["corloc"], 2) == 50.0
    page = (tmp_path / "review" / "index.html").read_text()
    data = json.loads(re.search(r'id="review-data">(.*?)</script>', page, re.S).group(1))
    assert {d["n"]: (d["wh"], d["h"]) for d in data["items"]} == {
        "000002.jpg": ([64, 32], True),  # drawn on the GT's image of id 1, not on 000001.jpg
        "000001.jpg": ([32, 32], False),
    }
