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
