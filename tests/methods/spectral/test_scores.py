"""A score on every instance mask: computed by the cut (NCut confidence), stored in the instance PNG, read
back by `boxes` (--min-score, --max-boxes, every format's score field) and `show`; adaptive MaskCut."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unsegcli.errors import InputError
from unsegcli.io.instances import encode_instances, instance_scores, write_instances
from unsegcli.labels.runner import BoxOptions, MaskTask, label_one
from unsegcli.methods.spectral.core import ncut_score
from unsegcli.methods.spectral.maskcut import maskcut_masks
from unsegcli.methods.spectral.options import MaskCutOptions
from unsegcli.review.sources import _mask_facts


def three_objects() -> np.ndarray:
    lab = np.zeros((40, 60), np.uint8)
    lab[2:12, 2:22] = 1  # 200 px
    lab[20:30, 30:40] = 2  # 100 px
    lab[32:38, 50:58] = 3  # 48 px
    return lab


def test_scores_are_stored_in_the_instance_png_and_read_back(tmp_path):
    lab = three_objects()
    png = encode_instances(lab, {1: 0.9, 2: 0.3, 3: 0.55, 7: 0.1})  # 7 is not in the map: not stored
    assert instance_scores(png) == {1: 0.9, 2: 0.3, 3: 0.55}
    assert instance_scores(encode_instances(lab)) == {}  # no chunk: no scores
    with pytest.raises(ValueError):
        encode_instances(lab, {1: 1.5})
    bad = png.replace(b'{"1":0.9', b'{"1":"x"')
    with pytest.raises(InputError):
        instance_scores(bad)


def test_boxes_and_show_use_the_stored_scores(tmp_path):
    path = tmp_path / "a.png"
    write_instances(path, three_objects(), {1: 0.9, 2: 0.3, 3: 0.55})
    task = MaskTask(0, str(path), "a.png", None)
    every = label_one(task, BoxOptions(multi=True, min_area=0.0))
    assert every.scores == [0.9, 0.3, 0.55]  # largest box first, each with its object's score
    kept = label_one(task, BoxOptions(multi=True, min_area=0.0, min_score=0.5))
    assert kept.scores == [0.9, 0.55] and kept.removed["min_score"] == 1
    best = label_one(task, BoxOptions(multi=True, min_area=0.0, max_boxes=1))
    assert best.boxes == [[2.0, 2.0, 22.0, 12.0]] and best.scores == [0.9]
    split = label_one(task, BoxOptions(multi=True, min_area=0.0, split_components=True))
    assert sorted(split.scores) == [0.3, 0.55, 0.9]
    (_, _, scores, _, _, _) = _mask_facts((str(path), None, 0.5, 8, 0.0, True))
    assert sorted(scores.tolist()) == [0.3, 0.55, 0.9]
    write_instances(path, three_objects())  # an unscored file: boxes score 1, show has none
    assert label_one(task, BoxOptions(multi=True, min_area=0.0)).scores == [1.0, 1.0, 1.0]
    assert np.isnan(_mask_facts((str(path), None, 0.5, 8, 0.0, True))[2]).all()


def test_ncut_score_known_answers():
    a = torch.zeros(1, 4, 4, dtype=torch.float64)
    a[0, :2, :2] = 1
    a[0, 2:, 2:] = 1
    half = np.array([[[True, True], [False, False]]])
    assert ncut_score(a, half)[0] == pytest.approx(1.0)  # disconnected from the rest
    complete = torch.ones(1, 4, 4, dtype=torch.float64)
    assert ncut_score(complete, half)[0] == pytest.approx(0.0)  # Ncut = 2/4 + 2/4 = 1
    assert ncut_score(complete, np.ones((1, 2, 2), bool))[0] == 0.0  # everything: no cut


def test_adaptive_maskcut_stops_at_the_first_weak_cut():
    """Two objects with keys of their own on a background of noisy keys sharing one direction: MaskCut's
    third cut splits the background (NCut score ~0.07); stop_score 0.5 ends there."""
    g, d = 8, 16
    keys = torch.zeros(1, g * g, d)
    keys[..., 0] = 1
    keys += 0.7 * torch.randn(keys.shape, generator=torch.Generator().manual_seed(0)) * (torch.arange(d) >= 3)
    lab = np.zeros((g, g), int)
    lab[1:3, 1:4] = 1
    lab[5:7, 4:7] = 2
    for k in (1, 2):
        keys[0, torch.from_numpy(lab.ravel() == k)] = torch.eye(d)[k]
    official, scores = maskcut_masks(keys, (g, g), MaskCutOptions(max_objects=3))
    assert official[0].max() == 3 and scores[0, 2] < 0.1 and (scores[0, :2] > 0.99).all()
    adaptive, scores = maskcut_masks(keys, (g, g), MaskCutOptions(max_objects=3, stop_score=0.5))
    assert adaptive[0].max() == 2 and scores[0, 2] == 0.0
    assert np.array_equal(adaptive[0] == 1, lab == 2) and np.array_equal(adaptive[0] == 2, lab == 1)


def test_a_soft_mask_stores_its_methods_score_and_boxes_fold_it_in(tmp_path):
    from unsegcli.io.masks import read_tag, write_mask

    mask = np.zeros((20, 30), np.uint8)
    mask[2:6, 2:12] = 255  # 40 px at 1.0
    mask[10:18, 15:25] = 204  # 80 px at 0.8
    path = tmp_path / "m.png"
    write_mask(str(path), mask, tag="abc", score=0.5)
    assert instance_scores(path) == {1: 0.5} and read_tag(str(path)) == "abc"  # the tag stays first
    task = MaskTask(0, str(path), "m.png", None)
    # each component: its mean mask value x the stored score; --min-score filters on that
    assert label_one(task, BoxOptions(multi=True, min_area=0.0)).scores == pytest.approx([0.4, 0.5])
    assert label_one(task, BoxOptions(multi=True, min_area=0.0, min_score=0.45)).scores == [0.5]
    assert _mask_facts((str(path), None, 0.5, 8, 0.0, True))[2].tolist() == pytest.approx([0.4, 0.5])
    write_mask(str(path), mask)  # no stored score: the mean mask value alone (the rule for every soft mask)
    assert label_one(task, BoxOptions(multi=True, min_area=0.0)).scores == pytest.approx([0.8, 1.0])
    with pytest.raises(ValueError):
        write_mask(str(path), mask, score=1.5)


@pytest.mark.parametrize("method", ["tokencut", "lost"])
def test_tokencut_and_lost_scores_reach_boxes_and_show(tmp_path, cli, method):
    """predict writes the cut's score into each soft PNG; boxes carries it into the JSON formats' score field and
    filters on it; show sorts by it."""
    import json

    from PIL import Image

    from unsegcli.methods import method_options
    from unsegcli.methods.spectral.predictor import SpectralPredictor

    from ...helpers import save_dino_backbone, write_images

    backbone = save_dino_backbone(tmp_path / "dino.pth", patch_size=8, seed=3)
    write_images(tmp_path / "images", [(48, 64), (40, 40), (56, 48)])
    common = ["--workers", 0, "--device", "cpu", "-q"]
    out = tmp_path / "masks"
    res = cli("predict", tmp_path / "images", "--out", out, "--method", method, "--backbone", backbone, *common)
    assert res.exit_code == 0, res.stderr
    pred = SpectralPredictor(method, method_options(method), backbone=backbone)
    stored = {}
    for p in sorted(out.glob("*.png")):
        img = np.asarray(Image.open(tmp_path / "images" / p.name).convert("RGB"))
        _, scores = pred.run([pred.prepare(0, img)])[0]
        stored[p.stem] = instance_scores(p)[1]
        assert stored[p.stem] == scores[1] and 0.0 < scores[1] < 1.0  # the cut's score, as computed
    res = cli("boxes", out, "--images", tmp_path / "images", "--format", "coco", "--out", tmp_path / "b.json")
    assert res.exit_code == 0, res.stderr
    coco = json.loads((tmp_path / "b.json").read_text())
    names = {im["id"]: im["file_name"].rsplit(".", 1)[0] for im in coco["images"]}
    assert {names[a["image_id"]]: a["score"] for a in coco["annotations"]} == pytest.approx(stored)
    assert len(set(stored.values())) == 3
    cut = sorted(stored.values())[1]
    res = cli("boxes", out, "--images", tmp_path / "images", "--min-score", cut, "--out", tmp_path / "top.json")
    assert res.exit_code == 0, res.stderr
    kept = json.loads((tmp_path / "top.json").read_text())["annotations"]
    assert sorted(a["score"] for a in kept) == pytest.approx(sorted(s for s in stored.values() if s >= cut))
    res = cli("show", tmp_path / "b.json", "--images", tmp_path / "images", "--sort", "score", "--out", tmp_path / "r")
    assert res.exit_code == 0, res.stderr
