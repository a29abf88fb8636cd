"""Scale-out: shards, torchrun (gloo, 2 CPU processes), merge, and reduced precision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unsegcli.config import PreprocessConfig
from unsegcli.errors import UsageError
from unsegcli.methods.move.predictor import predict_masks
from unsegcli.runtime import Shard, parse_shard

from .helpers import random_image, tiny_model, write_images

SIZES = [(40, 60), (60, 40), (33, 47), (40, 60), (50, 50), (41, 61), (40, 60)]


def test_shards_cover_every_input_exactly_once():
    items = list(range(23))
    for n in (1, 2, 5, 23, 30):
        parts = [Shard(i, n).take(items) for i in range(n)]
        assert sorted(x for p in parts for x in p) == items
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1  # balanced
    assert parse_shard("3/16") == Shard(3, 16)
    for bad in ("16/16", "a/b", "3", "-1/4"):
        with pytest.raises(UsageError):
            parse_shard(bad)


def test_cli_shards_together_equal_one_run(tmp_path, cli, tiny_ckpt):
    write_images(tmp_path / "imgs", SIZES)
    assert cli("predict", tmp_path / "imgs", "-o", tmp_path / "one", "-w", tiny_ckpt, "-j", "0", "-q").exit_code == 0
    for i in range(3):
        res = cli(
            "predict", tmp_path / "imgs", "-o", tmp_path / "sharded", "-w", tiny_ckpt, "-j", "0", "--shard", f"{i}/3"
        )
        assert res.exit_code == 0 and f"images {len(Shard(i, 3).take(SIZES))} " in res.stderr
    one = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert one == sorted(p.name for p in (tmp_path / "sharded").iterdir())
    for name in one:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "sharded" / name).read_bytes()
    # boxes part files merge into the single-process file, byte for byte
    args = [tmp_path / "one", "--images", tmp_path / "imgs", "--multi", "-j", "0", "-q", "--threshold", "0.3"]
    assert cli("boxes", *args, "--out", tmp_path / "single.json").exit_code == 0
    for i in range(3):
        assert cli("boxes", *args, "--shard", f"{i}/3", "--out", tmp_path / f"part-{i}.json").exit_code == 0
    parts = [tmp_path / f"part-{i}.json" for i in range(3)]
    # overlapping inputs (a part given twice) are de-duplicated
    assert cli("merge", *parts, parts[0], "--out", tmp_path / "merged.json").exit_code == 0
    assert (tmp_path / "merged.json").read_bytes() == (tmp_path / "single.json").read_bytes()


def test_merge_renumbers_and_rejects_conflicts(tmp_path, cli):
    def coco(images, anns):
        return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "fg", "supercategory": "fg"}]}

    ann = {
        "category_id": 1,
        "bbox": [0.0, 0.0, 2.0, 2.0],
        "area": 4,
        "iscrowd": 0,
        "score": 0.9,
        "segmentation": {"size": [4, 4], "counts": "02208"},  # the 2x2 box at (0, 0)
    }
    a = coco([{"id": 7, "file_name": "b.jpg", "width": 4, "height": 4}], [{**ann, "id": 3, "image_id": 7}])
    b = coco(
        [
            {"id": 1, "file_name": "a.jpg", "width": 4, "height": 4},
            {"id": 2, "file_name": "b.jpg", "width": 4, "height": 4},
        ],
        [{**ann, "id": 1, "image_id": 2}],
    )
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    res = cli("merge", tmp_path / "a.json", tmp_path / "b.json", "--out", "-")
    out = json.loads(res.stdout)
    assert [(i["id"], i["file_name"]) for i in out["images"]] == [(1, "a.jpg"), (2, "b.jpg")]
    assert [(x["id"], x["image_id"]) for x in out["annotations"]] == [(1, 2)]
    b["annotations"][0]["bbox"] = [1.0, 1.0, 2.0, 2.0]
    (tmp_path / "c.json").write_text(json.dumps(b))
    res = cli("merge", tmp_path / "a.json", tmp_path / "c.json", "--out", tmp_path / "x.json")
    assert res.exit_code == 1 and "b.jpg" in res.stderr and "a.json" in res.stderr and "c.json" in res.stderr
    assert not (tmp_path / "x.json").exists()
    (tmp_path / "l1.jsonl").write_text(json.dumps({"file_name": "z.jpg", "boxes": [[0, 0, 1, 1]]}) + "\n")
    (tmp_path / "l2.jsonl").write_text(json.dumps({"file_name": "y.jpg", "boxes": []}) + "\n")
    res = cli("merge", tmp_path / "l1.jsonl", tmp_path / "l2.jsonl", "--out", "-")
    assert [json.loads(s)["file_name"] for s in res.stdout.splitlines()] == ["y.jpg", "z.jpg"]
    (tmp_path / "l3.jsonl").write_text(json.dumps({"file_name": "z.jpg", "boxes": [[0, 0, 2, 2]]}) + "\n")
    res = cli("merge", tmp_path / "l1.jsonl", tmp_path / "l3.jsonl", "--out", "-")
    assert res.exit_code == 1 and "'z.jpg' differs between" in res.stderr and "l3.jsonl" in res.stderr
    assert cli("merge", tmp_path / "l1.jsonl", tmp_path / "a.json", "--out", "-").exit_code == 2  # a mix
    (tmp_path / "det.json").write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}]))
    res = cli("merge", tmp_path / "det.json", "--out", "-")
    assert res.exit_code == 1 and "detector results" in res.stderr


def _torchrun(args: list, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "UNSEG_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(29500 + os.getpid() % 1000),
        "-m",
        "unsegcli",
        *map(str, args),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_torchrun_two_gloo_processes_equal_one_process(tmp_path, cli, tiny_ckpt):
    write_images(tmp_path / "imgs", SIZES)
    assert cli("predict", tmp_path / "imgs", "-o", tmp_path / "one", "-w", tiny_ckpt, "-j", "0", "-q").exit_code == 0
    res = _torchrun(["predict", tmp_path / "imgs", "-o", tmp_path / "two", "-w", tiny_ckpt, "-j", "0"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("images 7 · written 7") == 1  # one summary with the totals of both ranks
    for f in (tmp_path / "one").iterdir():
        assert f.read_bytes() == (tmp_path / "two" / f.name).read_bytes()
    args = ["boxes", tmp_path / "one", "--images", tmp_path / "imgs", "--multi", "-j", "0", "--threshold", "0.3"]
    assert cli(*args, "--out", tmp_path / "single.json", "-q").exit_code == 0
    res = _torchrun(args + ["--out", tmp_path / "dist.json"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "dist.json").read_bytes() == (tmp_path / "single.json").read_bytes()


def test_bf16_masks_agree_with_fp32_within_two_levels():
    model = tiny_model()
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(SIZES[:3])]
    fp32 = predict_masks(model, images, PreprocessConfig(size=64), precision="fp32")
    bf16 = predict_masks(model, images, PreprocessConfig(size=64), precision="bf16")
    mad = np.mean([np.abs(np.floor(a * 255) - np.floor(b * 255)).mean() for a, b in zip(fp32, bf16, strict=True)])
    assert mad < 2.0
    assert any(not np.array_equal(a, b) for a, b in zip(fp32, bf16, strict=True))  # bf16 really ran


def test_cli_train_self_training_resume_and_torchrun(tmp_path, cli):
    from unsegcli.model.checkpoint import read_checkpoint

    assert cli("synth", tmp_path / "d", "--n", "8", "--size", "64", "-q").exit_code == 0
    args = [
        "train",
        tmp_path / "d" / "images",
        "--from-masks",
        tmp_path / "d" / "masks",
        "--arch",
        "tiny",
        "--random-init",
        "--train-backbone",
        "--crop",
        "64",
        "--batch-size",
        "2",
        "-j",
        "0",
        "--infer-size",
        "64",
        "-q",
        "--log-every",
        "1",
    ]
    res = cli(*args, "--out", tmp_path / "r1", "--steps", "2")
    assert res.exit_code == 0, res.output
    res = cli(*args, "--out", tmp_path / "r1", "--steps", "3")  # a fresh run must not clobber it
    assert res.exit_code == 2 and "--resume" in res.stderr
    res = cli(*args, "--out", tmp_path / "r1", "--steps", "3", "--resume")
    assert res.exit_code == 0 and "resumed from" in res.stderr and "at step 2" in res.stderr
    assert read_checkpoint(tmp_path / "r1" / "last.pt")["train_state"]["step"] == 3
    # two gloo processes, each with its own data slice, gradients averaged: the ranks stay identical
    res = _torchrun(args + ["--out", tmp_path / "r2", "--steps", "2", "--device", "cpu"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = read_checkpoint(tmp_path / "r2" / "last.pt")
    assert ckpt["train_state"]["step"] == 2
    lines = (tmp_path / "r2" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # rank 0 alone writes metrics
