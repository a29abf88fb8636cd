"""Issue 13 on the evaluation and label side: every bad input is one named error with its reason, the
others are still scored, nothing is half-written; the counts say what was left out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unsegcli.errors import InputError, UsageError
from unsegcli.evaluation.saliency import evaluate_saliency
from unsegcli.io.datasets import read_voc, read_voc_annotation
from unsegcli.io.instances import write_instances
from unsegcli.io.labels import CocoFile, JsonlRows, coco_problem, read_label_file
from unsegcli.labels.components import COLOUR_IMAGE, read_box_mask
from unsegcli.labels.merge import merge_files
from unsegcli.labels.runner import BoxOptions, MaskTask, label_one

GOOD_XML = (
    "<annotation><size><width>32</width><height>32</height></size><object><name>o</name>"
    "<bndbox><xmin>9</xmin><ymin>9</ymin><xmax>24</xmax><ymax>24</ymax></bndbox></object></annotation>"
)
COCO = {
    "images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 16, 16], "area": 256, "iscrowd": 0}],
    "categories": [{"id": 1, "name": "fg"}],
}


def save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    img.save(path)
    return path


def square(h: int = 32, w: int = 32, box=(8, 8, 24, 24), value: int = 255) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[box[1] : box[3], box[0] : box[2]] = value
    return m


def voc(root: Path, xmls: dict[str, str]) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for name, xml in xmls.items():
        (root / "Annotations" / f"{name}.xml").write_text(xml)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{n}\n" for n in xmls))
    return root


# ------------------------------------------------------------------------------------ VOC GT


@pytest.mark.parametrize(
    "xml,reason",
    [
        ("<annotation><object><bndbox><xmin>1</xmin></bndbox></object></annotation>", "no <size>"),
        ("<annotation><size><width>32</width></size></annotation>", "no <height>"),
        ("<annotation><size><width>32</width><height>32</height></size><object/></annotation>", "no <bndbox>"),
        (GOOD_XML.replace("<xmin>9</xmin>", "<xmin>a</xmin>"), "<xmin> in <bndbox> is not a number ('a')"),
        (GOOD_XML.replace("<ymax>24</ymax>", ""), "no <ymax>"),
        ("<annotation><size>", "not a readable XML annotation"),
        ("", "not a readable XML annotation"),
    ],
)
def test_malformed_voc_annotation_names_file_and_reason(tmp_path, xml, reason):
    (tmp_path / "x.xml").write_text(xml)
    with pytest.raises(InputError) as e:
        read_voc_annotation(tmp_path / "x.xml")
    assert str(tmp_path / "x.xml") in e.value.message and reason in e.value.message


def test_read_voc_reports_bad_annotations_and_keeps_the_rest(tmp_path):
    root = voc(tmp_path / "v", {"a": GOOD_XML, "b": "<annotation>", "c": GOOD_XML})
    errors: list[str] = []
    gt = read_voc(root, on_error=errors.append)
    assert [g.image_id for g in gt] == ["a", "c"]
    assert len(errors) == 1 and "b.xml" in errors[0]
    assert gt[0].boxes.tolist() == [[8.0, 8.0, 24.0, 24.0]]  # LOST: xmin - 1, ymin - 1
    (root / "Annotations" / "c.xml").unlink()
    errors.clear()
    assert [g.image_id for g in read_voc(root, on_error=errors.append)] == ["a"]
    assert "annotation not found" in errors[1]
    with pytest.raises(InputError):  # the default: raise
        read_voc(root)


def test_empty_split_is_a_usage_error(tmp_path):
    root = voc(tmp_path / "v", {})
    with pytest.raises(UsageError, match="lists no images"):
        read_voc(root)


# ------------------------------------------------------------------------------- label files


@pytest.mark.parametrize(
    "content,reason",
    [
        ("", "empty file"),
        ("  \n", "empty file"),
        ('{"foo": 1}', "not a COCO file ('images' and 'annotations'), JSON lines"),
        ("{}", "an empty object"),
        ('{"annotations": []}', "no 'images'"),
        ('{"images": [{"id": 1}], "annotations": []}', "images[0] has no 'file_name', 'width', 'height'"),
        ('{"images": [], "annotations": [{"image_id": 1, "bbox": [0, 0, 1, 1]}]}', "not among the images"),
        (json.dumps({**COCO, "annotations": [{"image_id": 1, "bbox": [1, 2]}]}), "bbox must be 4 numbers"),
        ('{"file_name": "b.png", "width": 32}\n', "(no 'boxes')"),
        ('{"file_name": "b.png", "boxes": [[0, 0, 1]]}\n', "'boxes' must be a list"),
        ("[1, 2, 3]", "not detector results"),
        ('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": "high"}]', "score must be a number"),
        ("42", "a JSON int"),
        ("not json", "not valid JSON"),
    ],
)
def test_label_file_says_what_it_lacks(tmp_path, content, reason):
    (tmp_path / "f.json").write_text(content)
    with pytest.raises(InputError) as e:
        read_label_file(str(tmp_path / "f.json"))
    assert str(tmp_path / "f.json") in e.value.message and reason in e.value.message


def test_label_file_shapes_still_read(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(COCO))
    assert isinstance(read_label_file(str(tmp_path / "c.json")), CocoFile)
    (tmp_path / "one.jsonl").write_text('{"file_name": "a.png", "boxes": [[0, 0, 1, 1]]}')  # one line, no newline
    rows = read_label_file(str(tmp_path / "one.jsonl"))
    assert isinstance(rows, JsonlRows) and rows.rows[0]["file_name"] == "a.png"
    assert coco_problem(COCO) is None


# ---------------------------------------------------------------------------------------- merge


def test_merge_names_every_bad_part_and_writes_nothing(tmp_path):
    (tmp_path / "good.json").write_text(json.dumps(COCO))
    (tmp_path / "bad1.json").write_text('{"foo": 1}')
    (tmp_path / "bad2.json").write_text("")
    errors: list[str] = []
    paths = [str(tmp_path / n) for n in ("good.json", "bad1.json", "bad2.json")]
    with pytest.raises(InputError, match="2 of 3 parts cannot be merged; nothing written"):
        merge_files(paths, str(tmp_path / "out.json"), on_error=errors.append)
    assert len(errors) == 2 and "bad1.json" in errors[0] and "bad2.json: empty file, not a COCO part" in errors[1]
    assert not (tmp_path / "out.json").exists()


def test_merge_of_an_undecodable_segmentation_names_the_part(tmp_path):
    bad = json.loads(json.dumps(COCO))
    bad["annotations"][0]["segmentation"] = {"size": [32, 32], "counts": 12}
    (tmp_path / "seg.json").write_text(json.dumps(bad))
    errors: list[str] = []
    with pytest.raises(InputError):
        merge_files([str(tmp_path / "seg.json")], str(tmp_path / "out.json"), on_error=errors.append)
    assert "seg.json: annotations[0]: segmentation cannot be decoded" in errors[0]


def test_an_empty_part_is_an_empty_jsonl_shard_but_not_alone(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"file_name": "a.png", "boxes": [[0, 0, 1, 1]]}\n')
    (tmp_path / "empty.jsonl").write_text("")
    counts = merge_files([str(tmp_path / "a.jsonl"), str(tmp_path / "empty.jsonl")], str(tmp_path / "o.jsonl"))
    assert (counts.images, counts.boxes) == (1, 1)
    with pytest.raises(InputError, match="empty file"):
        merge_files([str(tmp_path / "empty.jsonl")], str(tmp_path / "o2.jsonl"))
    assert not (tmp_path / "o2.jsonl").exists()


# ------------------------------------------------------------------------------ masks for boxes


def test_box_masks_refuse_photos_and_read_every_mask_mode(tmp_path):
    photo = np.zeros((8, 8, 3), np.uint8)
    photo[..., 0] = 200  # red: channels differ
    with pytest.raises(InputError, match=COLOUR_IMAGE):
        read_box_mask(str(save(tmp_path / "photo.png", photo)))
    kind, lum = read_box_mask(str(tmp_path / "photo.png"), allow_color=True)
    assert kind == "mask" and int(lum[0, 0]) == 60  # ITU-R 601: 200 * 299 / 1000 = 59.8
    gray_rgb = np.repeat(square()[:, :, None], 3, axis=2)
    assert read_box_mask(str(save(tmp_path / "rgb_gray.png", gray_rgb)))[1].tolist() == square().tolist()
    assert read_box_mask(str(save(tmp_path / "one.png", square() > 0)))[1].tolist() == square().tolist()
    wide = square().astype(np.uint16) * 257  # 16-bit 0 / 65535
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert read_box_mask(str(tmp_path / "wide.png"))[1].tolist() == square().tolist()
    labels = np.zeros((32, 32), np.uint8)
    labels[2:6, 2:10], labels[20:30, 15:31] = 1, 2
    write_instances(tmp_path / "inst.png", labels)
    kind, got = read_box_mask(str(tmp_path / "inst.png"))
    assert kind == "instances" and got.tolist() == labels.tolist()
    with pytest.raises(InputError, match="too large"):
        read_box_mask(str(tmp_path / "wide.png"), max_pixels=1000)


def test_an_instance_map_gives_one_box_per_object(tmp_path):
    labels = np.zeros((32, 32), np.uint8)
    labels[2:6, 2:10] = 1  # 8x4 box
    labels[20:30, 15:31] = 2  # 16x10 box, the largest
    write_instances(tmp_path / "inst.png", labels)
    task = MaskTask(0, str(tmp_path / "inst.png"), "inst.png", None)
    multi = label_one(task, BoxOptions(multi=True))
    assert multi.boxes == [[15.0, 20.0, 31.0, 30.0], [2.0, 2.0, 10.0, 6.0]]
    assert label_one(task, BoxOptions()).boxes == [[15.0, 20.0, 31.0, 30.0]]


# ------------------------------------------------------------------------------------- saliency


def test_saliency_counts_what_it_could_not_read(tmp_path):
    for name in "abc":
        save(tmp_path / "gt" / f"{name}.png", square())
        save(tmp_path / "pred" / f"{name}.png", square())
    (tmp_path / "pred" / "b.png").write_bytes(b"not a png")
    errors: list[str] = []
    res = evaluate_saliency(str(tmp_path / "gt"), str(tmp_path / "pred"), on_error=errors.append)
    # b's prediction is unreadable: named, and scored as a missing one (empty: IoU 0)
    assert (res.images, res.failed, len(errors)) == (3, 1, 1) and "b.png" in errors[0]
    assert res.iou == pytest.approx(2 / 3)
    res = evaluate_saliency(str(tmp_path / "gt"), str(tmp_path / "pred"), missing="skip", on_error=errors.append)
    assert (res.images, res.skipped, res.failed) == (2, 1, 1) and res.iou == pytest.approx(1.0)
    (tmp_path / "gt" / "c.png").write_bytes(b"")  # an unreadable GT cannot be scored: left out
    errors.clear()
    res = evaluate_saliency(str(tmp_path / "gt"), str(tmp_path / "pred"), on_error=errors.append)
    assert (res.images, res.failed) == (2, 2) and "c.png" in errors[1] and "empty file" in errors[1]
    assert res.to_dict()["failed"] == 2


def test_saliency_reads_one_bit_and_palette_gt(tmp_path):
    """The official reading (raw / 255 > 0.5) would see an empty GT in both; they hold the square."""
    save(tmp_path / "gt" / "bits.png", square() > 0)
    labels = (square() > 0).astype(np.uint8)
    write_instances(tmp_path / "gt" / "pal.png", labels)
    save(tmp_path / "pred" / "bits.png", square())
    write_instances(tmp_path / "pred" / "pal.png", labels)  # an instance prediction: its union
    res = evaluate_saliency(str(tmp_path / "gt"), str(tmp_path / "pred"))
    assert (res.images, res.failed) == (2, 0) and res.iou == pytest.approx(1.0)


# ------------------------------------------------------------------------------------ commands


def test_corloc_leaves_out_bad_annotations_and_exits_1(tmp_path, cli):
    root = voc(tmp_path / "v", {"a": GOOD_XML, "b": "<annotation>", "c": GOOD_XML})
    save(tmp_path / "pred" / "a.png", square())
    save(tmp_path / "pred" / "b.png", square())
    save(tmp_path / "pred" / "c.png", square(box=(0, 0, 4, 4)))
    res = cli("corloc", "voc", "--root", root, "--pred", tmp_path / "pred", "--json", "-", "-j", "0")
    assert res.exit_code == 1 and "b.xml" in res.stderr
    out = json.loads(res.stdout)
    assert (out["images"], out["hits"], out["failed"], out["corloc"]) == (2, 1, 1, 50.0)


def test_corloc_of_an_instance_prediction_takes_its_largest_object(tmp_path, cli):
    root = voc(tmp_path / "v", {"a": GOOD_XML})
    labels = np.zeros((32, 32), np.uint8)
    labels[8:24, 8:24] = 1  # the GT box
    labels[0:4, 26:32] = 2
    write_instances(tmp_path / "pred" / "a.png", labels)
    res = cli("corloc", "voc", "--root", root, "--pred", tmp_path / "pred", "--json", "-", "-j", "0")
    assert res.exit_code == 0 and json.loads(res.stdout)["hits"] == 1


def test_outputs_are_checked_before_any_input(tmp_path, cli):
    (tmp_path / "folder").mkdir()
    (tmp_path / "gt.json").write_text(json.dumps(COCO))
    missing = tmp_path / "nothing_here"
    cases = [
        ("eval", "detection", "--gt", missing, "--pred", missing, "--json", tmp_path / "folder"),
        ("eval", "saliency", "--gt", missing, "--pred", missing, "--json", "-", "--per-image", "-"),
        (
            "eval",
            "saliency",
            "--gt",
            missing,
            "--pred",
            missing,
            "--json",
            tmp_path / "r",
            "--per-image",
            tmp_path / "r",
        ),
        ("boxes", missing, "--format", "voc", "--out", tmp_path / "gt.json"),
        ("merge", missing, "--out", tmp_path / "gt.json" / "x.json"),
    ]
    for args in cases:
        res = cli(*args)
        assert res.exit_code == 2 and "--" in res.stderr and "not found" not in res.stderr, (args, res.stderr)


def test_detection_names_a_bad_gt_and_foreign_results_and_reads_stdin(tmp_path, cli):
    (tmp_path / "gt.json").write_text(json.dumps(COCO))
    (tmp_path / "bad_gt.json").write_text('{"images": []}')
    (tmp_path / "det.json").write_text("[]")
    res = cli("eval", "detection", "--gt", tmp_path / "bad_gt.json", "--pred", tmp_path / "det.json")
    assert res.exit_code == 1 and "bad_gt.json: a COCO file needs an 'annotations' list" in res.stderr
    foreign = [{"image_id": 7, "category_id": 1, "bbox": [8, 8, 16, 16], "score": 0.9}]
    res = cli("eval", "detection", "--gt", tmp_path / "gt.json", "--pred", "-", input=json.dumps(foreign))
    assert res.exit_code == 1 and "image ids that the ground truth does not have" in res.stderr
    good = [{"image_id": 1, "category_id": 1, "bbox": [8, 8, 16, 16], "score": 0.9}]
    res = cli("eval", "detection", "--gt", tmp_path / "gt.json", "--pred", "-", "--json", "-", input=json.dumps(good))
    assert res.exit_code == 0 and json.loads(res.stdout)["AP50"] == pytest.approx(1.0)
