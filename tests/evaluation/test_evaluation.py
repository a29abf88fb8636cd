"""CorLoc, saliency and detection against hand-computed answers and the official loops."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from unsegcli.errors import InputError
from unsegcli.evaluation.corloc import iou_lost
from unsegcli.evaluation.inputs import match_predictions
from unsegcli.evaluation.saliency import aggregate, image_stats
from unsegcli.io.datasets import read_coco, read_voc
from unsegcli.io.labels import CocoFile, DetectorResults, JsonlRows, read_label_file


def voc_xml(filename, w, h, objects):
    objs = "".join(
        f"<object><name>{n}</name><truncated>{t}</truncated><difficult>{d}</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, t, d in objects
    )
    return (
        f"<annotation><folder>VOC2007</folder><filename>{filename}</filename><size><width>{w}</width>"
        f"<height>{h}</height><depth>3</depth></size>{objs}</annotation>"
    )


def make_voc(tmp_path):
    """VOCdevkit/VOC2007 with 5 images. GT boxes in VOC's 1-based inclusive coordinates."""
    base = tmp_path / "VOCdevkit" / "VOC2007"
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "Annotations").mkdir()
    (base / "JPEGImages").mkdir()
    images = {
        # id: (w, h, objects)
        "000001": (20, 10, [("cat", (1, 1, 10, 10), 0, 0)]),  # -> [0, 0, 10, 10]
        "000002": (20, 10, [("dog", (11, 1, 20, 10), 0, 0), ("dog", (1, 1, 4, 4), 0, 0)]),
        "000003": (20, 10, [("car", (1, 1, 20, 10), 0, 1)]),  # difficult only
        "000004": (20, 10, [("car", (1, 1, 20, 10), 0, 0)]),  # no prediction for it
        "000005": (40, 20, [("bus", (21, 1, 40, 20), 1, 0), ("bus", (1, 1, 8, 8), 0, 0)]),
    }
    for i, (w, h, objs) in images.items():
        (base / "Annotations" / f"{i}.xml").write_text(voc_xml(f"{i}.jpg", w, h, objs))
        Image.new("RGB", (w, h)).save(base / "JPEGImages" / f"{i}.jpg")
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(images) + "\n")
    (base / "ImageSets" / "Main" / "val.txt").write_text("000001\n000002\n")
    masks = tmp_path / "masks"
    masks.mkdir()

    def mask(name, w, h, box):
        m = np.zeros((h, w), np.uint8)
        x0, y0, x1, y1 = box
        m[y0:y1, x0:x1] = 255
        Image.fromarray(m).save(masks / f"{name}.png")

    mask("000001", 20, 10, (0, 0, 10, 5))  # IoU with [0,0,10,10] is exactly 0.5 -> a miss (LOST eps)
    mask("000002", 20, 10, (10, 0, 20, 10))  # touches the right border, equals GT 1 -> hit
    mask("000003", 20, 10, (0, 0, 20, 10))  # hit, but the image is all difficult
    # 000005 masked at HALF the GT size (20x10): [10,0,20,10] scales to [20,0,40,20] = GT 1 (truncated)
    mask("000005", 20, 10, (10, 0, 20, 10))
    return base


def test_voc_reader_applies_lost_conventions(tmp_path):
    base = make_voc(tmp_path)
    gt = {g.image_id: g for g in read_voc(tmp_path / "VOCdevkit", "trainval", "2007")}
    assert list(gt) == ["000001", "000002", "000003", "000004", "000005"]
    assert gt["000001"].boxes.tolist() == [[0, 0, 10, 10]]
    assert gt["000005"].hard.tolist() == [True, False] and (gt["000005"].width, gt["000005"].height) == (40, 20)
    assert [g.image_id for g in read_voc(base, "val")] == ["000001", "000002"]  # the year folder itself


def test_iou_lost_eps_makes_exactly_half_a_miss():
    iou = iou_lost([0, 0, 10, 5], np.array([[0, 0, 10, 10]]))[0]
    assert iou < 0.5 and iou == pytest.approx(0.5, abs=1e-7)
    assert iou_lost([0, 0, 10, 10], np.array([[0, 0, 10, 10], [50, 50, 60, 60]])).tolist() == pytest.approx([1.0, 0.0])


def test_corloc_voc_from_masks_with_and_without_hard(tmp_path, cli):
    make_voc(tmp_path)
    res = cli(
        "corloc",
        "voc07",
        "--root",
        tmp_path / "VOCdevkit",
        "--pred",
        tmp_path / "masks",
        "--json",
        "-",
        "--per-image",
        tmp_path / "per.csv",
        "-j",
        "0",
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # hits: 000002, 000003, 000005; misses: 000001 (IoU = 0.5), 000004 (no prediction)
    assert out == {
        "dataset": "voc07",
        "corloc": 60.0,
        "hits": 3,
        "images": 5,
        "missing": 1,
        "skipped_hard": 0,
        "failed": 0,
    }
    rows = list(csv.DictReader(open(tmp_path / "per.csv")))
    assert [(r["image"], r["hit"]) for r in rows] == [
        ("000001", "0"),
        ("000002", "1"),
        ("000003", "1"),
        ("000004", "0"),
        ("000005", "1"),
    ]
    res = cli(
        "corloc",
        "voc07",
        "--root",
        tmp_path / "VOCdevkit",
        "--pred",
        tmp_path / "masks",
        "--json",
        "-",
        "--no-hard",
        "-j",
        "2",
    )
    out = json.loads(res.stdout)
    # 000003 skipped (only difficult); in 000005 the truncated GT is dropped, so the prediction misses
    assert (out["hits"], out["images"], out["skipped_hard"]) == (1, 4, 1) and out["corloc"] == 25.0


def test_corloc_from_boxes_files_and_detector_results(tmp_path, cli):
    make_voc(tmp_path)
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "file_name": "000001.jpg",
                    "width": 20,
                    "height": 10,
                    "boxes": [[0, 0, 3, 3], [0, 0, 10, 10]],
                    "areas": [9, 100],
                    "scores": [0.9, 0.5],
                },
                {
                    "file_name": "000004.jpg",
                    "width": 20,
                    "height": 10,
                    "boxes": [[0, 0, 20, 10]],
                    "areas": [200],
                    "scores": [1.0],
                },
            ]
        )
        + "\n"
    )
    out = json.loads(cli("corloc", "voc07", "--root", tmp_path / "VOCdevkit", "--pred", jsonl, "--json", "-").stdout)
    assert (out["hits"], out["missing"]) == (2, 3)
    out = json.loads(
        cli(
            "corloc", "voc07", "--root", tmp_path / "VOCdevkit", "--pred", jsonl, "--pick", "score", "--json", "-"
        ).stdout
    )
    assert out["hits"] == 1  # the 3x3 box has the higher score and misses
    det = tmp_path / "coco_instances_results.json"
    det.write_text(
        json.dumps(
            [
                {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
                {"image_id": 1, "category_id": 1, "bbox": [5, 0, 15, 10], "score": 0.3},
                {"image_id": "000002", "category_id": 1, "bbox": [10, 0, 10, 10], "score": 0.8},
            ]
        )
    )
    out = json.loads(
        cli("corloc", "voc", "--root", tmp_path / "VOCdevkit" / "VOC2007", "--pred", det, "--json", "-").stdout
    )
    assert (out["hits"], out["images"], out["missing"]) == (2, 5, 3)


def make_coco(tmp_path):
    data = {
        "images": [
            {"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "width": 100, "height": 50},
            {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "width": 100, "height": 50},
            {"id": 30, "file_name": "COCO_train2014_000000000030.jpg", "width": 100, "height": 50},
        ],
        "annotations": [
            {"id": 1, "image_id": 9, "category_id": 3, "bbox": [10.4, 10.5, 20.2, 20.0], "iscrowd": 0, "area": 1},
            {"id": 2, "image_id": 25, "category_id": 4, "bbox": [0, 0, 50, 50], "iscrowd": 1, "area": 1},
            {"id": 3, "image_id": 30, "category_id": 3, "bbox": [60, 10, 30, 30], "iscrowd": 0, "area": 1},
        ],
        "categories": [{"id": 3, "name": "a"}, {"id": 4, "name": "b"}],
    }
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2014.json").write_text(json.dumps(data))
    (tmp_path / "coco_20k_filenames.txt").write_text(
        "train2014/COCO_train2014_000000000009.jpg\ntrain2014/COCO_train2014_000000000025.jpg\n"
    )
    return data


def test_coco_reader_rounds_like_lost_and_keeps_all_crowd_images(tmp_path):
    make_coco(tmp_path)
    gt = read_coco(tmp_path / "annotations" / "instances_train2014.json", tmp_path / "coco_20k_filenames.txt")
    assert [g.image_id for g in gt] == [9, 25]
    # int(round()): 10.4 -> 10, 10.5 -> 10 (banker's rounding, as Python's round), 30.6 -> 31, 30.5 -> 30
    assert gt[0].boxes.tolist() == [[10, 10, 31, 30]]
    assert gt[1].boxes.shape == (0, 4)  # all crowd: kept, can only miss


def test_corloc_coco20k(tmp_path, cli):
    make_coco(tmp_path)
    res = cli("corloc", "coco20k", "--root", tmp_path, "--pred", tmp_path / "none.json")
    assert res.exit_code == 2
    det = tmp_path / "det.json"
    det.write_text(
        json.dumps(
            [
                {"image_id": 9, "bbox": [10, 10, 21, 20], "score": 1, "category_id": 1},
                {"image_id": 25, "bbox": [0, 0, 50, 50], "score": 1, "category_id": 1},
            ]
        )
    )
    res = cli("corloc", "coco20k", "--root", tmp_path, "--pred", det, "--json", "-")
    assert res.exit_code == 2 and "coco_20k_filenames.txt" in res.stderr  # --list is required
    res = cli(
        "corloc",
        "coco20k",
        "--root",
        tmp_path,
        "--list",
        tmp_path / "coco_20k_filenames.txt",
        "--pred",
        det,
        "--json",
        "-",
    )
    assert json.loads(res.stdout) == {
        "dataset": "coco20k",
        "corloc": 50.0,
        "hits": 1,
        "images": 2,
        "missing": 0,
        "skipped_hard": 0,
        "failed": 0,
    }


# ----------------------------------------------------------------------------------- saliency


def official_stats(pred_u8: np.ndarray, gt_bool: np.ndarray, th: float = 0.5):
    """A direct transcription of segmentation_eval.py's per-image loop (torch, float32)."""
    gt = torch.from_numpy(gt_bool.astype(np.float32))
    pred = torch.from_numpy(pred_u8.astype(np.float32)) / 255
    p, r = [], []
    for split in np.arange(0.0, 1.0, 1.0 / 256):
        m = pred > split
        g = gt.bool()
        tp = torch.sum(g * (g == m)).float()
        area, gt_area = m.sum().float(), g.sum().float()
        p.append(1.0 if area == 0 else (tp / area).item())
        r.append(1.0 if gt_area == 0 else (tp / gt_area).item())
    b = pred > th
    g = gt.bool()
    iou = (torch.sum(g * (g == b)).float() / (torch.sum(g + b) + 1e-8)).item()
    acc = torch.mean((g == b).float()).item()
    return iou, acc, np.array(p), np.array(r)


def test_saliency_image_stats_match_the_official_loop():
    rng = np.random.default_rng(0)
    for case in range(4):
        pred = rng.integers(0, 256, (13, 17)).astype(np.uint8)
        gt = rng.random((13, 17)) > 0.6
        if case == 2:
            gt[:] = False  # empty GT: recall 1
        if case == 3:
            pred[:] = 0  # empty prediction: precision 1
        st = image_stats(pred, gt)
        iou, acc, p, r = official_stats(pred, gt)
        assert st.iou == pytest.approx(iou, abs=1e-6) and st.accuracy == pytest.approx(acc, abs=1e-6)
        np.testing.assert_allclose(st.precision, p, atol=1e-6)
        np.testing.assert_allclose(st.recall, r, atol=1e-6)


def test_saliency_hand_computed_two_images():
    # image A: GT left half of a 2x2; prediction 255 on the GT pixels, 0 elsewhere -> perfect
    # image B: GT all empty, prediction 200 on one pixel
    a = image_stats(np.array([[255, 0], [255, 0]], np.uint8), np.array([[1, 0], [1, 0]], bool))
    b = image_stats(np.array([[200, 0], [0, 0]], np.uint8), np.zeros((2, 2), bool))
    assert (a.iou, a.accuracy) == (pytest.approx(1.0), 1.0)
    assert b.iou == 0.0 and b.accuracy == 0.75
    res = aggregate([a, b], 0.5)
    # while 200/255 = 0.7843 > t (t <= 200/256 = 0.7813): B has precision 0, recall 1 -> F 0, mean 0.5;
    # from t = 201/256 = 0.7852 on, B's prediction is empty -> precision 1, recall 1 -> F 1, mean 1
    assert res.max_fbeta == pytest.approx(1.0) and res.max_fbeta_per_image == pytest.approx(1.0)
    assert res.max_fbeta_threshold == pytest.approx(201 / 256)
    assert res.iou == pytest.approx(0.5) and res.accuracy == pytest.approx(0.875)


def test_eval_saliency_cli_resizes_matches_and_reports_missing(tmp_path, cli):
    gt, pred = tmp_path / "gt" / "sub", tmp_path / "pred"
    gt.mkdir(parents=True)
    pred.mkdir()
    g = np.zeros((40, 60), np.uint8)
    g[10:30, 20:40] = 255
    Image.fromarray(g).save(gt / "a.png")
    Image.fromarray(np.stack([g] * 3, -1)).save(gt / "b.png")  # 3-channel GT: first channel used
    Image.fromarray(g).save(gt / "c.png")  # no prediction
    (gt / "notes.txt").write_text("ignored")
    Image.fromarray(g[::2, ::2]).save(pred / "a.png")  # half size, found by stem (not same relative path)
    Image.fromarray(g).save(pred / "b.png")
    res = cli(
        "eval",
        "saliency",
        "--gt",
        tmp_path / "gt",
        "--pred",
        pred,
        "--json",
        "-",
        "-j",
        "0",
        "--per-image",
        tmp_path / "per.csv",
    )
    out = json.loads(res.stdout)
    assert res.exit_code == 0 and out["images"] == 3 and out["missing"] == 1
    resized = np.asarray(Image.fromarray(g[::2, ::2]).resize((60, 40), Image.BILINEAR))
    ia = official_stats(resized, g > 127)[0]
    assert out["iou"] == pytest.approx((ia + 1.0 + 0.0) / 3, abs=1e-6)
    rows = list(csv.DictReader(open(tmp_path / "per.csv")))
    assert [r["image"] for r in rows] == ["sub/a.png", "sub/b.png", "sub/c.png"]
    assert [float(r["iou"]) for r in rows] == pytest.approx([ia, 1.0, 0.0], abs=1e-6)
    out = json.loads(
        cli("eval", "saliency", "--gt", tmp_path / "gt", "--pred", pred, "--json", "-", "--missing", "skip").stdout
    )
    assert out["images"] == 2 and out["iou"] == pytest.approx((ia + 1.0) / 2, abs=1e-6)


# ---------------------------------------------------------------------------------- detection


def test_detection_is_class_agnostic_and_keeps_crowd(tmp_path, cli):
    data = make_coco(tmp_path)
    gt = tmp_path / "annotations" / "instances_train2014.json"
    perfect = [
        {"image_id": a["image_id"], "category_id": 77, "bbox": a["bbox"], "score": 0.9}
        for a in data["annotations"]
        if not a["iscrowd"]
    ]
    crowd_hit = {"image_id": 25, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.95}  # ignored, not a FP
    (tmp_path / "det.json").write_text(json.dumps(perfect + [crowd_hit]))
    res = cli("eval", "detection", "--gt", gt, "--pred", tmp_path / "det.json", "--json", "-")
    out = json.loads(res.stdout)
    assert out["AP"] == pytest.approx(1.0) and out["AP50"] == pytest.approx(1.0) and out["AR100"] == pytest.approx(1.0)
    fp = [{"image_id": 9, "category_id": 1, "bbox": [70, 0, 20, 20], "score": 0.99}]
    (tmp_path / "det2.json").write_text(json.dumps(perfect + fp))
    out = json.loads(cli("eval", "detection", "--gt", gt, "--pred", tmp_path / "det2.json", "--json", "-").stdout)
    assert out["AP50"] < 1.0  # a higher-scored false positive lowers precision
    assert list(out) == [
        "AP",
        "AP50",
        "AP75",
        "APs",
        "APm",
        "APl",
        "AR1",
        "AR10",
        "AR100",
        "images",
        "detections",
        "unmatched_images",
        "iou_type",
    ]
    assert (out["images"], out["detections"]) == (3, 3)
    (tmp_path / "rows.jsonl").write_text(json.dumps({"file_name": "a.jpg", "boxes": []}) + "\n")
    res = cli("eval", "detection", "--gt", gt, "--pred", tmp_path / "rows.jsonl")
    assert res.exit_code == 2 and "not JSON lines" in res.stderr


def test_mask_ap_matches_masks_not_boxes(tmp_path, cli):
    """One object whose mask is its 20x20 box less an 8x11 corner (312 px); the prediction is the full box.
    Box IoU 1 -> box AP 1; mask IoU 312/400 = 0.78 -> matched at the thresholds .50 ... .75, 6 of COCO's 10,
    so mask AP = 0.6, AP50 = 1, AP75 = 1 (0.78 >= .75)."""
    from pycocotools import mask as mask_utils

    def rle(m):
        r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        return {"size": r["size"], "counts": r["counts"].decode()}

    gt_mask = np.zeros((64, 64), bool)
    gt_mask[10:30, 10:30] = True
    gt_mask[10:18, 19:30] = False  # the 8x11 corner
    box = np.zeros((64, 64), bool)
    box[10:30, 10:30] = True
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 312,
                         "iscrowd": 0, "segmentation": rle(gt_mask)}],
        "categories": [{"id": 3, "name": "x"}],
    }  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    det = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9, "segmentation": rle(box)}]
    (tmp_path / "det.json").write_text(json.dumps(det))
    run = ["eval", "detection", "--gt", tmp_path / "gt.json", "--pred", tmp_path / "det.json", "--json", "-"]
    boxes = json.loads(cli(*run).stdout)
    masks = json.loads(cli(*run, "--iou-type", "segm").stdout)
    assert boxes["AP"] == pytest.approx(1.0) and boxes["iou_type"] == "bbox"
    assert masks["AP"] == pytest.approx(0.6) and masks["AP50"] == pytest.approx(1.0)
    assert masks["AP75"] == pytest.approx(1.0) and masks["iou_type"] == "segm"

    (tmp_path / "nomask.json").write_text(json.dumps([{k: v for k, v in det[0].items() if k != "segmentation"}]))
    res = cli(
        "eval", "detection", "--gt", tmp_path / "gt.json", "--pred", tmp_path / "nomask.json", "--iou-type", "segm"
    )
    assert res.exit_code == 1 and "no segmentation" in res.stderr
    del gt["annotations"][0]["segmentation"]
    (tmp_path / "gt_boxes.json").write_text(json.dumps(gt))
    res = cli(
        "eval", "detection", "--gt", tmp_path / "gt_boxes.json", "--pred", tmp_path / "det.json", "--iou-type", "segm"
    )
    assert res.exit_code == 1 and "gt_boxes.json" in res.stderr and "mask AP needs masks" in res.stderr


# ------------------------------------------------------------------------------- shared inputs


def test_read_label_file_tells_the_three_shapes_apart(tmp_path):
    coco = tmp_path / "coco.json"
    coco.write_text("\n  " + json.dumps({"images": [], "annotations": [], "categories": []}, indent=2))
    one_row = tmp_path / "one.jsonl"  # a single JSON object that is not COCO: one JSON line
    one_row.write_text(json.dumps({"file_name": "a.jpg", "boxes": [[0, 0, 1, 1]]}) + "\n")
    det = tmp_path / "det.json"
    det.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    assert isinstance(read_label_file(str(coco)), CocoFile)
    rows = read_label_file(str(one_row))
    assert isinstance(rows, JsonlRows) and rows.rows[0]["file_name"] == "a.jpg"
    assert isinstance(read_label_file(str(det)), DetectorResults)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"file_name": "a.jpg", "boxes": []}) + "\nnot json\n")
    with pytest.raises(InputError, match="bad.jsonl:2:"):
        read_label_file(str(bad))
    bad.write_text(json.dumps({"file_name": "a.jpg"}) + "\n")
    with pytest.raises(InputError, match="'file_name' and 'boxes'"):
        read_label_file(str(bad))


def test_matching_prefers_the_exact_path_then_a_unique_stem_and_names_duplicates(tmp_path):
    for rel in ("a.png", "x/a.png", "y/b.png", "p/c.png", "q/c.png", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    m = match_predictions(["a", "sub/b", "c", "d"], str(tmp_path))
    assert m.found == {"a": str(tmp_path / "a.png"), "sub/b": str(tmp_path / "y" / "b.png")}
    assert list(m.errors) == ["c"] and str(tmp_path / "p" / "c.png") in m.errors["c"]
    assert str(tmp_path / "q" / "c.png") in m.errors["c"]


def test_duplicate_prediction_stems_are_reported_by_corloc_and_saliency(tmp_path, cli):
    make_voc(tmp_path)
    (tmp_path / "masks" / "again").mkdir()
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "masks" / "again" / "000004.png")
    (tmp_path / "masks" / "other").mkdir()
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "masks" / "other" / "000004.png")
    res = cli("corloc", "voc07", "--root", tmp_path / "VOCdevkit", "--pred", tmp_path / "masks", "--json", "-")
    assert res.exit_code == 1 and "again/000004.png" in res.stderr and "other/000004.png" in res.stderr
    assert json.loads(res.stdout)["missing"] == 1  # the ambiguous image has no prediction
    gt = tmp_path / "gt"
    gt.mkdir()
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(gt / "000004.png")
    res = cli("eval", "saliency", "--gt", gt, "--pred", tmp_path / "masks", "--json", "-")
    assert res.exit_code == 1 and "again/000004.png" in res.stderr and "other/000004.png" in res.stderr


def test_corloc_choices_are_checked_by_the_cli(tmp_path, cli):
    make_voc(tmp_path)
    args = ["corloc", "voc07", "--root", tmp_path / "VOCdevkit", "--pred", tmp_path / "masks"]
    for bad in (["--connectivity", "6"], ["--pick", "first"]):
        res = cli(*args, *bad)
        assert res.exit_code == 2 and bad[0] in res.stderr
    assert cli("corloc", "voc99", "--root", tmp_path, "--pred", tmp_path / "masks").exit_code == 2
