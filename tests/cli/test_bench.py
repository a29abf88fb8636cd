"""`unseg bench`: discovery of every benchmark in its real folder layout, a table whose every cell equals what
`unseg corloc` / `unseg eval saliency` report for the same masks, published numbers beside ours, and re-runs that
compute nothing new."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from unsegcli.io.benchmarks import BENCHMARKS, discover, published
from unsegcli.synth import generate

from ..helpers import save_dino_backbone, torchrun

N = 3  # images per benchmark
SVG = "{http://www.w3.org/2000/svg}"
SIZE = 48


def _jpg(path: Path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])


def _png(path: Path, mask) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), mask)


def _voc(base: Path, seed: int) -> None:
    """VOCdevkit/VOC20xx: JPEGImages, Annotations (1-based inclusive boxes), ImageSets/Main/trainval.txt."""
    ids = []
    for i in range(N):
        s, stem = generate(seed, i, SIZE), f"{seed}_{i:06d}"
        _jpg(base / "JPEGImages" / f"{stem}.jpg", s.image)
        h, w = s.mask.shape
        objs = "".join(
            f"<object><name>x</name><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax>"
            f"<ymax>{y1}</ymax></bndbox></object>"
            for x0, y0, x1, y1 in s.boxes
        )
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{w}</width><height>{h}</height></size>"
            f"{objs}</annotation>"
        )
        ids.append(stem)
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids) + "\n")


def _coco(root: Path, split: str, seed: int, prefix: str) -> list[str]:
    """COCO images and instances JSON; each object's segmentation is the generated mask inside its box (RLE)."""
    images, anns = [], []
    for i in range(N):
        s = generate(seed, i, SIZE)
        name = f"{prefix}{i + 1:012d}.jpg"
        _jpg(root / split / name, s.image)
        h, w = s.mask.shape
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for x0, y0, x1, y1 in s.boxes:
            bbox = [x0, y0, x1 - x0, y1 - y0]
            obj = np.zeros((h, w), np.uint8)
            obj[y0:y1, x0:x1] = s.mask[y0:y1, x0:x1] > 0
            rle = mask_utils.encode(np.asfortranarray(obj))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": bbox,
                         "area": int(obj.sum()), "iscrowd": 0,
                         "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})  # fmt: skip
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return [im["file_name"] for im in images]


def _saliency(base: Path, images: str, gt: str, seed: int) -> None:
    for i in range(N):
        s = generate(seed, i, SIZE)
        _jpg(base / images / f"s{seed}_{i}.jpg", s.image)
        _png(base / gt / f"s{seed}_{i}.png", s.mask)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Every benchmark in the layout its official download extracts to (VOC12 in the bare VOC2012/ variant)."""
    root = tmp_path_factory.mktemp("datasets")
    _voc(root / "VOCdevkit" / "VOC2007", 7)
    _voc(root / "VOC2012", 12)
    names = _coco(root / "COCO", "train2014", 20, "COCO_train2014_")
    (root / "COCO" / "coco_20k_filenames.txt").write_text("".join(f"train2014/{n}\n" for n in names))
    _coco(root / "COCO", "val2017", 17, "")
    _saliency(root / "ECSSD", "images", "ground_truth_mask", 1)
    _saliency(root / "DUTS-TE", "DUTS-TE-Image", "DUTS-TE-Mask", 2)
    _saliency(root / "DUT-OMRON", "DUT-OMRON-image", "pixelwiseGT-new-PNG", 3)
    return root


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    return save_dino_backbone(tmp_path_factory.mktemp("bb") / "tiny_dino.pth", patch_size=8, img_size=48)


def test_discovery_finds_every_layout_and_lists_the_missing_with_where_to_get_them(data, tmp_path):
    found = discover(data)
    assert [b.name for b in found.found] == list(BENCHMARKS) and not found.missing
    by = {b.name: b for b in found.found}
    assert by["voc07"].gt == data / "VOCdevkit" / "VOC2007" and by["voc12"].gt == data / "VOC2012"
    assert by["coco20k"].keys == ["1", "2", "3"] and by["coco20k"].files[0] == "COCO_train2014_000000000001.jpg"
    assert by["dut-omron"].files == [f"s3_{i}.jpg" for i in range(N)]
    assert by["dut-omron"].keys == [f"s3_{i}.png" for i in range(N)]
    empty = discover(tmp_path)
    assert not empty.found and [s.name for s in empty.missing] == list(BENCHMARKS)
    assert all("http" in s.how for s in empty.missing)


def test_synth_benchmarks_writes_every_layout_bench_finds(cli, tmp_path):
    assert cli("synth", tmp_path / "d", "--n", "2", "--size", "32", "--benchmarks", "-q").exit_code == 0
    found = discover(tmp_path / "d")
    assert [b.name for b in found.found] == list(BENCHMARKS) and not found.missing
    by = {b.name: b for b in found.found}
    assert all(len(b.files) == 2 and not b.problems for b in found.found)
    assert by["coco20k"].keys == ["1", "2"] and by["voc12"].gt == tmp_path / "d" / "VOCdevkit" / "VOC2012"
    coco = json.loads(by["coco-val2017"].gt.read_text())
    assert coco["annotations"] and all(a["segmentation"]["counts"] for a in coco["annotations"])


def test_published_numbers_carry_their_source():
    table = published()
    tokencut = [p for p in table if p.method == "tokencut" and p.dataset == "voc07"]
    assert tokencut[0].metrics == {"corloc": 68.8} and "Table 3" in tokencut[0].source
    assert all(p.source and p.metrics for p in table)


def _cells(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["cells"]


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_bench_table_equals_the_commands_and_reruns_compute_nothing(cli, data, backbone, tiny_ckpt, tmp_path):
    out = tmp_path / "bench"
    common = ["--data", data, "--out", out, "--methods", "tokencut,maskcut", "--backbones", backbone,
              "--option", "maskcut.fixed_size=48", "--weights", f"move={tiny_ckpt}"]  # fmt: skip

    # a quick look first: two images of three benchmarks, scored on the first two images' GT
    r = cli("bench", *common, "--limit", "2", "--datasets", "voc07,ecssd,coco-val2017")
    assert r.exit_code == 0, r.output
    quick = _cells(out)
    assert quick and all(c["images"] == 2 for c in quick)
    view = json.loads((out / "gt" / "coco-val2017-first2.json").read_text())
    assert [i["id"] for i in view["images"]] == [1, 2] and {a["image_id"] for a in view["annotations"]} == {1, 2}
    first = _mtimes(out / "masks")

    r = cli("bench", *common)
    assert r.exit_code == 0, r.output
    cells = _cells(out)
    # the full run predicted only the third image of each job: the quick run's masks are untouched
    assert all(_mtimes(out / "masks").get(p) == t for p, t in first.items() if ".timing." not in p)
    kinds = {(c["benchmark"], c["method"], c["refine"]) for c in cells}
    assert ("ecssd", "tokencut", "bilateral") in kinds and ("ecssd", "maskcut", "bilateral") not in kinds
    assert ("voc07", "move", None) in kinds and ("coco20k", "maskcut", None) in kinds
    assert ("coco-val2017", "maskcut", None) in kinds
    # TokenCut runs each protocol's official geometry: padded for CorLoc, resized for saliency
    options = {(c["benchmark"], c["method"]): c["options"] for c in cells if c["refine"] is None}
    assert options[("voc07", "tokencut")] == {} and options[("ecssd", "tokencut")] == {"geometry": "resize"}
    assert len(cells) == 3 * 3 + 3 * 3 + 2 * 3 + 3  # corloc + saliency + bilateral rows of soft masks + detection

    for c in cells:
        js = tmp_path / "one.json"
        if c["benchmark"] == "coco-val2017":  # boxes, then box AP and mask AP, as the cell's command says
            boxes = tmp_path / "boxes.json"
            r = cli("boxes", c["predictions"], "--images", data / "COCO" / "val2017", "--multi", "--format", "coco",
                    "--out", boxes, "--workers", "0")  # fmt: skip
            assert r.exit_code == 0, r.output
            gt = data / "COCO" / "annotations" / "instances_val2017.json"
            for kind, iou in (("box", "bbox"), ("mask", "segm")):
                r = cli("eval", "detection", "--gt", gt, "--pred", boxes, "--iou-type", iou, "--json", js)
                assert r.exit_code == 0, r.output
                one = json.loads(js.read_text())
                assert {k: c["metrics"][f"{kind}_{k}"] for k in ("AP", "AP50", "AP75")} == {
                    k: one[k] for k in ("AP", "AP50", "AP75")
                }, c["id"]
                assert c["metrics"]["detections"] == one["detections"] > 0
            assert "--iou-type segm" in c["reproduce"] and c["images"] == N
            continue
        if c["benchmark"] == "voc07":
            args = ["corloc", "voc07", "--root", data / "VOCdevkit"]
        elif c["benchmark"] == "voc12":
            args = ["corloc", "voc12", "--root", data / "VOC2012"]
        elif c["benchmark"] == "coco20k":
            args = ["corloc", "coco20k", "--ann", data / "COCO" / "annotations" / "instances_train2014.json",
                    "--list", data / "COCO" / "coco_20k_filenames.txt"]  # fmt: skip
        else:
            gt = {"ecssd": "ECSSD/ground_truth_mask", "duts-te": "DUTS-TE/DUTS-TE-Mask",
                  "dut-omron": "DUT-OMRON/pixelwiseGT-new-PNG"}[c["benchmark"]]  # fmt: skip
            args = ["eval", "saliency", "--gt", data / gt]
        r = cli(*args, "--pred", c["predictions"], "--json", js, "--workers", "0")
        assert r.exit_code == 0, r.output
        assert c["images"] == N and json.loads(js.read_text()) == c["metrics"], c["id"]
        assert c["settings"]["backbone" if c["method"] != "move" else "weights"]  # weights by content hash

    # the published number beside ours, and the difference
    move = next(c for c in cells if c["benchmark"] == "ecssd" and c["method"] == "move" and c["refine"] is None)
    assert move["published"]["metrics"] == {"accuracy": 0.954, "iou": 0.830, "max_fbeta": 0.916}
    assert move["difference"]["iou"] == pytest.approx(move["metrics"]["iou"] - 0.830)
    assert move["seconds_per_image"] > 0 and move["peak_rss_mb"] > 0
    table = (out / "results.md").read_text()
    assert "| voc07 | maskcut (fixed_size=48) |" in table and "| ecssd | move |" in table
    assert "0.954 / 0.830 / 0.916" in table and "MOVE (NeurIPS 2022) Table 1" in table
    # the plots: per benchmark the headline metric, ours beside the published number, and against time
    svg = ET.parse(out / "plots" / "ecssd.svg").getroot()
    bars = {(r.get("data-series"), r.get("data-group")): float(r.get("data-value")) for r in svg.iter(f"{SVG}rect")
            if r.get("data-value")}  # fmt: skip
    assert bars[("unseg", "move")] == move["metrics"]["iou"] and bars[("published", "move")] == 0.830
    points = ET.parse(out / "plots" / "voc07-speed.svg").getroot().iter(f"{SVG}circle")
    assert {p.get("data-label") for p in points} == {"move", f"tokencut @{backbone.name}",
                                                    f"maskcut (fixed_size=48) @{backbone.name}"}  # fmt: skip
    assert "[ecssd.svg](plots/ecssd.svg)" in table
    assert "## Class-agnostic detection (AP, %)" in table and "| coco-val2017 | maskcut (fixed_size=48) |" in table
    assert len(list((out / "logs").glob("*.log"))) == len(cells) + len(quick)

    # a re-run computes nothing: no mask, cell or log is written again, and the table is the same
    before = _mtimes(out)
    r = cli("bench", *common)
    assert r.exit_code == 0 and "computed 0" in r.output, r.output
    after = _mtimes(out)
    assert {p: t for p, t in after.items() if "results." not in p} == {
        p: t for p, t in before.items() if "results." not in p
    }
    assert _cells(out) == cells

    # another tool's masks in the table: the same numbers as the masks they are
    ext = tmp_path / "ext"
    tc = {c["benchmark"]: c for c in cells if c["method"] == "tokencut" and c["refine"] is None}
    for name in ("ecssd", "voc07"):
        shutil.copytree(tc[name]["predictions"], ext / name)
    r = cli("bench", "--data", data, "--out", tmp_path / "ext_bench", "--pred", f"mytool={ext}",
            "--datasets", "ecssd,voc07")  # fmt: skip
    assert r.exit_code == 0, r.output
    mine = {c["benchmark"]: c["metrics"] for c in _cells(tmp_path / "ext_bench")}
    assert mine == {"ecssd": tc["ecssd"]["metrics"], "voc07": tc["voc07"]["metrics"]}


def test_bench_usage_errors_come_before_any_work(cli, data, tmp_path):
    r = cli("bench", "--data", data, "--out", tmp_path / "o", "--methods", "nosuch")
    assert r.exit_code == 2 and "--methods" in r.output and "nosuch" in r.output
    r = cli("bench", "--data", data, "--out", tmp_path / "o", "--weights", "move")
    assert r.exit_code == 2 and "NAME=VALUE" in r.output
    r = cli("bench", "--data", data, "--out", tmp_path / "o", "--methods", "tokencut", "--option", "tokencut.tau=2")
    assert r.exit_code == 2 and "tau" in r.output
    assert not (tmp_path / "o").exists()


def test_bench_shards_make_the_masks_and_a_run_without_shard_scores_them(cli, data, backbone, tmp_path):
    """Two `--shard` processes (a Slurm array) make every mask between them and score nothing; the run without
    a shard predicts nothing more and scores the same numbers as one process that did everything."""
    common = ["--data", data, "--methods", "tokencut", "--backbones", backbone, "--datasets", "voc07,ecssd"]
    one = tmp_path / "one"
    assert cli("bench", *common, "--out", one).exit_code == 0
    out = tmp_path / "sharded"
    for i in (0, 1):
        r = cli("bench", *common, "--out", out, "--shard", f"{i}/2")
        assert r.exit_code == 0 and "predicted" in r.output and "without --shard" in r.output, r.output
        assert not (out / "results.json").exists() and not (out / "cells").exists()
    masks = sorted(p.relative_to(out) for p in (out / "masks").rglob("*.png"))
    assert masks == sorted(p.relative_to(one) for p in (one / "masks").rglob("*.png"))  # every mask, once
    assert len(list((out / "masks").glob("*/*.timing.*of2.json"))) == 2 * 3  # per shard: voc07, ecssd, ecssd+BS
    before = _mtimes(out / "masks")
    r = cli("bench", *common, "--out", out)
    assert r.exit_code == 0 and "computed 3" in r.output, r.output
    assert _mtimes(out / "masks") == before  # nothing predicted or refined again
    assert [c["metrics"] for c in _cells(out)] == [c["metrics"] for c in _cells(one)]
    r = cli("bench", *common, "--out", out, "--shard", "2/2")
    assert r.exit_code == 2 and "--shard" in r.output


@pytest.mark.slow
def test_bench_under_torchrun_equals_one_process(cli, data, backbone, tmp_path):
    common = ["--data", data, "--methods", "tokencut", "--backbones", backbone, "--datasets", "voc07,ecssd"]
    one = tmp_path / "one"
    assert cli("bench", *common, "--out", one).exit_code == 0
    res = torchrun(["bench", *common, "--out", tmp_path / "two"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [c["metrics"] for c in _cells(tmp_path / "two")] == [c["metrics"] for c in _cells(one)]
    timing = list((tmp_path / "two" / "masks").glob("*/*.timing.*of2.json"))
    assert {p.name.split(".timing.")[1] for p in timing} == {"0of2.json", "1of2.json"}  # both ranks predicted
    assert not list((tmp_path / "two" / "ranks").iterdir())  # rank 0 removed the launch's markers
