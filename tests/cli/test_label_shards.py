"""`unseg boxes` from mask shards to label shards, and `unseg merge` of label shards, through the real CLI: the merge
equals one `unseg boxes` run on the same masks byte for byte (coco, jsonl; with an image shard per mask shard);
re-runs skip and rewrite the same bytes; a failed image keeps its row; a damaged label shard or member is named and
the rest merged; fsspec URLs; usage errors before any work."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unsegcli.io.masks import mask_png

from .test_shards_cli import make_shard, members

TAG = "0123456789abcdef"  # a settings tag as `unseg predict` stores it in each mask


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """6 synth images and their masks (tagged), a blank mask (an image without boxes), and two shards of each:
    masks-00000{0,1}.tar, images-00000{0,1}.tar."""
    from typer.testing import CliRunner

    from unsegcli.cli.app import app

    root = tmp_path_factory.mktemp("labelshards")
    res = CliRunner().invoke(app, ["synth", str(root / "d"), "--n", "6", "--size", "64", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    images, masks = root / "d" / "images", root / "masks"
    masks.mkdir()
    for p in sorted((root / "d" / "masks").iterdir()):
        (masks / p.name).write_bytes(mask_png(np.asarray(Image.open(p)), TAG))
    (masks / "zz_blank.png").write_bytes(mask_png(np.zeros((20, 30), np.uint8), TAG))
    Image.new("RGB", (30, 20)).save(images / "zz_blank.png")
    for i, part in enumerate((slice(0, 4), slice(4, 7))):
        make_shard(root / f"masks-00000{i}.tar", sorted(masks.iterdir())[part])
        make_shard(root / f"images-00000{i}.tar", sorted(images.iterdir())[part])
    return root


def test_label_shards_merge_to_the_labels_of_one_run(data, cli, tmp_path):
    shards = str(data / "masks-{000000..000001}.tar")
    out = str(tmp_path / "labels-{shard}.tar")
    res = cli("boxes", shards, "--multi", "--out", out, "-j", "0")
    assert res.exit_code == 0, res.output
    assert "shards 2 · written 2 · skipped 0" in res.stderr and "masks 7 · written 7 · failed 0" in res.stderr
    first, second = tmp_path / "labels-000000.tar", tmp_path / "labels-000001.tar"
    assert list(members(first)) == ["synth_0_000000.json", "synth_0_000001.json", "synth_0_000002.json",
                                    "synth_0_000003.json"]  # fmt: skip
    rows = {k: json.loads(v) for k, v in {**members(first), **members(second)}.items()}
    blank = rows["zz_blank.json"]  # an image without boxes keeps its member
    assert blank["key"] == "zz_blank.png" and blank["boxes"] == [] and (blank["height"], blank["width"]) == (20, 30)
    assert all(r["settings"] == TAG and r["error"] == "" for r in rows.values())
    assert sum(len(r["boxes"]) for r in rows.values()) > 0 and all(
        len(r["rles"]) == len(r["boxes"]) for r in rows.values()
    )

    for fmt, suffix in (("coco", "json"), ("jsonl", "jsonl")):  # the merge is one run's file, byte for byte
        merged, one = tmp_path / f"merged.{suffix}", tmp_path / f"one.{suffix}"
        res = cli("merge", first, second, "--format", fmt, "--out", merged)
        assert res.exit_code == 0, res.output
        assert cli("boxes", shards, "--multi", "--format", fmt, "--out", one, "-q").exit_code == 0
        assert merged.read_bytes() == one.read_bytes()
    assert len(json.loads((tmp_path / "one.json").read_text())["images"]) == 7

    before = first.read_bytes(), second.read_bytes()
    res = cli("boxes", shards, "--multi", "--out", out, "-j", "0")  # resumes: nothing to do
    assert res.exit_code == 0 and "written 0 · skipped 2 (existing)" in res.stderr
    first.unlink()  # a missing shard is made again, the same bytes; --overwrite rewrites the same bytes
    assert cli("boxes", shards, "--multi", "--out", out, "-j", "0", "-q").exit_code == 0
    assert first.read_bytes() == before[0]
    assert cli("boxes", shards, "--multi", "--out", out, "-j", "2", "--overwrite", "-q").exit_code == 0
    assert (first.read_bytes(), second.read_bytes()) == before
    res = cli("boxes", shards, "--out", out, "-j", "0")  # other box options: refused before any work
    assert res.exit_code == 2 and "was made with other settings (box options" in res.stderr
    assert (first.read_bytes(), second.read_bytes()) == before
    assert cli("boxes", shards, "--out", out, "-j", "0", "--overwrite", "-q").exit_code == 0
    boxes = [len(json.loads(v)["boxes"]) for v in members(first).values()]
    assert max(len(json.loads(v)["boxes"]) for v in members(before[0]).values()) > 1
    assert max(boxes) == 1  # the largest box only


def test_an_image_shard_per_mask_shard(data, cli, tmp_path):
    """--images by {shard}: file names and sizes from each mask shard's image shard, as one run on the folder."""
    res = cli("boxes", str(data / "masks-{000000..000001}.tar"), "--images", str(data / "images-{shard}.tar"),
              "--multi", "--out", str(tmp_path / "l-{shard}.tar"), "-j", "0", "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    res = cli("merge", tmp_path / "l-000000.tar", tmp_path / "l-000001.tar", "--out", tmp_path / "merged.json")
    assert res.exit_code == 0, res.output
    one = tmp_path / "one.json"
    assert cli("boxes", data / "masks", "--images", data / "d" / "images", "--multi", "--out", one).exit_code == 0
    assert (tmp_path / "merged.json").read_bytes() == one.read_bytes()

    wrong = ["boxes", data / "masks-000000.tar", "--images", data / "images-000001.tar", "--out", tmp_path / "w.tar"]
    res = cli(*wrong, "-q")  # masks without their images: each keeps its row, named by the shards, not temp paths
    assert res.exit_code == 1 and "/unseg-" not in res.stderr
    row = json.loads(members(tmp_path / "w.tar")["synth_0_000000.json"])
    assert row["error"] == f"{data}/masks-000000.tar:synth_0_000000.png: no image 'synth_0_000000.*' under " + str(
        data / "images-000001.tar"
    )
    written = (tmp_path / "w.tar").read_bytes()
    assert cli(*wrong, "--overwrite", "-q").exit_code == 1 and (tmp_path / "w.tar").read_bytes() == written


def test_a_failed_image_keeps_its_row(data, cli, tmp_path):
    colour = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(colour, "PNG")
    shard = make_shard(tmp_path / "m-7.tar", sorted((data / "masks").iterdir())[:2], {"photo.png": colour.getvalue()})
    res = cli("boxes", shard, "--multi", "--out", tmp_path / "l-{shard}.tar", "-j", "0")
    assert res.exit_code == 1 and f"{shard}:photo.png: " in res.stderr and "written 2 · failed 1" in res.stderr
    rows = {k: json.loads(v) for k, v in members(tmp_path / "l-7.tar").items()}
    assert list(rows) == ["photo.json", "synth_0_000000.json", "synth_0_000001.json"]
    assert rows["photo.json"]["error"].startswith(f"{shard}:photo.png: ") and rows["photo.json"]["boxes"] == []
    res = cli("merge", tmp_path / "l-7.tar", "--format", "jsonl", "--out", tmp_path / "m.jsonl")
    assert res.exit_code == 1 and f"{shard}:photo.png: " in res.stderr  # named again, the others written
    assert [json.loads(r)["file_name"] for r in (tmp_path / "m.jsonl").read_text().splitlines()] == [
        "synth_0_000000.png",
        "synth_0_000001.png",
    ]


def test_a_damaged_label_shard_or_member_is_named_and_the_rest_merged(data, cli, tmp_path):
    out = str(tmp_path / "labels-{shard}.tar")
    assert cli("boxes", str(data / "masks-{000000..000001}.tar"), "--multi", "--out", out, "-q").exit_code == 0
    whole = (tmp_path / "labels-000001.tar").read_bytes()
    with tarfile.open(tmp_path / "labels-000001.tar") as tar:
        second = tar.getmembers()[1].offset
    cut = tmp_path / "cut-000001.tar"
    cut.write_bytes(whole[: second + 600])  # the first member whole, the second cut in its row
    typed = json.loads(members(tmp_path / "labels-000000.tar")["synth_0_000000.json"]) | {"height": "64"}
    odd = make_shard(tmp_path / "odd-2.tar", [], {"a.json": b"{not json", "b.json": b'{"key": "b.png"}',
                                                  "c.json": json.dumps(typed).encode()})  # fmt: skip
    res = cli("merge", tmp_path / "labels-000000.tar", cut, odd, "--format", "jsonl", "--out", tmp_path / "m.jsonl")
    assert res.exit_code == 1
    assert f"{cut}: truncated or not a tar shard after 1 members" in res.stderr
    assert f"{odd}:a.json: not a label row (not JSON" in res.stderr
    assert f"{odd}:b.json: not a label row of `unseg boxes`: no height" in res.stderr
    assert f"{odd}:c.json: not a label row of `unseg boxes`: a column of the wrong type" in res.stderr
    names = [json.loads(r)["file_name"] for r in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert names == [f"synth_0_00000{i}.png" for i in range(5)] and "failed 4" in res.stderr


def test_label_shards_on_urls(data, cli, tmp_path):
    fsspec = pytest.importorskip("fsspec", reason="the cloud extra (fsspec) is not installed")
    fs = fsspec.filesystem("memory")
    try:
        res = cli("boxes", str(data / "masks-{000000..000001}.tar"), "--multi",
                  "--out", "memory://h1labels/l-{shard}.tar", "-q")  # fmt: skip
        assert res.exit_code == 0, res.output
        res = cli("merge", "memory://h1labels/l-{000000..000001}.tar", "--out", tmp_path / "m.json")
        assert res.exit_code == 0, res.output
        assert cli("boxes", data / "masks", "--multi", "--out", tmp_path / "one.json").exit_code == 0
        assert (tmp_path / "m.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    finally:
        fs.rm("/h1labels", recursive=True)


@pytest.mark.parametrize(
    "args, said",
    [
        (["{masks}", "--out", "{tmp}/l-{{shard}}.tar"], "made from shards of masks"),
        (["{shards}", "--format", "yolo", "--out", "{tmp}/l-{{shard}}.tar"], "not --format yolo"),
        (["{shards}", "--format", "coco", "--out", "{tmp}/l-{{shard}}.tar"], "choose it when merging"),
        (["{shards}", "--segmentation", "polygon", "--out", "{tmp}/l-{{shard}}.tar"], "not --segmentation polygon"),
        (["{shards}", "--out", "{tmp}/l-{{shard}}.json"], "must end in .tar"),
        (["{shards}", "--out", "{tmp}/one.tar"], "is one shard for 2 input shards"),
        (["{shards}", "--out", "{tmp}/labels.tar"], "--out {tmp}/labels-{{shard}}.tar, or give a folder"),
        (["{shards}", "--root", "{tmp}", "--out", "{tmp}/l-{{shard}}.tar"], "--root and --null"),
        (["{shards}", "--images", "{tmp}/i-{{shard}}.tar", "--out", "{tmp}/l-{{shard}}.tar"], "--images not found"),
    ],
)
def test_usage_errors_before_any_work(data, cli, tmp_path, args, said):
    fill = {"masks": data / "masks", "shards": data / "masks-{000000..000001}.tar", "tmp": tmp_path}
    res = cli("boxes", *[a.format(**fill) for a in args])
    assert res.exit_code == 2 and said.format(**fill) in " ".join(res.stderr.split()), res.output
    assert list(tmp_path.iterdir()) == []


def test_merge_refuses_label_shards_beside_other_parts(data, cli, tmp_path):
    (tmp_path / "part.json").write_text(json.dumps({"images": [], "annotations": []}))
    res = cli("merge", data / "masks-000000.tar", tmp_path / "part.json", "--out", tmp_path / "m.json")
    assert res.exit_code == 2 and "cannot merge label shards" in res.stderr and not (tmp_path / "m.json").exists()
    res = cli("merge", tmp_path / "nothere-000000.tar", "--out", tmp_path / "m.json")
    assert res.exit_code == 2 and "file not found" in res.stderr
