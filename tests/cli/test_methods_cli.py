"""The training-free methods through the real CLI: predict -> boxes -> corloc / eval saliency / merge.

A tiny random DINO-shaped ViT saved in DINO's own key layout stands in for the official weights and
`unseg synth` gives images and a VOC tree. Known answers: boxes and RLEs computed from the written PNGs
with plain numpy, instance folders scored like the equivalent grayscale folders, hand-built instance maps.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unsegcli.cli.app import app
from unsegcli.errors import UsageError
from unsegcli.io.instances import write_instances
from unsegcli.io.masks import encode_png

from ..helpers import save_dino_backbone

METHOD_ARGS = {
    "tokencut": ["--method", "tokencut"],
    "lost": ["--method", "lost"],
    "maskcut": ["--method", "maskcut", "--max-objects", "3", "--fixed-size", "96"],  # 6x6 grid: fast
}


def run(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def ok(*args: str | Path):
    res = run(*args)
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tf")
    ok("synth", root / "d", "--n", "6", "--size", "64", "--voc", "-q")
    save_dino_backbone(root / "dino_tiny16.pth", patch_size=16, embed_dim=64, depth=2)
    return root


@pytest.fixture(scope="module")
def predicted(data) -> dict[str, Path]:
    """Each method's masks of the six synth images (one predict run per method, shared by the tests)."""
    out = {}
    for method, args in METHOD_ARGS.items():
        folder = data / f"masks_{method}"
        ok(
            "predict",
            data / "d" / "images",
            "--out",
            folder,
            *args,
            "--backbone",
            data / "dino_tiny16.pth",
            "-j",
            "0",
            "-q",
        )
        out[method] = folder
    return out


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def object_boxes(labels: np.ndarray) -> dict[int, list[float]]:
    """Object index -> COCO XYWH box of all its pixels, by plain numpy."""
    out = {}
    for k in np.unique(labels[labels > 0]):
        ys, xs = np.nonzero(labels == k)
        out[int(k)] = [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]
    return out


def test_method_choices_are_the_library_methods(cli):
    from unsegcli.methods import METHODS, predict_methods

    assert predict_methods() == ["move", "found", "found-bkg", "tokencut", "lost", "maskcut", "votecut"]
    assert all(METHODS[m].predictor for m in predict_methods()[1:])
    res = cli("predict", "x.jpg", "--out", "o", "--method", "nope")
    said = " ".join(re.sub("[│╭╮╰╯─]", " ", res.output).split())
    assert res.exit_code == 2
    assert "'nope' is not one of move, found, found-bkg, tokencut, lost, maskcut, votecut" in said


@pytest.mark.parametrize("method", ["tokencut", "lost"])
def test_single_object_methods_predict_boxes_corloc(data, predicted, method):
    from pycocotools.coco import COCO

    files = pngs(predicted[method])
    assert [f.stem for f in files] == sorted(p.stem for p in (data / "d" / "images").glob("*.png"))
    expected = {}
    for f in files:
        with Image.open(f) as im:
            assert im.mode == "L"
            m = np.asarray(im)
        assert set(np.unique(m)) <= {0, 255} and m.any()  # one object as a 0/255 mask
        expected[f.name] = object_boxes((m > 0).astype(np.uint8))[1]  # the seed's component: one piece
    pseudo = data / f"pseudo_{method}.json"
    ok("boxes", predicted[method], "--images", data / "d" / "images", "--out", pseudo, "-j", "0", "-q")
    coco = COCO(str(pseudo))
    by_name = {img["file_name"]: img["id"] for img in coco.dataset["images"]}
    for name, box in expected.items():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[by_name[name]]))
        assert [a["bbox"] for a in anns] == [box]
    result = data / f"corloc_{method}.json"
    voc = data / "d" / "VOCdevkit" / "VOC2007"
    ok("corloc", "voc07", "--root", voc, "--pred", predicted[method], "--json", result, "-j", "0")
    assert json.loads(result.read_text())["images"] == 6


def test_maskcut_predict_boxes_corloc_eval(data, predicted):
    """Palette PNGs; one COCO annotation per object with its exact box and mask; CorLoc scores the
    largest object, saliency the union, exactly as grayscale folders holding those masks."""
    from pycocotools.coco import COCO

    from unsegcli.io.instances import instance_scores

    inst = predicted["maskcut"]
    largest, union = data / "largest", data / "union"
    largest.mkdir()
    union.mkdir()
    objects, stored = {}, {}
    for f in pngs(inst):
        stored[f.name] = instance_scores(f)
        with Image.open(f) as im:
            assert im.mode == "P"
            lab = np.asarray(im)
        ids = np.unique(lab[lab > 0])
        assert 1 <= len(ids) <= 3 and ids.tolist() == list(range(1, len(ids) + 1))  # discovery order, no gaps
        objects[f.name] = lab
        counts = np.bincount(lab.ravel(), minlength=256)
        counts[0] = 0
        (largest / f.name).write_bytes(encode_png((lab == counts.argmax()).astype(np.uint8) * 255))
        (union / f.name).write_bytes(encode_png((lab > 0).astype(np.uint8) * 255))

    pseudo = data / "pseudo_maskcut.json"
    images = data / "d" / "images"
    ok("boxes", inst, "--images", images, "--multi", "--min-area", "0", "--out", pseudo, "-j", "0", "-q")
    coco = COCO(str(pseudo))
    for img in coco.dataset["images"]:
        lab = objects[img["file_name"]]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        want = object_boxes(lab)
        assert sorted(a["bbox"] for a in anns) == sorted(want.values())  # one annotation per object
        for a in anns:
            k = next(k for k, b in want.items() if b == a["bbox"])
            assert np.array_equal(coco.annToMask(a).astype(bool), lab == k)
            assert a["score"] == pytest.approx(stored[img["file_name"]][k])  # the score the PNG stores

    assert any(len(np.unique(lab)) > 2 for lab in objects.values())  # some image holds several objects
    voc = data / "d" / "VOCdevkit" / "VOC2007"
    per_image = {}
    for name, folder in (("inst", inst), ("largest", largest), ("union", union)):
        csv = data / f"cl_{name}.csv"
        ok("corloc", "voc07", "--root", voc, "--pred", folder, "--per-image", csv, "-j", "0")
        per_image[name] = csv.read_text()
    assert per_image["inst"] == per_image["largest"] != per_image["union"]  # best IoU per image: discriminating
    gt = data / "d" / "masks"
    iou = {}
    for name, folder in (("inst", inst), ("union", union), ("largest", largest)):
        csv = data / f"sal_{name}.csv"
        ok("eval", "saliency", "--gt", gt, "--pred", folder, "--per-image", csv, "-j", "0")
        iou[name] = csv.read_text()
    assert iou["inst"] == iou["union"] != iou["largest"]


def test_boxes_shards_of_instance_masks_merge_to_one_run(data, predicted, tmp_path):
    inst, images = predicted["maskcut"], data / "d" / "images"
    ok("boxes", inst, "--images", images, "--multi", "--out", tmp_path / "one.json", "-j", "0", "-q")
    for i in (0, 1):
        ok(
            "boxes",
            inst,
            "--images",
            images,
            "--multi",
            "--shard",
            f"{i}/2",
            "--out",
            tmp_path / f"p{i}.json",
            "-j",
            "0",
            "-q",
        )
    ok("merge", tmp_path / "p0.json", tmp_path / "p1.json", "--out", tmp_path / "merged.json")
    assert json.loads((tmp_path / "merged.json").read_text()) == json.loads((tmp_path / "one.json").read_text())


def test_boxes_of_hand_made_instance_masks(tmp_path):
    """Objects 1, 2 and a two-piece object 3 whose box spans the image: one box per object, largest
    box first (as components of grayscale masks); --split-components boxes each piece."""
    lab = np.zeros((40, 60), np.uint8)
    lab[5:15, 10:30] = 1  # box 20x10
    lab[20:35, 40:55] = 2  # box 15x15
    lab[30:38, 2:6] = 3
    lab[0:3, 50:60] = 3  # object 3: box (2, 0)-(60, 38)
    masks = tmp_path / "inst"
    masks.mkdir()
    write_instances(masks / "a.png", lab)

    def bboxes(*args: str) -> list[list[float]]:
        ok("boxes", masks, "--out", tmp_path / "b.json", "-q", "-j", "0", *args)
        anns = json.loads((tmp_path / "b.json").read_text())["annotations"]
        assert all(a["score"] == 1.0 for a in anns)
        return [a["bbox"] for a in anns]

    assert bboxes() == [[2, 0, 58, 38]]
    assert bboxes("--multi") == [[2, 0, 58, 38], [40, 20, 15, 15], [10, 5, 20, 10]]
    assert bboxes("--multi", "--split-components") == [[40, 20, 15, 15], [10, 5, 20, 10], [2, 30, 4, 8], [50, 0, 10, 3]]
    assert bboxes("--multi", "--min-area", "0.5") == [[2, 0, 58, 38]]  # 2204 px of 2400: the only one over half


def test_rerun_resumes_and_other_options_are_refused(data, predicted):
    folder, images = predicted["tokencut"], data / "d" / "images"
    backbone = data / "dino_tiny16.pth"
    res = ok("predict", images, "--out", folder, "--method", "tokencut", "--backbone", backbone, "-j", "0")
    assert "skipped 6" in res.output
    res = run("predict", images, "--out", folder, "--method", "tokencut", "--tau", "0.3", "--backbone", backbone)
    assert res.exit_code == 2 and "other settings" in res.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--method", "lost", "--tau", "0.3"], "--tau: not an option of --method lost"),
        (["--method", "tokencut", "--weights", "x.pt"], "--weights names a checkpoint"),
        (["--method", "maskcut", "--binary"], "--binary applies to soft masks"),
        (["--method", "maskcut", "--refine", "bilateral"], "--refine applies to soft masks"),
        (["--method", "tokencut", "--size", "64"], "--size: options of checkpoints"),
        (["--tau", "0.3"], "--tau: options of the training-free methods"),
        (["--method", "tokencut", "--geometry", "crop"], "crop"),
        (["--method", "tokencut", "--backbone", "no/such/dino.pth"], "not found"),
    ],
)
def test_usage_errors(tmp_path, args, words):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    res = run("predict", tmp_path / "images", "--out", tmp_path / "out", *args)
    assert res.exit_code == 2, res.output
    assert words in " ".join(res.output.split())
    assert not (tmp_path / "out" / "a.png").exists()


def test_missing_official_backbone_names_the_fetch_command(tmp_path, monkeypatch):
    from unsegcli.model import registry

    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path / "weights")
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    res = run("predict", tmp_path / "images", "--out", tmp_path / "out", "--method", "maskcut")
    assert res.exit_code == 1 and "unseg weights fetch dino-vitb8" in " ".join(res.output.split())


def test_show_draws_every_object_of_instance_masks(data, predicted, tmp_path):
    total = 0
    for f in pngs(predicted["maskcut"]):
        with Image.open(f) as im:
            total += len(np.unique(np.asarray(im))) - 1  # every synth image has background
    res = ok("show", predicted["maskcut"], "--images", data / "d" / "images", "--out", tmp_path / "rev", "-j", "0")
    assert f"boxes {total}" in res.output and len(list((tmp_path / "rev" / "overlays").glob("*.png"))) == 6


def test_help_shows_each_methods_official_defaults():
    out = CliRunner().invoke(app, ["predict", "--help"], env={"COLUMNS": "300"}).output
    assert "Training-free methods" in out
    # main_tokencut.py --tau 0.2; CutLER's README and CuVLER's VoteCut 0.15
    assert "[default: (tokencut: 0.2; maskcut, votecut: 0.15)]" in out
    assert "[default: (tokencut, lost: pad; maskcut: fixed)]" in out and "[default: (480)]" in out


@pytest.mark.parametrize(
    ("flag", "value", "ok"),
    [
        ("--tau", "1", False),
        ("--tau", "-1", True),
        ("--eps", "0", False),
        ("--eps", "1", False),
        ("--max-objects", "256", False),
    ],
)
def test_option_ranges_are_the_library_ranges(cli, tmp_path, flag, value, ok):
    """The flags are made from the options' declarations, so the CLI's range is the library's: --tau 1 and
    --eps 0 were accepted by the CLI and refused per image by the library before."""
    from unsegcli.config import check_option
    from unsegcli.methods import options_class
    from unsegcli.methods.spectral.options import MaskCutOptions

    res = cli("predict", tmp_path / "none.jpg", "--out", tmp_path / "o", "--method", "maskcut", flag, value)
    field = {f.name: f for f in dataclasses.fields(MaskCutOptions)}[flag[2:].replace("-", "_")]
    try:
        check_option(field.name, float(value), field.metadata)
        library_ok = True
    except UsageError:
        library_ok = False
    assert library_ok == ok and options_class("maskcut") is MaskCutOptions
    if not ok:
        assert res.exit_code == 2 and flag in res.output


def test_votecut_on_dino_and_dinov2_files_through_boxes_corloc_and_show(data, tmp_path):
    """Issue 19's chain as a user runs it: random-weight DINO and DINOv2 files, predict -> boxes --min-score ->
    corloc -> show --sort score. Known answers: each object's stored vote share, read back from its PNG."""
    from pycocotools.coco import COCO

    from unsegcli.io.instances import decode_instances, instance_scores

    from ..methods.spectral.files import save_dinov2

    v2 = save_dinov2(tmp_path / "dinov2_tiny.pth", seed=2)
    masks, images = tmp_path / "vc", data / "d" / "images"
    ok(
        "predict",
        images,
        "--out",
        masks,
        "--method",
        "votecut",
        "--backbones",
        f"{data / 'dino_tiny16.pth'},{v2}",
        "--fixed-size",
        "160",
        "-j",
        "0",
        "-q",
    )  # fmt: skip  (10x10 patches: proposals need 5 x 5)
    shares = {}  # file name -> the shares of the objects the PNG holds
    for f in pngs(masks):
        present = set(np.unique(decode_instances(f)).tolist()) - {0}
        scores = instance_scores(f) if present else {}  # random weights: an image may get no proposal at all
        assert present <= set(scores) and (not present or max(scores.values()) == 1.0)  # the best-voted group: 1
        shares[f.name] = sorted(scores[k] for k in present)
    assert len(shares) == 6 and sum(len(v) for v in shares.values()) > len(shares)
    every = sorted(s for v in shares.values() for s in v)
    assert every[0] < every[-1]  # with two backbones: groups of one vote (0.5) and of two (1.0)
    threshold = (every[0] + every[-1]) / 2  # some objects fall below it, some stay
    pseudo = tmp_path / "vc.json"
    ok("boxes", masks, "--images", images, "--multi", "--min-score", str(threshold), "--min-area", "0", "--out",
       pseudo, "-j", "0", "-q")  # fmt: skip
    coco = COCO(str(pseudo))
    by_id = {img["id"]: img["file_name"] for img in coco.dataset["images"]}
    kept: dict[str, list[float]] = {name: [] for name in shares}
    for a in coco.dataset["annotations"]:
        kept[Path(by_id[a["image_id"]]).with_suffix(".png").name].append(a["score"])
    for name, values in shares.items():  # exactly the objects whose share reaches the threshold, with that score
        assert sorted(kept[name]) == pytest.approx([s for s in values if s >= threshold])
    result = tmp_path / "corloc.json"
    ok("corloc", "voc07", "--root", data / "d" / "VOCdevkit" / "VOC2007", "--pred", masks, "--json", result, "-j", "0")
    assert json.loads(result.read_text())["images"] == 6
    res = ok("show", pseudo, "--images", images, "--out", tmp_path / "rev", "--sort", "score", "-j", "0")
    assert f"boxes {len(coco.dataset['annotations'])}" in res.output
