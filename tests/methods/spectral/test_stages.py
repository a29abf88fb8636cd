"""The stage split (`unseg predict --save-features`, then `--from-features`): the masks of the one-stage run byte
for byte (settings tag included), for TokenCut, MaskCut and VoteCut on two backbones; the GPU stage resumes; features
of other settings are refused, naming the file and the setting."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ...helpers import save_dino_backbone, write_images

SIZES = [(40, 60), (60, 40), (33, 47), (64, 64)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stages")
    write_images(root / "imgs", SIZES)
    save_dino_backbone(root / "dino8.pth", patch_size=8, embed_dim=64, depth=1)
    save_dino_backbone(root / "dino16.pth", patch_size=16, embed_dim=64, depth=1, seed=1)
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    "method, flags",
    [
        ("tokencut", ["--backbone", "dino8.pth"]),
        ("maskcut", ["--backbone", "dino8.pth", "--max-objects", "2", "--fixed-size", "64"]),
        ("votecut", ["--backbone", "dino8.pth,dino16.pth", "--fixed-size", "64"]),
    ],
)
def test_two_stages_give_the_one_stage_masks(cli, data, tmp_path, monkeypatch, method, flags):
    monkeypatch.chdir(data)
    common = ["--method", method, *flags, "--workers", "0", "--quiet"]
    assert cli("predict", "imgs", "--out", tmp_path / "one", *common).exit_code == 0
    res = cli("predict", "imgs", "--out", tmp_path / "feats", "--save-features", *common)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "feats").iterdir()) == [f"img_{i:02d}.safetensors" for i in range(4)]
    cpu = ["--method", method, *[f for f in flags if f != "--backbone" and "pth" not in f], "--workers", "0"]
    res = cli("predict", tmp_path / "feats", "--out", tmp_path / "two", "--from-features", *cpu, "--quiet")
    assert res.exit_code == 0, res.output
    one = _files(tmp_path / "one")
    assert one and _files(tmp_path / "two") == one


def test_the_feature_stage_resumes_and_refuses_other_settings(cli, data, tmp_path, monkeypatch):
    monkeypatch.chdir(data)
    feats = tmp_path / "feats"
    gpu = ["predict", "imgs", "--out", feats, "--method", "tokencut", "--backbone", "dino8.pth", "--save-features"]
    assert cli(*gpu, "--workers", "0", "--quiet").exit_code == 0
    kept = feats / "img_00.safetensors"
    stamp = kept.stat().st_mtime_ns
    (feats / "img_01.safetensors").unlink()  # a killed run: one file missing
    res = cli(*gpu, "--workers", "0")
    assert res.exit_code == 0 and "written 1 · skipped 3" in res.output, res.output
    assert kept.stat().st_mtime_ns == stamp
    res = cli(*gpu, "--geometry", "resize", "--workers", "0")  # resuming under other settings: refused
    assert res.exit_code == 2 and "other settings" in res.output

    cpu = ["predict", feats, "--method", "tokencut", "--from-features", "--workers", "0"]
    res = cli(*cpu, "--geometry", "resize", "--out", tmp_path / "a")
    assert res.exit_code == 2 and "img_00.safetensors" in res.output and "geometry 'pad'" in res.output
    assert not (tmp_path / "a").exists()
    res = cli(*cpu[:2], "--method", "maskcut", "--from-features", "--out", tmp_path / "b")
    assert res.exit_code == 2 and "method 'tokencut'" in res.output

    other = tmp_path / "other"  # one file of other settings among the inputs: named, the rest written
    assert cli(*gpu[:3], other, *gpu[4:], "--geometry", "resize", "--workers", "0", "--quiet").exit_code == 0
    shutil.copy(other / "img_03.safetensors", feats / "img_03.safetensors")
    res = cli(*cpu, "--out", tmp_path / "c")
    assert res.exit_code == 1 and "img_03.safetensors: features made with other settings" in res.output
    assert sorted(os.listdir(tmp_path / "c")) == ["img_00.png", "img_01.png", "img_02.png"]


def test_methods_of_one_stage_refuse_the_split(cli, data, tmp_path, tiny_ckpt):
    res = cli("predict", data / "imgs", "--out", tmp_path / "x", "--weights", tiny_ckpt, "--save-features")
    assert res.exit_code == 2 and "--save-features applies to the training-free methods" in res.output
    res = cli("predict", data / "imgs", "--out", tmp_path / "x", "--save-features", "--from-features")
    assert res.exit_code == 2 and "two stages" in res.output


def test_features_record_how_the_backbone_ran_and_the_masks_carry_it(cli, data, tmp_path, monkeypatch):
    """`--save-features --engine openvino` (or bf16): the files say so, the CPU stage's masks carry it in their tag
    (those of the one-stage run), and torch features mixed in are refused per file."""
    pytest.importorskip("openvino")
    from unsegcli.io.features import read_features

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the exports: not in the user's own cache
    monkeypatch.chdir(data)
    common = ["--method", "tokencut", "--workers", "0", "--quiet"]
    gpu = ["predict", "imgs", "--backbone", "dino8.pth", *common]
    assert cli(*gpu, "--out", tmp_path / "one", "--engine", "openvino").exit_code == 0
    feats = tmp_path / "feats"
    assert cli(*gpu, "--out", feats, "--engine", "openvino", "--save-features").exit_code == 0
    assert read_features(str(feats / "img_00.safetensors")).settings["engine"] == "openvino"
    cpu = ["predict", feats, "--from-features", *common]
    res = cli(*cpu, "--out", tmp_path / "two")
    assert res.exit_code == 0, res.output
    assert _files(tmp_path / "two") == _files(tmp_path / "one")
    res = cli(*cpu, "--out", tmp_path / "x", "--engine", "openvino")
    assert res.exit_code == 2 and "--engine applies to the stage that runs the backbone" in res.output
    assert cli(*gpu, "--out", tmp_path / "torch", "--save-features").exit_code == 0
    shutil.copy(tmp_path / "torch" / "img_02.safetensors", feats / "img_02.safetensors")
    res = cli(*cpu, "--out", tmp_path / "three")
    assert res.exit_code == 1 and "img_02.safetensors: features made with other settings" in res.output
