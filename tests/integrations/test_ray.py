"""unsegcli.ray: its callables give the masks of `unseg predict` byte for byte and the labels of `unseg boxes`
record for record (an EXIF-rotated JPEG included), called directly (no Ray needed) and inside a Ray Data pipeline
on a local 2-CPU Ray; `unseg merge` turns their parquet parts into every format, and refuses a part without the
label columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unsegcli.io.masks import mask_path_for
from unsegcli.labels.rows import COLUMNS, RowParts, merge_rows
from unsegcli.labels.runner import write_labels
from unsegcli.ray import IMAGE_EXTENSIONS, Boxes, MaskPredictor, image_key

from ..helpers import random_image, save_dino_backbone, write_images

SIZES = [(40, 60), (60, 40), (40, 60), (33, 47), (64, 64)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raydata")
    write_images(root / "imgs", SIZES)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 x 56, shown rotated: 56 x 40, as unseg predict decodes it
    Image.fromarray(random_image(40, 56, seed=9)).save(root / "imgs" / "rotated.jpg", exif=exif, quality=95)
    (root / "imgs" / "notes.txt").write_text("not an image: unseg predict and IMAGE_EXTENSIONS leave it out")
    save_dino_backbone(root / "dino.pth", patch_size=8, embed_dim=64, depth=1)
    return root


def _methods(data: Path, tiny_ckpt: Path) -> dict[str, dict]:
    """predict flags and the MaskPredictor keywords that mean the same: a checkpoint (soft masks) and
    MaskCut (instance maps with scores)."""
    return {
        "move": {"flags": ["--weights", tiny_ckpt], "kwargs": {"weights": str(tiny_ckpt)}},
        "maskcut": {
            "flags": [
                "--method",
                "maskcut",
                "--backbone",
                data / "dino.pth",
                "--max-objects",
                "2",
                "--fixed-size",
                "64",
            ],
            # batch 1 as unseg predict's default: batched eigensolves round differently in the last bits
            "kwargs": {
                "method": "maskcut",
                "backbone": str(data / "dino.pth"),
                "max_objects": 2,
                "fixed_size": 64,
                "batch_size": 1,
            },
        },
    }


def _reference(cli, data: Path, name: str, flags: list, tmp: Path) -> tuple[Path, Path]:
    masks = tmp / f"masks_{name}"
    assert cli("predict", data / "imgs", "--out", masks, "--workers", "0", "--quiet", *flags).exit_code == 0
    ref = tmp / f"ref_{name}.json"
    res = cli("boxes", masks, "--images", data / "imgs", "--multi", "--out", ref, "--workers", "0", "--quiet")
    assert res.exit_code == 0, res.output
    return masks, ref


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lstrip(".") in IMAGE_EXTENSIONS)


def _batch(folder: Path, names: list[str]) -> dict:
    """What read_binary_files(include_paths=True) hands map_batches: each file's bytes and its absolute path."""
    paths = [str((folder / n).resolve()) for n in names]
    return {"bytes": np.array([Path(p).read_bytes() for p in paths], object), "path": np.array(paths, object)}


def _decoded(folder: Path, names: list[str]) -> dict:
    """What read_images(include_paths=True, mode="RGB") hands map_batches: Ray's decoded images (no EXIF)."""
    paths = [str((folder / n).resolve()) for n in names]
    images = np.empty(len(paths), object)
    images[:] = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return {"image": images, "path": np.array(paths, object)}


@pytest.mark.parametrize("name", ["move", "maskcut"])
def test_callables_equal_predict_and_boxes(cli, data, tiny_ckpt, tmp_path, name):
    method = _methods(data, tiny_ckpt)[name]
    masks, ref = _reference(cli, data, name, method["flags"], tmp_path)
    names = _names(data / "imgs")
    assert "rotated.jpg" in names
    predictor = MaskPredictor(**{"batch_size": 4, **method["kwargs"]}, device="cpu", root=str(data / "imgs"))
    out = predictor(_batch(data / "imgs", names))
    assert list(out["key"]) == names and out["error"].tolist() == [""] * len(names)
    assert [(int(h), int(w)) for h, w in zip(out["height"], out["width"], strict=True)] == [
        Image.open(masks / mask_path_for(n)).size[::-1] for n in names
    ]
    assert (out["height"][names.index("rotated.jpg")], out["width"][names.index("rotated.jpg")]) == (56, 40)
    for key, png in zip(out["key"], out["mask"], strict=True):  # the PNG unseg predict writes, settings tag included
        assert png == (masks / mask_path_for(key)).read_bytes(), key
    plain = [n for n in names if n != "rotated.jpg"]  # Ray's own decoding: equal where no EXIF turns the image
    decoded = predictor(_decoded(data / "imgs", plain))
    assert list(decoded["mask"]) == [out["mask"][names.index(n)] for n in plain]
    rows = Boxes()(out)
    assert set(rows) == set(COLUMNS) and len(set(rows["settings"])) == 1
    listed = [dict(zip(rows, v, strict=True)) for v in zip(*rows.values(), strict=True)]
    labels, errors = merge_rows(RowParts(["p"], listed, [0] * len(names)))
    got = tmp_path / "got.json"
    write_labels(labels, str(got), "coco")
    expected = json.loads(ref.read_text())
    assert errors == [] and json.loads(got.read_text()) == expected
    assert expected["annotations"], "the comparison must hold boxes"


def test_a_failed_image_keeps_its_row(data, tiny_ckpt):
    predictor = MaskPredictor(weights=str(tiny_ckpt), device="cpu")
    batch = _decoded(data / "imgs", ["img_00.png", "img_01.png"])
    batch["image"][1] = np.zeros((4, 4), np.float32)  # not uint8: refused, the other image goes on
    out = predictor(batch)
    assert out["mask"][0] is not None and out["mask"][1] is None and "not uint8" in out["error"][1]
    rows = Boxes()(out)
    assert rows["error"][0] == "" and rows["rles"][1] == []
    assert "not uint8" in rows["error"][1]
    files = _batch(data / "imgs", ["img_00.png", "img_01.png", "img_02.png"])
    files["bytes"][1], files["bytes"][2] = b"\x89PNG not really", b""  # corrupt, empty: named in their rows
    out = predictor(files)
    assert out["mask"][0] is not None and list(out["mask"][1:]) == [None, None]
    assert out["error"][1] == f"{files['path'][1]}: not a readable image"
    assert out["error"][2] == f"{files['path'][2]}: empty file"


def test_keys():
    assert image_key("/data/imgs/a/b.jpg", "/data/imgs") == "a/b.jpg"
    assert image_key("bucket/imgs/a.jpg", "s3://bucket/imgs/") == "a.jpg"
    assert image_key("/data/imgs/a/b.jpg", None) == "b.jpg"
    assert image_key("data/imgs/b.jpg", "data/imgs/") == image_key("data/imgs/b.jpg", "./data/imgs") == "b.jpg"
    assert image_key(str(Path("data/imgs/b.jpg").resolve()), "data/imgs") == "b.jpg"
    with pytest.raises(Exception, match="not under the root"):
        image_key("/elsewhere/b.jpg", "/data/imgs")


def test_merge_names_a_part_without_label_columns(cli, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    good = {"key": ["a.png"], "height": [4], "width": [4], "settings": ["t"], "error": [""]}
    good |= {"boxes": [[[0.0, 0.0, 2.0, 2.0]]], "areas": [[4]], "scores": [[1.0]], "rles": [["04<0"]]}
    pq.write_table(pa.table(good), tmp_path / "good.parquet")
    pq.write_table(pa.table({"key": ["b.png"], "mask": [b"x"]}), tmp_path / "bad.parquet")
    out = tmp_path / "pseudo.json"
    res = cli("merge", tmp_path / "good.parquet", tmp_path / "bad.parquet", "--out", out)
    assert res.exit_code == 1 and "bad.parquet" in res.output and "height" in res.output and not out.exists()
    res = cli("merge", tmp_path / "good.parquet", "--out", out)
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["images"][0]["file_name"] == "a.png" and doc["annotations"][0]["bbox"] == [0.0, 0.0, 2.0, 2.0]

    failed = {**good, "key": ["c.png"], "boxes": [[]], "areas": [[]], "scores": [[]], "rles": [[]]}
    pq.write_table(pa.table({**failed, "error": ["/x/c.png: cannot be read"]}), tmp_path / "failed.parquet")
    res = cli("merge", tmp_path / "good.parquet", tmp_path / "failed.parquet", "--format", "jsonl", "--out", out)
    assert res.exit_code == 1 and "/x/c.png: cannot be read" in res.output  # named, the others written
    assert [json.loads(line)["file_name"] for line in out.read_text().splitlines()] == ["a.png"]
    pq.write_table(pa.table({**good, "settings": ["other"]}), tmp_path / "other.parquet")
    res = cli("merge", tmp_path / "good.parquet", tmp_path / "other.parquet", "--out", tmp_path / "mixed.json")
    assert res.exit_code == 1 and "other settings" in res.output and not (tmp_path / "mixed.json").exists()


def test_the_pipeline_without_ray_is_a_usage_error(monkeypatch, tmp_path):
    import sys

    from unsegcli.errors import UsageError
    from unsegcli.ray import pseudo_labels

    monkeypatch.setitem(sys.modules, "ray", None)  # what a missing package looks like to import
    with pytest.raises(UsageError, match="Ray is not installed") as e:
        pseudo_labels(str(tmp_path), str(tmp_path / "out"))
    assert "unseg[ray]" in str(e.value)


# the pipeline runs in its own interpreter, as a user's driver does: `ray.init` in a test worker leaves Ray's
# runtime and its SIGTERM handler there after `ray.shutdown`, for every later test of that worker to run with
_PIPELINE = """
import json, sys
import ray
import unsegcli.ray as ur

images, kwargs, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
ds = ray.data.read_binary_files(images, include_paths=True, file_extensions=ur.IMAGE_EXTENSIONS)
# 2 actors of half a CPU each leave one of the 2 CPUs to the read, Boxes (tasks: an instance) and write steps
pool = ray.data.ActorPoolStrategy(size=2)
ds = ds.map_batches(ur.MaskPredictor, fn_constructor_kwargs=kwargs, batch_size=2, compute=pool, num_cpus=0.5)
ds.map_batches(ur.Boxes(), batch_size=2).write_parquet(out)
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maskcut"])  # instance maps with scores; soft masks: the callables' test above
def test_ray_pipeline_equals_predict_and_boxes(cli, data, tiny_ckpt, tmp_path, name):
    """read_binary_files -> MaskPredictor (2 actors) -> Boxes -> write_parquet -> unseg merge: the labels of unseg
    predict + unseg boxes (the EXIF-rotated JPEG as predict turns it; the text file left out), in COCO, SelfMask
    (union RLEs) and JSON lines. (One pipeline: each costs ~20 s of Ray scheduling on 2 CPUs.)"""
    pytest.importorskip("ray")
    import subprocess
    import sys

    method = _methods(data, tiny_ckpt)[name]
    masks, ref = _reference(cli, data, name, method["flags"], tmp_path)
    kwargs = {"batch_size": 2, **method["kwargs"], "device": "cpu", "root": str(data / "imgs")}
    script = tmp_path / "pipeline.py"
    script.write_text(_PIPELINE)
    args = [sys.executable, str(script), str(data / "imgs"), json.dumps(kwargs), str(tmp_path / "labels")]
    res = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    parts = sorted((tmp_path / "labels").glob("*.parquet"))
    assert parts
    for fmt in ("coco", "selfmask", "jsonl"):
        got = tmp_path / f"got.{fmt}"
        res = cli("merge", *parts, "--format", fmt, "--out", got)
        assert res.exit_code == 0, res.output
        want = tmp_path / f"want.{fmt}"
        res = cli("boxes", masks, "--images", data / "imgs", "--multi", "--format", fmt, "--out", want, "--quiet")
        assert res.exit_code == 0 and got.read_bytes() == want.read_bytes(), fmt
    assert got.read_bytes() and ref.exists()
