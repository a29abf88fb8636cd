"""VoteCut: the exact 1-D k-means, the proposal rules, the greedy IoU vote and the score (group size over
the largest group) on hand-built fixtures; the predictor end to end on random DINO and DINOv2 files; the optional
CRF (crop, constants, box gate) on known CRF outputs and on a generated image."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from PIL import Image

from unsegcli.methods import method_options
from unsegcli.methods.spectral.votecut import VoteCutPredictor, crf_refine, kmeans_1d, proposals, vote
from unsegcli.refine import RefineOptions

from ...helpers import save_dino_backbone
from .files import save_dinov2


def test_kmeans_1d_is_the_exact_optimum():
    x = np.array([0.0, 0.1, 0.2, 5.0, 5.1, 9.0, 9.2, 9.1])
    assert kmeans_1d(x, 2).tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert kmeans_1d(x, 3).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert kmeans_1d(np.array([1.0, 1.0, 1.0, 2.0]), 3).tolist() == [0, 0, 0, 1]  # equal values never split
    rng = np.random.default_rng(0)
    for _ in range(20):  # brute force over every split: the same optimal cost
        v = rng.normal(size=12)
        s = np.sort(v)
        best = min(
            sum(((p - p.mean()) ** 2).sum() for p in np.split(s, [i, j]))
            for i in range(1, 11)
            for j in range(i + 1, 12)
        )
        lab = kmeans_1d(v, 3)
        assert sum(((v[lab == c] - v[lab == c].mean()) ** 2).sum() for c in range(3)) == pytest.approx(best)


def test_proposal_rules():
    lab = np.zeros((10, 10), int)
    lab[2:4, 2:8] = 1  # 6 wide, 2 tall: kept (only one side need reach 5)
    lab[6:8, 6:8] = 1  # 2 x 2: dropped
    lab[0, 0] = lab[9, 9] = 2  # two corners: label 2 skipped whole
    props = proposals([lab])
    assert len(props) == 1 and np.array_equal(props[0], (lab == 1) & (np.arange(10)[:, None] < 5))
    many = np.zeros((20, 20), int)
    many[::2, ::2] = 1  # 100 isolated components: label 1 skipped; label 0 holds the corners
    assert proposals([many]) == []


def test_vote_groups_and_scores():
    """Three agreeing proposals of object A, two of object B, one stray: two masks, scores 1 and 2/3."""
    grid = np.zeros((30, 30), bool)
    a = grid.copy()
    a[2:12, 2:12] = True
    a2 = a.copy()
    a2[12, 2:12] = True  # IoU 100/110 with a
    b = grid.copy()
    b[20:28, 15:29] = True
    stray = grid.copy()
    stray[0:5, 20:25] = True
    voted = vote([a, b, a2, stray, a, b], tau_m=0.2, cluster_iou=0.6, max_objects=10)
    sizes = [s for _, s in voted]
    assert sizes == [3, 2, 1]
    up = np.kron(a2, np.ones((2, 2), bool))  # 30 -> 60 nearest: each patch doubled
    assert np.array_equal(voted[0][0], up)  # 1 of 3 members holds row 12: 1/3 > 0.2
    strict = vote([a, a, a, a, a2], tau_m=0.2, cluster_iou=0.6, max_objects=10)
    assert np.array_equal(strict[0][0], np.kron(a, np.ones((2, 2), bool)))  # 1 of 5 is not > 0.2
    assert [s for _, s in vote([a, b, a2, stray, a, b], 0.2, 0.6, max_objects=1)] == [3]


def test_votecut_predictor_on_dino_and_dinov2(tmp_path):
    files = (
        save_dino_backbone(tmp_path / "dino.pth", patch_size=16, seed=1),
        save_dinov2(tmp_path / "v2.pth", seed=2),
    )
    pred = VoteCutPredictor("votecut", method_options("votecut", fixed_size=112), backbone=files)
    assert pred.sizes == [112, 112]
    rng = np.random.default_rng(0)
    img = np.full((50, 70, 3), 30, np.uint8)
    img[10:40, 10:35] = (230, 40, 40)
    img = np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)
    batch = [pred.prepare(0, img), pred.prepare(1, img[:, ::-1].copy())]
    for labels, scores in pred.run(batch):
        present = set(np.unique(labels).tolist()) - {0}
        assert labels.shape == (50, 70) and labels.dtype == np.uint8 and present
        assert present <= set(scores) and max(scores.values()) == 1.0 and all(0 < s <= 1 for s in scores.values())
    # a batch gives the batch-1 result (on DINO alone: the random DINOv2's graph is degenerate, lambda2 = lambda3)
    dino = VoteCutPredictor("votecut", method_options("votecut", fixed_size=112), backbone=files[:1])
    both = dino.run([dino.prepare(0, img), dino.prepare(1, img[:, ::-1].copy())])
    for (labels, scores), one in zip(both, [img, img[:, ::-1].copy()], strict=True):
        single, single_scores = dino.run([dino.prepare(0, one)])[0]
        assert np.array_equal(labels, single) and scores == single_scores


def test_votecut_crf_crop_and_box_gate_on_known_crf_outputs(monkeypatch):
    """CuVLER mask_post_processing: the CRF sees the mask's box widened by a third on each side (clipped), and its
    mask is kept unless it is empty or its box IoU with the raw mask's box is below 0.5."""
    import unsegcli.refine.crf as crf

    image = np.zeros((40, 40, 3), np.uint8)
    raw = np.zeros((40, 40), bool)
    raw[12:28, 3:19] = True  # box 16 x 16 at x 3: the crop is x [0, 24) (clipped), y [7, 33)
    seen = []

    def fake(img, mask, *constants, answer):
        seen.append((img.shape, float(mask.sum()), constants))
        return answer(mask.shape)

    def shifted(shape):
        out = np.zeros(shape, bool)
        out[6:22, 4:20] = True  # in the crop: the raw box moved 1 px down, 1 right; box IoU 225/287
        return out

    monkeypatch.setattr(crf, "dense_crf", partial(fake, answer=shifted))
    refined = crf_refine(raw, image, RefineOptions(method="crf"))
    assert seen[0][0] == (26, 24, 3) and seen[0][1] == 256  # the crop, and the raw mask inside it
    assert seen[0][2] == (10, 7.0, 3.0, 10.0, 50.0, 5.0)  # CutLER's constants, from RefineOptions
    assert np.array_equal(np.argwhere(refined)[[0, -1]], [[13, 4], [28, 19]])  # pasted back: y 7 + 6, x 0 + 4
    monkeypatch.setattr(crf, "dense_crf", partial(fake, answer=lambda s: np.zeros(s, bool)))
    assert crf_refine(raw, image, RefineOptions(method="crf")) is raw  # empty: the raw mask
    corner = lambda s: np.eye(*s, dtype=bool) & (np.arange(s[1]) < 3)  # noqa: E731  a 3-px diagonal, box IoU < 0.5
    monkeypatch.setattr(crf, "dense_crf", partial(fake, answer=corner))
    assert crf_refine(raw, image, RefineOptions(method="crf")) is raw


def test_votecut_crf_snaps_a_coarse_vote_to_the_object(tmp_path, cli):
    pytest.importorskip("pydensecrf")
    img = np.full((48, 48, 3), 20, np.uint8)
    img[10:38, 12:36] = (235, 220, 40)
    coarse = np.zeros((48, 48), bool)
    coarse[8:40, 8:40] = True  # the vote at patch resolution: too large on every side
    refined = crf_refine(coarse, img, RefineOptions(method="crf"))
    truth = np.zeros((48, 48), bool)
    truth[10:38, 12:36] = True
    assert np.count_nonzero(refined & truth) / np.count_nonzero(refined | truth) > 0.95
    # through the command: --refine crf is VoteCut's own; --refine bilateral is not
    backbone = save_dino_backbone(tmp_path / "dino.pth", patch_size=16, seed=1)
    (tmp_path / "images").mkdir()
    Image.fromarray(img).save(tmp_path / "images" / "a.png")
    base = ["--method", "votecut", "--backbone", backbone, "--fixed-size", 64, "--workers", 0, "--device", "cpu", "-q"]
    res = cli("predict", tmp_path / "images", "--out", tmp_path / "crf", "--refine", "crf", *base)
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "crf" / "a.png").exists()
    res = cli("predict", tmp_path / "images", "--out", tmp_path / "bs", "--refine", "bilateral", *base)
    assert res.exit_code == 2 and "it applies --refine crf" in res.stderr


def test_backbones_is_the_same_option_as_backbone(tmp_path, cli):
    files = [save_dino_backbone(tmp_path / "a.pth", patch_size=16, seed=1), save_dinov2(tmp_path / "b.pth", seed=2)]
    (tmp_path / "images").mkdir()
    img = np.full((40, 40, 3), 20, np.uint8)
    img[8:30, 10:32] = (230, 40, 40)
    Image.fromarray(img).save(tmp_path / "images" / "a.png")
    listed = ",".join(str(f) for f in files)
    common = ["--method", "votecut", "--fixed-size", 64, "--workers", 0, "--device", "cpu", "-q"]
    for flag in ("--backbone", "--backbones"):
        res = cli("predict", tmp_path / "images", "--out", tmp_path / flag, flag, listed, *common)
        assert res.exit_code == 0, res.stderr
    assert (tmp_path / "--backbone" / "a.png").read_bytes() == (tmp_path / "--backbones" / "a.png").read_bytes()
