"""`unseg train` and `unseg synth` through the CLI: weights required offline, a bad training image, synth data."""

from __future__ import annotations

import numpy as np

from unsegcli.synth import generate


def test_cli_train_requires_weights_offline_with_one_clear_message(tmp_path, cli):
    from unsegcli.synth import write_dataset

    write_dataset(tmp_path / "d", 4, 64, seed=0)
    res = cli("train", tmp_path / "d" / "images", "--out", tmp_path / "r", "--steps", "1", "--crop", "64")
    assert res.exit_code == 1 and "backbone (DINO ViT) weights are required" in res.stderr
    assert "dino_deitsmall8_pretrain.pth" in res.stderr
    res = cli(
        "train",
        tmp_path / "d" / "images",
        "--out",
        tmp_path / "r",
        "--steps",
        "1",
        "--crop",
        "64",
        "--backbone-weights",
        tmp_path / "nope.pth",
    )
    assert res.exit_code == 1 and "nope.pth" in res.stderr
    res = cli("train", tmp_path / "d" / "images", "--out", tmp_path / "r", "--steps", "1", "--method", "nope")
    assert res.exit_code == 2 and "move, self" in res.stderr
    res = cli("train", tmp_path / "d" / "images", "--out", tmp_path / "r", "--steps", "1", "--method", "self")
    assert res.exit_code == 2 and "needs --from-masks" in res.stderr


def test_synth_is_deterministic_and_masks_match_boxes(tmp_path, cli):
    a, b = generate(3, 7, 96), generate(3, 7, 96)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(generate(4, 7, 96).image, a.image)
    area = (a.mask > 0).mean()
    assert 0.02 < area < 0.7 and set(np.unique(a.mask)) <= {0, 255}
    for x0, y0, x1, y1 in a.boxes:
        assert a.mask[y0:y1, x0:x1].max() == 255
    res = cli("synth", tmp_path / "s", "--n", "3", "--size", "64", "--voc", "-q")
    assert res.exit_code == 0
    from unsegcli.io.datasets import read_voc

    gt = read_voc(tmp_path / "s" / "VOCdevkit", "trainval", "2007")
    s0 = generate(0, 0, 64)
    assert len(gt) == 3 and gt[0].boxes.tolist() == [list(b) for b in s0.boxes]


def test_an_unreadable_training_image_is_named_up_front_and_the_run_goes_on(tmp_path, cli):
    """A bad file found hours into a run would stop it: it is checked, named and left out before step 1."""
    assert cli("synth", tmp_path / "d", "--n", "4", "--size", "64", "-q").exit_code == 0
    (tmp_path / "d" / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "d" / "masks" / "broken.png").write_bytes(b"")
    res = cli(
        "train",
        tmp_path / "d" / "images",
        "--from-masks",
        tmp_path / "d" / "masks",
        "--arch",
        "tiny",
        "--random-init",
        "--crop",
        "64",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "-j",
        "0",
        "-q",
        "--out",
        tmp_path / "run",
        "--device",
        "cpu",
    )
    assert res.exit_code == 1, res.output
    assert res.stderr.count("broken.png") == 1 and "left out of training" in res.stderr
    assert (tmp_path / "run" / "last.pt").exists()
