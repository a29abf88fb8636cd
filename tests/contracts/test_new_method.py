"""The contract of the method table: a new method is a folder and one table entry.

``toy_method.py`` declares a method outside the package; here its entry is added to the table before the CLI
is built (as a plugin would), and the toy method is trained, resumed, predicted with and boxed through the
real ``unseg`` commands: its option becomes a flag, its objective runs in the one loop, its checkpoint family
loads in ``predict``, and ``boxes`` reads what it wrote. Nothing in ``unsegcli`` was edited for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unsegcli.config import PreprocessConfig
from unsegcli.model.checkpoint import read_checkpoint

from ..helpers import write_images
from .toy_method import ToyConfig, ToyNet, image_tensor

REPO = Path(__file__).resolve().parents[2]
# the toy entry joins the table before the CLI module builds its flags, then `unseg ARGS...` runs
BOOT = (
    "import sys; from tests.contracts.toy_method import ENTRY, NAME; from unsegcli.methods import METHODS; "
    "METHODS[NAME] = ENTRY; from unsegcli.cli.app import main; main()"
)


def unseg(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-c", BOOT, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )


@pytest.mark.slow
def test_a_new_method_is_one_table_entry(tmp_path):
    images = tmp_path / "images"
    write_images(images, [(40, 48), (48, 40), (40, 40)])
    run, masks = tmp_path / "run", tmp_path / "masks"
    common = ["--method", "toy", "--crop", 32, "--batch-size", 2, "--workers", 0, "--device", "cpu"]
    common += ["--log-images-every", 0, "--width", 6]

    res = unseg("train", images, "--out", run, "--steps", 2, *common)
    assert res.returncode == 0, res.stderr
    res = unseg("train", images, "--out", run, "--steps", 4, "--resume", *common)
    assert res.returncode == 0, res.stderr
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["family"] == "toy" and ckpt["train_state"]["step"] == 4 and "resumed from" in res.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["objective"] == "toy" and config["options"] == {"width": 6}  # the generated --width flag

    res = unseg("predict", images, "--out", masks, "--weights", run / "last.pt", "--workers", 0)
    assert res.returncode == 0, res.stderr
    net = ToyNet(ToyConfig(**ckpt["model_config"]))
    net.load_state_dict(ckpt["state_dict"])
    prep = PreprocessConfig.from_dict(ckpt["preprocess"])
    for path in sorted(images.glob("*.png")):
        image = np.asarray(Image.open(path).convert("RGB"))
        with torch.inference_mode():
            expected = torch.sigmoid(net(image_tensor(image, prep)[None]))[0, 0].numpy()
        written = np.asarray(Image.open(masks / path.name))
        assert np.abs(written.astype(int) - np.floor(expected * 255).astype(int)).max() <= 1

    res = unseg("boxes", masks, "--out", tmp_path / "boxes.json", "--images", images)
    assert res.returncode == 0, res.stderr
    coco = json.loads((tmp_path / "boxes.json").read_text())
    assert len(coco["images"]) == 3

    res = unseg("train", images, "--out", tmp_path / "run2", "--steps", 1, "--method", "move", "--width", 6)
    assert res.returncode == 2 and "--width: not an option of --method move" in res.stderr
