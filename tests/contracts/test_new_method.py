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
# the toy entry joins the table before the CLI module builds its flags; then each `unseg ARGS...` of the JSON list
# on stdin runs in that one process (one interpreter and torch start-up for the whole story)
BOOT = """
import json, sys
from tests.contracts.toy_method import ENTRY, NAME
from unsegcli.methods import METHODS
METHODS[NAME] = ENTRY
from typer.testing import CliRunner
from unsegcli.cli.app import app
runner = CliRunner()
results = [runner.invoke(app, args) for args in json.load(sys.stdin)]
json.dump([{"code": r.exit_code, "stderr": r.stderr} for r in results], sys.stdout)
"""


def unseg_all(*commands: list) -> list[dict]:
    """Run each command (a list of `unseg` arguments) in one fresh interpreter that has the toy entry."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    stdin = json.dumps([[str(a) for a in c] for c in commands])
    proc = subprocess.run(
        [sys.executable, "-c", BOOT], input=stdin, cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_a_new_method_is_one_table_entry(tmp_path):
    images = tmp_path / "images"
    write_images(images, [(40, 48), (48, 40), (40, 40)])
    run, masks = tmp_path / "run", tmp_path / "masks"
    common = ["--method", "toy", "--crop", 32, "--batch-size", 2, "--workers", 0, "--device", "cpu"]
    common += ["--log-images-every", 0, "--width", 6]

    first, resumed, predicted, boxed, refused = unseg_all(
        ["train", images, "--out", run, "--steps", 2, *common],
        ["train", images, "--out", run, "--steps", 4, "--resume", *common],
        ["predict", images, "--out", masks, "--weights", run / "last.pt", "--workers", 0],
        ["boxes", masks, "--out", tmp_path / "boxes.json", "--images", images],
        ["train", images, "--out", tmp_path / "run2", "--steps", 1, "--method", "move", "--width", 6],
    )
    assert first["code"] == 0, first["stderr"]
    assert resumed["code"] == 0 and "resumed from" in resumed["stderr"], resumed["stderr"]
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["family"] == "toy" and ckpt["train_state"]["step"] == 4
    config = json.loads((run / "config.json").read_text())
    assert config["objective"] == "toy" and config["options"] == {"width": 6}  # the generated --width flag
    assert predicted["code"] == 0, predicted["stderr"]
    net = ToyNet(ToyConfig(**ckpt["model_config"]))
    net.load_state_dict(ckpt["state_dict"])
    prep = PreprocessConfig.from_dict(ckpt["preprocess"])
    for path in sorted(images.glob("*.png")):
        image = np.asarray(Image.open(path).convert("RGB"))
        with torch.inference_mode():
            expected = torch.sigmoid(net(image_tensor(image, prep)[None]))[0, 0].numpy()
        written = np.asarray(Image.open(masks / path.name))
        assert np.abs(written.astype(int) - np.floor(expected * 255).astype(int)).max() <= 1
    assert boxed["code"] == 0, boxed["stderr"]
    coco = json.loads((tmp_path / "boxes.json").read_text())
    assert len(coco["images"]) == 3
    assert refused["code"] == 2 and "--width: not an option of --method move" in refused["stderr"]
