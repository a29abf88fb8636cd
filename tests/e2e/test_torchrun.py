"""torchrun (gloo, 2 CPU processes) equals one process, for predict, boxes and training."""

from __future__ import annotations

import pytest

from ..helpers import SHARD_SIZES, torchrun, write_images

pytestmark = pytest.mark.slow  # real processes


def test_torchrun_two_gloo_processes_equal_one_process(tmp_path, cli, tiny_ckpt):
    write_images(tmp_path / "imgs", SHARD_SIZES)
    assert cli("predict", tmp_path / "imgs", "-o", tmp_path / "one", "-w", tiny_ckpt, "-j", "0", "-q").exit_code == 0
    res = torchrun(["predict", tmp_path / "imgs", "-o", tmp_path / "two", "-w", tiny_ckpt, "-j", "0"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("images 7 · written 7") == 1  # one summary with the totals of both ranks
    for f in (tmp_path / "one").iterdir():
        assert f.read_bytes() == (tmp_path / "two" / f.name).read_bytes()
    args = ["boxes", tmp_path / "one", "--images", tmp_path / "imgs", "--multi", "-j", "0", "--threshold", "0.3"]
    assert cli(*args, "--out", tmp_path / "single.json", "-q").exit_code == 0
    res = torchrun(args + ["--out", tmp_path / "dist.json"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "dist.json").read_bytes() == (tmp_path / "single.json").read_bytes()


def test_cli_train_self_training_resume_andtorchrun(tmp_path, cli):
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
    res = torchrun(args + ["--out", tmp_path / "r2", "--steps", "2", "--device", "cpu"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = read_checkpoint(tmp_path / "r2" / "last.pt")
    assert ckpt["train_state"]["step"] == 2
    lines = (tmp_path / "r2" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # rank 0 alone writes metrics
