"""Reliability (issue 13): no traceback, no silent loss, no litter, for bad inputs.

Every case runs the command through the in-process CLI runner as a user would (stderr not a terminal), and
checks the exit code, that each failing input is named, that the others are still processed, and that no
temp file is left behind; an exception escaping the command fails the test. What needs a real process
(signals, native stderr, a terminal) is in tests/e2e/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ..helpers import random_image, write_images


@pytest.fixture
def run(cli, monkeypatch):
    """``unseg ARGS`` in process, from folder ``cwd`` with ``env`` added, as a user's shell would run it."""
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*args, cwd: Path | None = None, input: str | bytes | None = None, env: dict | None = None):
        with monkeypatch.context() as m:
            if cwd is not None:
                m.chdir(cwd)
            for k, v in (env or {}).items():
                m.setenv(k, v)
            res = cli(*args, input=input)
        assert "Traceback" not in res.stderr, res.stderr
        return res

    return invoke


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def mask_png(path: Path, mask: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8)).save(path)
    return path


def square_mask(h: int = 32, w: int = 32, box: tuple[int, int, int, int] = (8, 8, 24, 24)) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 255
    return m


def voc_tree(root: Path, names: list[str], objects: dict[str, str] | None = None) -> Path:
    """A VOC-style folder: Annotations/NAME.xml (one 32x32 object at 8..24), trainval list, JPEGImages."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for n in names:
        xml = (objects or {}).get(n) or (
            "<annotation><size><width>32</width><height>32</height><depth>3</depth></size>"
            "<object><name>obj</name><difficult>0</difficult><truncated>0</truncated>"
            "<bndbox><xmin>9</xmin><ymin>9</ymin><xmax>24</xmax><ymax>24</ymax></bndbox></object></annotation>"
        )
        (root / "Annotations" / f"{n}.xml").write_text(xml)
        Image.fromarray(random_image(32, 32)).save(root / "JPEGImages" / f"{n}.jpg")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{n}\n" for n in names))
    return root


# ---------------------------------------------------------------------------------------------- 1
def test_saliency_names_unreadable_prediction_and_gt_and_exits_1(tmp_path, run):
    for name in "abc":
        mask_png(tmp_path / "gt" / f"{name}.png", square_mask())
        mask_png(tmp_path / "pred" / f"{name}.png", square_mask())
    (tmp_path / "pred" / "b.png").write_bytes(b"not a png")
    res = run("eval", "saliency", "--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "-j", "0")
    assert res.exit_code == 1 and "b.png" in res.stderr
    (tmp_path / "gt" / "c.png").write_bytes(b"")
    res = run("eval", "saliency", "--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "-j", "0")
    assert res.exit_code == 1 and "b.png" in res.stderr and "c.png" in res.stderr


def test_corloc_names_unreadable_prediction_and_exits_1(tmp_path, run):
    voc = voc_tree(tmp_path / "voc", ["a", "b"])
    mask_png(tmp_path / "pred" / "a.png", square_mask())
    (tmp_path / "pred" / "b.png").write_bytes(b"\x89PNG broken")
    res = run("corloc", "voc", "--root", voc, "--pred", tmp_path / "pred", "-j", "0")
    assert res.exit_code == 1 and "b.png" in res.stderr


# ---------------------------------------------------------------------------------------------- 2
@pytest.fixture
def camera_tree(tmp_path) -> Path:
    for folder in ("100", "101"):
        d = tmp_path / "photos" / folder
        d.mkdir(parents=True)
        Image.fromarray(random_image(40, 48, seed=int(folder))).save(d / "IMG_0001.png")
    Image.fromarray(random_image(40, 48, seed=3)).save(tmp_path / "photos" / " lead and trail .png")
    return tmp_path


def test_stdin_keeps_relative_paths_and_the_readme_pipeline_pairs_them(camera_tree, tiny_ckpt, run):
    listing = "photos/100/IMG_0001.png\nphotos/101/IMG_0001.png\n"
    res = run("predict", "-", "--out", "masks", "-w", tiny_ckpt, "-j", "0", cwd=camera_tree, input=listing)
    assert res.exit_code == 0, res.stderr
    assert files_under(camera_tree / "masks") == ["photos/100/IMG_0001.png", "photos/101/IMG_0001.png"]
    res = run(
        "predict", "-", "--root", "photos", "--out", "m2", "-w", tiny_ckpt, "-j", "0", cwd=camera_tree, input=listing
    )
    assert res.exit_code == 0, res.stderr
    assert files_under(camera_tree / "m2") == ["100/IMG_0001.png", "101/IMG_0001.png"]
    res = run("boxes", "m2", "--images", "photos", "--format", "jsonl", "--out", "-", cwd=camera_tree)
    assert res.exit_code == 0, res.stderr
    names = sorted(json.loads(line)["file_name"] for line in res.stdout.splitlines())
    assert names == ["100/IMG_0001.png", "101/IMG_0001.png"]


def test_null_separated_stdin_keeps_spaces(camera_tree, tiny_ckpt, run):
    listing = b"photos/100/IMG_0001.png\0photos/ lead and trail .png\0"
    res = run("predict", "-", "--null", "--out", "masks", "-w", tiny_ckpt, "-j", "0", cwd=camera_tree, input=listing)
    assert res.exit_code == 0, res.stderr
    assert files_under(camera_tree / "masks") == ["photos/ lead and trail .png", "photos/100/IMG_0001.png"]


def test_file_arguments_keep_relative_paths(camera_tree, tiny_ckpt, run):
    res = run(
        "predict",
        "photos/100/IMG_0001.png",
        "photos/101/IMG_0001.png",
        "--out",
        "masks",
        "-w",
        tiny_ckpt,
        "-j",
        "0",
        cwd=camera_tree,
    )
    assert res.exit_code == 0, res.stderr
    assert files_under(camera_tree / "masks") == ["photos/100/IMG_0001.png", "photos/101/IMG_0001.png"]


# ---------------------------------------------------------------------------------------------- 3
def test_colliding_stems_are_reported_and_the_rest_processed(tmp_path, tiny_ckpt, run):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(random_image(32, 32, 0)).save(imgs / "a.jpg")
    Image.fromarray(random_image(32, 32, 1)).save(imgs / "a.png")
    Image.fromarray(random_image(32, 32, 2)).save(imgs / "b.png")
    res = run("predict", imgs, "--out", tmp_path / "m", "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 1
    assert "a.jpg" in res.stderr and "a.png" in res.stderr
    assert (tmp_path / "m" / "b.png").exists()


# ---------------------------------------------------------------------------------------------- 4
def test_symlink_loops_visit_each_real_folder_once(tmp_path, tiny_ckpt, run):
    imgs = tmp_path / "imgs"
    write_images(imgs, [(32, 32)] * 3)
    (imgs / "again").symlink_to(imgs, target_is_directory=True)
    (imgs / "sub").mkdir()
    (imgs / "sub" / "up").symlink_to(imgs, target_is_directory=True)
    res = run("predict", imgs, "--out", tmp_path / "m", "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0, res.stderr
    assert [f for f in files_under(tmp_path / "m") if f.endswith(".png")] == ["img_00.png", "img_01.png", "img_02.png"]


# ---------------------------------------------------------------------------------------------- 6
def test_unusable_outputs_are_usage_errors_before_any_work(tmp_path, tiny_ckpt, run):
    write_images(tmp_path / "imgs", [(32, 32)])
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    mask_png(tmp_path / "masks" / "img_00.png", square_mask())
    voc = voc_tree(tmp_path / "voc", ["img_00"])
    cases = [
        ("predict", tmp_path / "imgs", "--out", tmp_path / "file.txt", "-w", tiny_ckpt),
        ("predict", tmp_path / "imgs", "--out", tmp_path / "file.txt" / "sub", "-w", tiny_ckpt),
        ("boxes", tmp_path / "masks", "--out", tmp_path / "folder"),
        ("boxes", tmp_path / "masks", "--out", tmp_path / "file.txt" / "p.json"),
        ("merge", tmp_path / "file.txt", "--out", tmp_path / "folder"),
        ("corloc", "voc", "--root", voc, "--pred", tmp_path / "masks", "--json", tmp_path / "folder"),
        ("eval", "saliency", "--gt", tmp_path / "masks", "--pred", tmp_path / "masks", "--json", tmp_path / "folder"),
    ]
    for args in cases:
        res = run(*args)
        assert res.exit_code == 2, (args, res.stderr)
    assert (tmp_path / "file.txt").read_text() == "x"


# ---------------------------------------------------------------------------------------------- 7, 8
def test_file_names_are_never_markup(tmp_path, tiny_ckpt, run):
    imgs = tmp_path / "imgs"
    write_images(imgs, [(32, 32)])
    (imgs / "bad [edited].png").write_bytes(b"nope")
    (imgs / "x[").mkdir()
    (imgs / "x[" / "b].png").write_bytes(b"nope")  # reported as .../x[/b].png: a path holding `[/b]`
    res = run("predict", imgs, "--out", tmp_path / "m", "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 1
    assert "bad [edited].png" in res.stderr and "x[/b].png" in res.stderr
    assert (tmp_path / "m" / "img_00.png").exists()


def test_longest_legal_name_is_written(tmp_path, tiny_ckpt, run):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    name = "n" * 251 + ".png"  # 255 bytes: the longest legal name; the mask has the same length
    Image.fromarray(random_image(32, 32)).save(imgs / name)
    res = run("predict", imgs, "--out", tmp_path / "m", "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "m" / name).exists()


# ---------------------------------------------------------------------------------------------- 9, 10
@pytest.mark.parametrize(
    "xml",
    [
        "<annotation><object><name>o</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
        "</bndbox></object></annotation>",  # no <size>
        "<annotation><size><width>32</width><height>32</height></size><object><name>o</name></object></annotation>",
        "<annotation><size><width>32</width><height>32</height></size><object><name>o</name><bndbox><xmin>a</xmin>"
        "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>",
        "<annotation><size>",  # not XML
    ],
)
def test_malformed_voc_xml_is_named(tmp_path, xml, run):
    voc = voc_tree(tmp_path / "voc", ["good", "bad"], {"bad": xml})
    mask_png(tmp_path / "pred" / "good.png", square_mask())
    mask_png(tmp_path / "pred" / "bad.png", square_mask())
    res = run("corloc", "voc", "--root", voc, "--pred", tmp_path / "pred", "-j", "0")
    assert res.exit_code in (1, 2) and "bad.xml" in res.stderr


def test_corloc_on_an_empty_split_is_an_error(tmp_path, run):
    voc = voc_tree(tmp_path / "voc", [])
    (tmp_path / "pred").mkdir()
    res = run("corloc", "voc", "--root", voc, "--pred", tmp_path / "pred")
    assert res.exit_code in (1, 2) and "0.00" not in res.stdout


COCO_PART = {
    "images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 16, 16], "area": 256, "iscrowd": 0, "score": 0.9}
    ],
    "categories": [{"id": 1, "name": "fg"}],
}


@pytest.mark.parametrize(
    "content,expect",
    [
        ('{"foo": 1}', None),
        ('{"annotations": [], "categories": []}', "images"),
        ('{"file_name": "b.png", "width": 32}\n', "boxes"),
        ("", None),
        ("[1, 2, 3]", None),
    ],
)
def test_merge_refuses_malformed_parts_and_writes_nothing(tmp_path, content, expect, run):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(COCO_PART))
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    res = run("merge", good, bad, "--out", tmp_path / "out.json")
    assert res.exit_code in (1, 2)
    assert "bad.json" in res.stderr
    assert "cannot merge a COCO file with JSON lines" not in res.stderr
    if expect:
        assert expect in res.stderr
    assert not (tmp_path / "out.json").exists()


def test_eval_detection_with_a_non_coco_gt_is_named(tmp_path, run):
    (tmp_path / "gt.json").write_text('{"foo": []}')
    (tmp_path / "pred.json").write_text("[]")
    res = run("eval", "detection", "--gt", tmp_path / "gt.json", "--pred", tmp_path / "pred.json")
    assert res.exit_code in (1, 2) and "gt.json" in res.stderr


def test_checkpoints_without_or_with_mistyped_config_are_named(tmp_path, tiny_ckpt, run):
    write_images(tmp_path / "imgs", [(32, 32)])
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    no_cfg = {k: v for k, v in ckpt.items() if k != "model_config"}
    torch.save(no_cfg, tmp_path / "nocfg.pt")
    bad = dict(ckpt)
    bad["model_config"] = json.loads(json.dumps(ckpt["model_config"]))
    bad["model_config"]["backbone"]["embed_dim"] = "wide"
    torch.save(bad, tmp_path / "badcfg.pt")
    for name in ("nocfg.pt", "badcfg.pt"):
        out = tmp_path / f"out_{name}"
        res = run("predict", tmp_path / "imgs", "--out", out, "-w", tmp_path / name)
        assert res.exit_code in (1, 2) and name in res.stderr
        assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------------------------------------- 11
def test_boxes_refuses_colour_photos_given_as_masks(tmp_path, run):
    imgs = write_images(tmp_path / "photos", [(32, 32)])
    mask_png(tmp_path / "photos" / "real_mask.png", square_mask())
    res = run("boxes", tmp_path / "photos", "--format", "jsonl", "--out", "-")
    assert res.exit_code == 1
    assert imgs[0].name in res.stderr
    assert [json.loads(line)["file_name"] for line in res.stdout.splitlines()] == ["real_mask.png"]


# ---------------------------------------------------------------------------------------------- 12
def test_missing_weights_and_env_weights_are_usage_errors(tmp_path, run):
    write_images(tmp_path / "imgs", [(32, 32)])
    res = run("predict", tmp_path / "imgs", "--out", tmp_path / "m", "-w", tmp_path / "missing.pt")
    assert res.exit_code == 2 and "missing.pt" in res.stderr
    res = run("predict", tmp_path / "imgs", "--out", tmp_path / "m", env={"UNSEG_WEIGHTS": str(tmp_path / "x.pt")})
    assert res.exit_code == 2 and "UNSEG_WEIGHTS" in res.stderr


def test_out_equal_to_the_input_folder_says_so(tmp_path, tiny_ckpt, run):
    write_images(tmp_path / "imgs", [(32, 32)])
    res = run("predict", tmp_path / "imgs", "--out", tmp_path / "imgs", "-w", tiny_ckpt)
    assert res.exit_code == 2
    assert "no images found" not in res.stderr and "--out" in res.stderr


# ---------------------------------------------------------------------------------------------- 13
def test_stdout_and_stdin_dashes_work(tmp_path, run):
    (tmp_path / "a.json").write_text(json.dumps(COCO_PART))
    res = run("merge", tmp_path / "a.json", "--out", "-")
    assert res.exit_code == 0 and json.loads(res.stdout)["images"][0]["file_name"] == "a.png"
    res = run(
        "eval",
        "detection",
        "--gt",
        tmp_path / "a.json",
        "--pred",
        "-",
        input=json.dumps([{"image_id": 1, "category_id": 1, "bbox": [8, 8, 16, 16], "score": 0.9}]),
    )
    assert res.exit_code == 0, res.stderr


def test_other_extensions_are_counted_and_boxes_takes_max_pixels(tmp_path, tiny_ckpt, run):
    imgs = tmp_path / "imgs"
    write_images(imgs, [(32, 32)])
    for name in ("anim.gif", "phone.heic", "new.avif"):
        (imgs / name).write_bytes(b"x")
    res = run("predict", imgs, "--out", tmp_path / "m", "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0
    assert any("3" in line and "ignored" in line for line in res.stderr.splitlines()), res.stderr
    assert "--max-pixels" in run("boxes", "--help").stdout


# ---------------------------------------------------------------------------------------------- 15
def test_changed_settings_into_the_same_folder_are_refused(tmp_path, tiny_ckpt, run):
    write_images(tmp_path / "imgs", [(32, 32)] * 2)
    out = tmp_path / "m"
    assert run("predict", tmp_path / "imgs", "--out", out, "-w", tiny_ckpt, "-j", "0").exit_code == 0
    res = run("predict", tmp_path / "imgs", "--out", out, "-w", tiny_ckpt, "-j", "0", "--binary")
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    res = run("predict", tmp_path / "imgs", "--out", out, "-w", tiny_ckpt, "-j", "0", "--binary", "--overwrite")
    assert res.exit_code == 0
    assert set(np.unique(np.asarray(Image.open(out / "img_00.png")))) <= {0, 255}
    # the same settings again: a plain resume
    assert run("predict", tmp_path / "imgs", "--out", out, "-w", tiny_ckpt, "-j", "0", "--binary").exit_code == 0
