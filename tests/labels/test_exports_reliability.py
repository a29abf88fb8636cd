"""Exports under odd names and re-runs (issue 24, classes 3, 7 and 10): a file name that is not UTF-8,
an object of several pieces in yolo-seg, re-exports and `synth` re-runs into a used folder, the VOC
dataset layout, 255-byte names, and image folders named `images`. Each runs the real command."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from unsegcli.io.datasets import read_voc, read_voc_annotation
from unsegcli.io.instances import write_instances

from ..helpers import random_image

H, W = 32, 40
UNDECODABLE = os.fsdecode(b"caf\xe9")  # Latin-1 bytes on a UTF-8 system: Python holds them as '\udce9'


def _rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _pair(root: Path, stem: str, mask: np.ndarray, sub: str = "") -> None:
    """images/SUB/STEM.png (random) and masks/SUB/STEM.png (0/255)."""
    for kind in ("images", "masks"):
        (root / kind / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(random_image(H, W, len(stem))).save(root / "images" / sub / f"{stem}.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / sub / f"{stem}.png")


def _boxes(cli, root: Path, format: str, out: Path, *extra: str):
    return cli(
        "boxes", root / "masks", "--images", root / "images", "--multi", "--format", format, "--out", out, "-q", *extra
    )  # fmt: skip


# --- class 3: names that are not UTF-8 ------------------------------------------------------------
def test_voc_export_names_an_undecodable_file_name_and_writes_the_others(tmp_path, cli):
    for stem in (UNDECODABLE, "ok", "z"):
        _pair(tmp_path, stem, _rect(4, 20, 5, 30))
    res = _boxes(cli, tmp_path, "voc", tmp_path / "voc")
    assert res.exit_code == 1  # one input failed, the run went on
    assert "not UTF-8" in res.stderr and "caf" in res.stderr
    ann = tmp_path / "voc" / "Annotations"
    assert sorted(p.name for p in ann.iterdir()) == ["ok.xml", "z.xml"]
    assert read_voc_annotation(ann / "z.xml")[3].tolist() == [[5.0, 4.0, 30.0, 20.0]]


def test_path_formats_keep_undecodable_names_and_json_formats_carry_them(tmp_path, cli):
    _pair(tmp_path, UNDECODABLE, _rect(4, 20, 5, 30))
    assert _boxes(cli, tmp_path, "yolo", tmp_path / "yolo").exit_code == 0
    label = tmp_path / "yolo" / "labels" / f"{UNDECODABLE}.txt"
    assert os.fsencode(label.name) == b"caf\xe9.txt" and label.read_text().startswith("0 ")
    assert _boxes(cli, tmp_path, "coco", tmp_path / "c.json").exit_code == 0
    from unsegcli.io.labels import read_label_file

    (image,) = read_label_file(str(tmp_path / "c.json")).data["images"]  # type: ignore[union-attr]
    assert os.path.isfile(tmp_path / "images" / image["file_name"])  # the \\udce9 escape opens the same file


# --- class 7: yolo-seg objects of several pieces ------------------------------------------------
def test_yolo_seg_writes_every_piece_of_an_object(tmp_path, cli):
    """An instance mask whose one object has three pieces: one line, whose polygon rasterises to all
    three (pycocotools exactly; OpenCV's fillPoly, as ultralytics draws, covers them)."""
    labels = np.zeros((H, W), np.uint8)
    pieces = [_rect(2, 12, 2, 14), _rect(20, 30, 25, 38), _rect(3, 9, 30, 36)]
    for p in pieces:
        labels[p] = 1
    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    write_instances(tmp_path / "masks" / "a.png", labels)
    Image.fromarray(random_image(H, W, 1)).save(tmp_path / "images" / "a.png")
    assert _boxes(cli, tmp_path, "yolo-seg", tmp_path / "seg").exit_code == 0
    (line,) = (tmp_path / "seg" / "labels" / "a.txt").read_text().splitlines()
    poly = np.array(line.split()[1:], float).reshape(-1, 2) * [W, H]
    union = labels.astype(bool)
    coco = mask_utils.decode(mask_utils.frPyObjects([poly.ravel().tolist()], H, W)).squeeze(-1).astype(bool)
    np.testing.assert_array_equal(coco, union)
    filled = np.zeros((H, W), np.uint8)
    cv2.fillPoly(filled, [np.round(poly).astype(np.int32)], 1)
    assert filled.astype(bool)[union].all()


# --- class 7: re-runs into a used folder ----------------------------------------------------------
@pytest.mark.parametrize("format", ["yolo", "yolo-seg", "voc"])
def test_a_smaller_re_export_removes_what_it_no_longer_writes(tmp_path, cli, format):
    for stem in ("a", "b", "c"):
        _pair(tmp_path, stem, _rect(4, 20, 5, 30))
    out = tmp_path / format
    assert _boxes(cli, tmp_path, format, out).exit_code == 0
    (out / "mine.txt").write_text("a file the export did not write")
    for kind in ("images", "masks"):
        (tmp_path / kind / "c.png").unlink()
    res = cli(
        "boxes", tmp_path / "masks", "--images", tmp_path / "images", "--multi", "--format", format, "--out", out
    )  # fmt: skip
    assert res.exit_code == 0 and "removed 2 files of an earlier export" in res.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() or p.is_symlink())
    if format == "voc":
        expected = ["Annotations/a.xml", "Annotations/b.xml", "ImageSets/Main/trainval.txt", "JPEGImages/a.png"]
        expected += ["JPEGImages/b.png", "labelmap.txt"]
        assert (out / "ImageSets" / "Main" / "trainval.txt").read_text() == "a\nb\n"
    else:
        expected = ["data.yaml", "images/a.png", "images/b.png", "labels/a.txt", "labels/b.txt"]
    assert files == sorted([".unseg-manifest.json", "mine.txt", *expected])


def test_synth_re_run_smaller_leaves_only_its_own_files(tmp_path, cli):
    out = tmp_path / "d"
    assert cli("synth", out, "--n", "3", "--size", "16", "--voc", "-q").exit_code == 0
    res = cli("synth", out, "--n", "1", "--size", "16", "--seed", "1")
    assert res.exit_code == 0 and "removed" in res.stderr
    assert [p.name for p in (out / "images").iterdir()] == ["synth_1_000000.png"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["synth_1_000000.png"]
    assert not list((out / "VOCdevkit").rglob("*.*"))  # the earlier run's VOC tree is gone with it


def test_shards_export_one_voc_folder_and_re_run_alone(tmp_path, cli):
    for stem in ("a", "b", "c"):
        _pair(tmp_path, stem, _rect(4, 20, 5, 30))
    out = tmp_path / "voc"
    for k in range(2):
        assert _boxes(cli, tmp_path, "voc", out, "--shard", f"{k}/2").exit_code == 0
    assert (out / "ImageSets" / "Main" / "trainval.txt").read_text() == "a\nb\nc\n"
    assert _boxes(cli, tmp_path, "voc", out, "--shard", "1/2").exit_code == 0  # a shard re-run keeps the others
    assert sorted(p.name for p in (out / "Annotations").iterdir()) == ["a.xml", "b.xml", "c.xml"]
    assert _boxes(cli, tmp_path, "voc", out).exit_code == 0  # a whole run takes the folder over
    assert sorted(p.name for p in out.glob(".unseg-manifest*")) == [".unseg-manifest.json"]


# --- class 10: VOC as a dataset -------------------------------------------------------------------
def test_voc_export_is_a_voc_dataset_folder(tmp_path, cli):
    _pair(tmp_path, "a", _rect(4, 20, 5, 30))
    _pair(tmp_path, "n", _rect(1, 9, 2, 6), sub="sub")
    _pair(tmp_path, "x y", _rect(1, 9, 2, 6))
    out = tmp_path / "voc"
    assert _boxes(cli, tmp_path, "voc", out).exit_code == 0
    # unseg's own VOC reader (as `corloc voc --root` uses it) reads the folder as a dataset, spaces too
    gt = {g.image_id: (g.file_name, g.boxes.tolist()) for g in read_voc(out)}
    assert gt == {
        "a": ("a.png", [[5.0, 4.0, 30.0, 20.0]]),
        "sub/n": ("sub/n.png", [[2.0, 1.0, 6.0, 9.0]]),
        "x y": ("x y.png", [[2.0, 1.0, 6.0, 9.0]]),
    }
    # datumaro opens JPEGImages/<filename>, a real file (it refuses links leading out of the folder)
    for image_id, (file_name, _) in gt.items():
        image = out / "JPEGImages" / file_name
        assert image.is_file() and not image.is_symlink()
        assert image.read_bytes() == (tmp_path / "images" / file_name).read_bytes()
        root = ET.parse(out / "Annotations" / f"{image_id}.xml").getroot()
        assert root.findtext("folder") == "JPEGImages"
    assert (out / "labelmap.txt").read_text().splitlines()[1:] == ["object:::"]


# --- long names and folders named images -------------------------------------------------------
def test_folder_exports_write_255_byte_names(tmp_path, cli):
    stem = "n" * 251  # stem.png: the longest name most file systems hold
    _pair(tmp_path, stem, _rect(4, 20, 5, 30))
    for format in ("yolo", "voc"):
        assert _boxes(cli, tmp_path, format, tmp_path / format).exit_code == 0
    assert (tmp_path / "yolo" / "images" / f"{stem}.png").is_symlink()
    assert (tmp_path / "voc" / "JPEGImages" / f"{stem}.png").is_file()


def test_yolo_label_of_an_image_under_a_folder_named_images_is_where_ultralytics_looks(tmp_path, cli):
    _pair(tmp_path, "x", _rect(4, 20, 5, 30), sub="images")
    out = tmp_path / "yolo"
    assert _boxes(cli, tmp_path, "yolo", out).exit_code == 0
    image = str(out / "images" / "images" / "x.png")
    # ultralytics data/utils.py img2label_paths: the last /images/ -> /labels/, the extension -> .txt
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    expected = sb.join(image.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt"
    assert Path(expected).read_text().startswith("0 ")


@pytest.mark.slow
def test_voc_export_of_an_undecodable_name_in_a_fresh_interpreter(tmp_path):
    """The same as the first test through `python -m unsegcli` under a UTF-8 locale: one line names the
    file, no traceback, exit 1."""
    _pair(tmp_path, UNDECODABLE, _rect(4, 20, 5, 30))
    _pair(tmp_path, "ok", _rect(4, 20, 5, 30))
    args = [sys.executable, "-m", "unsegcli", "boxes", str(tmp_path / "masks"), "--images", str(tmp_path / "images")]
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "1"}
    res = subprocess.run([*args, "--format", "voc", "--out", str(tmp_path / "voc")], capture_output=True, env=env)
    assert res.returncode == 1 and b"Traceback" not in res.stderr
    assert b"not UTF-8" in res.stderr and (tmp_path / "voc" / "Annotations" / "ok.xml").is_file()
