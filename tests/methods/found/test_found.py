"""FOUND (unsegcli/methods/found): the official decoder file, the background seed rule, the losses and schedule,
the solver's binarisation rules, and the CLI end to end on generated images with random DINO-layout weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from unsegcli.config import PRESETS, PreprocessConfig
from unsegcli.engine.config import TrainConfig
from unsegcli.errors import CheckpointError
from unsegcli.methods import predict_methods
from unsegcli.methods.found.config import FoundConfig, FoundOptions, FoundTrainOptions
from unsegcli.methods.found.core import background, features, read_official_decoder, single
from unsegcli.methods.found.family import predictor as family_predictor
from unsegcli.methods.found.model import FoundModel
from unsegcli.methods.found.objective import FoundObjective, bce
from unsegcli.methods.found.predictor import pretrained
from unsegcli.model.checkpoint import checkpoint_dict, save_checkpoint
from unsegcli.refine import RefineOptions
from unsegcli.refine.postprocess import official_component

from ...helpers import random_image, save_dino_backbone

REPO = Path(__file__).resolve().parents[3]


def _decoder_file(path: Path, dim: int, seed: int = 1) -> torch.nn.Conv2d:
    """A random decoder saved as the official model.py decoder_save_weights does: {"decoder": Conv2d state}."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(dim, 1, (1, 1))
    with torch.no_grad():
        conv.weight.mul_(20.0)  # spread the logits so the masks have both sides
    torch.save({"decoder": conv.state_dict()}, path)
    return conv


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path, torch.nn.Conv2d]:
    d = tmp_path_factory.mktemp("found")
    backbone = save_dino_backbone(d / "dino.pth", patch_size=8, embed_dim=128, depth=2, img_size=64)
    return backbone, d / "decoder.pt", _decoder_file(d / "decoder.pt", 128)


def test_official_decoder_file_round_trip(weights, tmp_path):
    backbone, decoder, conv = weights
    sd = read_official_decoder(decoder)
    assert torch.equal(sd["weight"], conv.weight) and torch.equal(sd["bias"], conv.bias)
    # the official decoder through `--method found` = our checkpoint of the same model through `--method move`
    named = pretrained("found", FoundOptions(decoder=str(decoder)), backbone=backbone)
    image = random_image(37, 45, seed=4)
    prep = named.prepare(0, image)
    (soft,) = named.run([prep])
    # by hand: keys -> conv -> x8 bilinear on the padded grid -> crop -> sigmoid (evaluation/saliency.py)
    keys, _ = features(named.model.vit, prep.tensor[None])
    logits = F.interpolate(conv(keys), scale_factor=8, mode="bilinear", align_corners=False)[..., :37, :45]
    assert soft.shape == (37, 45) and 0 < (soft > 0.5).mean() < 1
    np.testing.assert_allclose(soft, torch.sigmoid(logits)[0, 0].detach().numpy(), atol=1e-6)
    path = tmp_path / "found.pt"
    save_checkpoint(path, checkpoint_dict(named.model, PreprocessConfig(), family="found"))
    from unsegcli.methods.loading import load_model

    loaded = load_model(path)
    (again,) = family_predictor(loaded.model, loaded.preprocess, torch.device("cpu"), "fp32", False).run([prep])
    np.testing.assert_array_equal(again, soft)


def test_decoder_files_that_are_not_decoders_are_named(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"decoder": {"weight": torch.zeros(2, 4, 1, 1), "bias": torch.zeros(2)}}, bad)
    with pytest.raises(CheckpointError, match="bad.pt"):
        read_official_decoder(bad)
    (tmp_path / "html.pt").write_text("<html>")
    with pytest.raises(CheckpointError, match="html.pt: not a FOUND decoder file"):
        read_official_decoder(tmp_path / "html.pt")


def test_background_seed_rule_on_a_hand_built_attention_map():
    # 2 heads, a 2x2 grid. mean attention 0.25: Q = (1/4, 2/4), so β = (log 3, log 1.5) (ε negligible).
    att = torch.tensor([[[0.1, 0.1, 0.1, 0.7], [0.3, 0.2, 0.2, 0.3]]])
    # Σ β·att per patch = .2315, .1910, .1910, .8905: the seed is patch 1 (the first of the tie)
    keys = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.2, 1.0]]).T.reshape(1, 2, 2, 2)
    # β-weighted cosines with the seed's key: .938, 1, 0, .476 (unweighted, patch 3 would be .196: object)
    bkg = background(keys, att, 0.3)
    assert bkg.tolist() == [[[True, True], [False, True]]]
    assert background(keys, att, 0.95).tolist() == [[[False, True], [False, False]]]  # the seed stays background


def test_losses_and_schedule_on_hand_computed_cases():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.5]]]])
    by_hand = (math.log(2) + math.log(1 + math.e**2) + math.log(1 + math.e**-1) + math.log(2)) / 4
    assert bce(logits, target).item() == pytest.approx(by_hand, rel=1e-6)
    cfg = TrainConfig(objective="found", lr=0.05, steps=501)
    obj = FoundObjective(cfg, FoundModel(FoundConfig(backbone=PRESETS["tiny"].backbone)), FoundTrainOptions())
    # StepLR(50, 0.95) stepped every iteration: 0.05 · 0.95^⌊step/50⌋
    assert [obj.learning_rate(s) for s in (0, 49, 50, 500)] == pytest.approx([0.05, 0.05, 0.0475, 0.05 * 0.95**10])
    group = obj.opt.param_groups[0]
    assert group["weight_decay"] == 0.01
    # the terms: BS + background for the first 100 steps, BS + self after (weights 1.5, 1, 4)
    x = torch.zeros(1, 3, 16, 16)
    keys, att = torch.randn(1, 32, 2, 2), torch.full((1, 2, 4), 0.25)
    early = obj.targets(x, torch.zeros(1, 1, 2, 2), keys, att, 99, None)
    late = obj.targets(x, torch.full((1, 1, 2, 2), 3.0), keys, att, 100, None)
    assert {k: w for k, (_, w) in early.items()} == {"bs": 1.5, "bkg": 1.0}
    assert {k: w for k, (_, w) in late.items()} == {"bs": 1.5, "self": 4.0}
    assert late["self"][0].tolist() == [[[[1.0, 1.0], [1.0, 1.0]]]]  # sigmoid(3) > 0.5: the own hard mask


def test_solver_binarisation_official_picks_the_background_fixed_keeps_the_object():
    solved = np.zeros((10, 10))
    solved[1:9, 1:9] = 1.0  # an object of 64 pixels on 36 of background
    official = official_component(solved, all_components=False)
    assert official.sum() == 36 and not official[5, 5]  # the second-largest label: the background
    assert official_component(solved, all_components=True).sum() == 36  # every label but the largest
    assert single(solved > 0.5).sum() == 64  # our rule: the largest foreground component


def test_found_is_a_predict_method_and_a_missing_weight_names_fetch(tmp_path, monkeypatch):
    assert {"found", "found-bkg"} <= set(predict_methods())
    monkeypatch.setenv("UNSEG_WEIGHTS_DIR", str(tmp_path))
    import importlib

    import unsegcli.model.registry as registry

    importlib.reload(registry)
    try:
        with pytest.raises(Exception, match="dino-vits8-300ep") as err:
            pretrained("found")
        assert "unseg weights fetch dino-vits8-300ep" in err.value.hint
        assert registry.KNOWN["found-decoder"].sha256.startswith("47ff2a4a")
    finally:
        monkeypatch.delenv("UNSEG_WEIGHTS_DIR")
        importlib.reload(registry)


def test_found_end_to_end_on_generated_images(tmp_path, weights, cli):
    unseg = cli  # in process: the commands as a user runs them, without 12 interpreter start-ups
    backbone, decoder, _ = weights
    res = unseg("synth", tmp_path / "data", "--n", 4, "--size", 48, "--voc", "-q")
    assert res.exit_code == 0, res.stderr
    images, gt = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    common = ["--workers", 0, "--device", "cpu", "-q"]
    for method, extra in (("found", ["--decoder", decoder, "--mode", "single"]), ("found-bkg", [])):
        out = tmp_path / method
        res = unseg("predict", images, "--out", out, "--method", method, "--backbone", backbone, *extra, *common)
        assert res.exit_code == 0, res.stderr
        written = [np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))]
        assert len(written) == 4 and all(set(np.unique(m)) <= {0, 255} for m in written)
        res = unseg("boxes", out, "--out", tmp_path / f"{method}.json", "--images", images)
        assert res.exit_code == 0, res.stderr
        res = unseg("corloc", "voc07", "--root", tmp_path / "data" / "VOCdevkit", "--pred", out, "--json", "-", "-j", 0)
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["images"] == 4
        res = unseg("eval", "saliency", "--gt", gt, "--pred", out, "--json", "-", "-j", 0)
        assert res.exit_code == 0, res.stderr

    # FOUND's recipe, 10 steps from a random ViT, resumed, then predicted through the checkpoint path
    run = tmp_path / "run"
    train = ["--method", "found", "--random-init", "--arch", "tiny", "--crop", 32, "--batch-size", 2]
    train += ["--bkg-steps", 3, "--log-images-every", 0, *common]
    res = unseg("train", images, "--out", run, "--steps", 6, *train)
    assert res.exit_code == 0, res.stderr
    res = unseg("train", images, "--out", run, "--steps", 10, "--resume", *train)
    assert res.exit_code == 0, res.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 10
    res = unseg("predict", images, "--out", tmp_path / "trained", "--weights", run / "last.pt", *common)
    assert res.exit_code == 0, res.stderr
    res = unseg("eval", "saliency", "--gt", gt, "--pred", tmp_path / "trained", "--json", "-", "-j", 0)
    assert res.exit_code == 0, res.stderr


def _planted_colour_backbone(path: Path) -> Path:
    """A DINO-layout ViT-S/8-shaped file (one 64-d head, one block) whose last-block keys are the LayerNorm of each
    patch's mean colour: the patch embedding averages each colour channel into its own dimension, position
    embeddings and CLS are zero, the block's attention and MLP add nothing to the residual, and the key
    projection is the identity. So a 1x1 decoder can separate two colours, and only the masks say which is which."""
    save_dino_backbone(path, patch_size=8, embed_dim=64, depth=1, img_size=64)
    sd = torch.load(path)
    zeroed = ("cls_token", "pos_embed", "patch_embed.proj", "blocks.0.attn.qkv", "blocks.0.attn.proj")
    zeroed += ("blocks.0.mlp.fc2",)
    for name in [n for n in sd if n.startswith(zeroed)]:
        sd[name] = torch.zeros_like(sd[name])
    for c in range(3):
        sd["patch_embed.proj.weight"][c, c] = 1.0 / 64  # the channel's mean over the 8x8 patch
    sd["blocks.0.attn.qkv.weight"][64:128] = torch.eye(64)  # keys = norm1(tokens)
    torch.save(sd, path)
    return path


def _ellipse_images(root: Path, n: int = 6, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    """Red ellipses on blue with pixel noise: images/, their masks/ and the masks inverted/; returns the masks."""
    rng = np.random.default_rng(seed)
    for d in ("images", "masks", "inverted"):
        (root / d).mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    masks = []
    for i in range(n):
        (cy, cx), (ry, rx) = rng.uniform(36, 60, 2), rng.uniform(20, 32, 2)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        img = np.where(m[..., None], (220.0, 60.0, 40.0), (40.0, 90.0, 200.0)) + rng.normal(0, 12, (size, size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray((m * 255).astype(np.uint8)).save(root / "masks" / f"{i}.png")
        Image.fromarray((~m * 255).astype(np.uint8)).save(root / "inverted" / f"{i}.png")
        masks.append(m)
    return masks


def test_distillation_recovers_known_masks_on_generated_images(tmp_path, cli):
    """`unseg train --method found --masks` (= --from-masks: found-distil) on the known masks of generated images, then
    `unseg predict --weights`: the masks come back (IoU > 0.9 on average). The control trains on the same images
    with the masks inverted: its predictions must miss the known masks, so the masks, not the colours, decide."""
    backbone = _planted_colour_backbone(tmp_path / "dino.pth")
    known = _ellipse_images(tmp_path)
    common = ["--workers", 0, "--device", "cpu", "-q"]
    ious = {}
    for given in ("masks", "inverted"):
        run, out = tmp_path / f"run-{given}", tmp_path / f"pred-{given}"
        res = cli("train", tmp_path / "images", "--method", "found", "--masks", tmp_path / given, "--out", run,
                  "--backbone-weights", backbone, "--steps", 30, "--crop", 96, "--batch-size", 6,
                  "--log-images-every", 0, *common)  # fmt: skip
        assert res.exit_code == 0, res.stderr
        assert torch.load(run / "last.pt", weights_only=False)["family"] == "found"
        res = cli("predict", tmp_path / "images", "--out", out, "--weights", run / "last.pt", "--binary", *common)
        assert res.exit_code == 0, res.stderr
        pred = [np.asarray(Image.open(out / f"{i}.png")) > 127 for i in range(len(known))]
        ious[given] = [np.count_nonzero(p & m) / np.count_nonzero(p | m) for p, m in zip(pred, known, strict=True)]
    assert np.mean(ious["masks"]) > 0.9 and min(ious["masks"]) > 0.85, ious
    assert max(ious["inverted"]) < 0.1, ious


def test_found_bilateral_gate_and_rules_on_known_solver_outputs(monkeypatch):
    """FOUND's '+BS' (misc.py): the solver runs on the > 0.5 mask, its binarised output is kept only if its IoU
    with that mask is > 0.5. The solver is replaced by known outputs, so each rule's answer is known."""
    import unsegcli.refine.bilateral as bilateral
    from unsegcli.methods.found.core import soft_to_output

    image = np.zeros((12, 12, 3), np.uint8)
    soft = np.full((12, 12), 0.2, np.float32)
    soft[2:10, 2:10] = 0.9  # the mask: 64 px
    grown = np.zeros((12, 12), np.float32)
    grown[1:11, 1:11] = 1.0  # 100 px of 144: the object is the larger region
    monkeypatch.setattr(bilateral, "bilateral_solve", lambda img, target, *a: grown)
    fixed = soft_to_output(soft, image, "single", RefineOptions(output="component"))
    assert np.array_equal(fixed, grown)  # IoU 64/100 > 0.5: the solver's object
    # the official single rule keeps the second-largest label counting the background: the 44-px ring, whose IoU
    # with the mask is 0, so the gate keeps the mask itself
    official = soft_to_output(soft, image, "single", RefineOptions(output="official"))
    assert np.array_equal(official, soft > 0.5)
    monkeypatch.setattr(bilateral, "bilateral_solve", lambda img, target, *a: 1.0 - grown)
    assert np.array_equal(soft_to_output(soft, image, "multi", RefineOptions(output="component")), soft > 0.5)


def test_predict_found_refine_bilateral_is_founds_gated_solver(tmp_path, weights, cli):
    """`unseg predict --method found --refine bilateral` writes FOUND's '+BS' masks (binary, gated), not the
    generic solver's soft output; `--refine-output official` the published rule; soft is refused."""
    from unsegcli.io.images import decode_image
    from unsegcli.methods.found.core import soft_to_output

    backbone, decoder, _ = weights
    images = tmp_path / "images"
    images.mkdir()
    for i, (h, w) in enumerate([(40, 56), (48, 48)]):
        Image.fromarray(random_image(h, w, seed=10 + i)).save(images / f"{i}.png")
    base = ["--method", "found", "--backbone", backbone, "--decoder", decoder, "--workers", 0, "--device", "cpu", "-q"]
    plain = pretrained("found", FoundOptions(decoder=str(decoder)), backbone=backbone)
    for output in ("component", "official"):
        out = tmp_path / output
        extra = ["--refine-output", output] if output == "official" else []
        res = cli("predict", images, "--out", out, "--refine", "bilateral", *extra, *base)
        assert res.exit_code == 0, res.stderr
        for p in sorted(images.glob("*.png")):
            img = decode_image(str(p))
            (soft,) = plain.run([plain.prepare(0, img)])
            want = soft_to_output(soft, img, "multi", RefineOptions(output=output)) * 255
            assert np.array_equal(np.asarray(Image.open(out / p.name)), want.astype(np.uint8))
    res = cli("predict", images, "--out", tmp_path / "soft", "--refine", "bilateral", "--refine-output", "soft", *base)
    assert res.exit_code == 2 and "--refine-output component or official" in res.stderr
    res = cli("predict", images, "--out", tmp_path / "old", "--bilateral", "fixed", *base)
    assert res.exit_code == 2  # one flag: FOUND's solver is --refine bilateral


def test_settings_tag_records_the_decoder_by_content_and_checkpoints_refuse_sizes(tmp_path, weights, cli):
    from unsegcli.io.outputs import weights_identity
    from unsegcli.pipelines.predict import PredictRequest, prediction_settings

    backbone, _, _ = weights
    decoder = tmp_path / "decoder.pt"
    _decoder_file(decoder, 128, seed=3)
    req = PredictRequest(method="found", options={"decoder": str(decoder), "backbone": str(backbone)})
    settings, tag = prediction_settings(req)
    assert settings["decoder"] == weights_identity(decoder) and str(decoder) not in json.dumps(settings)
    _decoder_file(decoder, 128, seed=4)  # retrained under the same name: another tag, so no silent mixing
    assert prediction_settings(req)[1] != tag
    # a FOUND checkpoint predicts at full resolution: --size is refused, not ignored
    ckpt = tmp_path / "found.pt"
    model = pretrained("found", FoundOptions(decoder=str(decoder)), backbone=backbone).model
    save_checkpoint(ckpt, checkpoint_dict(model, PreprocessConfig(), family="found"))
    (tmp_path / "images").mkdir()
    Image.fromarray(random_image(24, 24)).save(tmp_path / "images" / "a.png")
    res = cli("predict", tmp_path / "images", "--out", tmp_path / "m", "--weights", ckpt, "--size", 64, "-q")
    assert res.exit_code == 2 and "--size does not apply to found checkpoints" in res.stderr
    assert not (tmp_path / "m" / "a.png").exists()


def test_bench_runs_found_and_its_bs_row_is_founds_gated_solver(tmp_path, weights, cli):
    """`unseg bench --methods found`: FOUND is in the table (it was left out), and its "+Bilateral" saliency row
    is what `unseg predict --method found --refine bilateral` writes (FOUND's gate), not the generic solver."""
    backbone, decoder, _ = weights
    assert cli("synth", tmp_path / "d", "--n", "2", "--size", "48", "--benchmarks", "-q").exit_code == 0
    out = tmp_path / "bench"
    res = cli("bench", "--data", tmp_path / "d", "--methods", "found", "--backbones", backbone, "--option",
              f"found.decoder={decoder}", "--datasets", "ecssd", "--out", out, "--device", "cpu")  # fmt: skip
    assert res.exit_code == 0, res.output
    cells = {c["refine"]: c for c in json.loads((out / "results.json").read_text())["cells"]}
    assert set(cells) == {None, "bilateral"} and cells[None]["method"] == "found"
    images = tmp_path / "d" / "ECSSD" / "images"
    res = cli("predict", images, "--out", tmp_path / "bs", "--method", "found", "--backbone", backbone,
              "--decoder", decoder, "--refine", "bilateral", "--device", "cpu", "-q")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    bench_bs = Path(cells["bilateral"]["predictions"])
    # predicted whole (not refined from the raw masks): its own time is the row's, not the raw masks' added
    timing = json.loads(bench_bs.with_name(bench_bs.name + ".timing.json").read_text())
    assert cells["bilateral"]["seconds_per_image"] == pytest.approx(timing["seconds"] / timing["images"])
    for p in sorted((tmp_path / "bs").glob("*.png")):
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(bench_bs / p.name)))
