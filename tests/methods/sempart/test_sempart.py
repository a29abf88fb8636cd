"""Sempart: losses against hand-computed values, model shapes and gradient routing, the polarity rule, the
predictor, the training objective (resume, oracle-feature toy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unsegcli.config import PreprocessConfig
from unsegcli.errors import UsageError
from unsegcli.methods.sempart import losses
from unsegcli.methods.sempart.config import SempartConfig, SempartLossConfig
from unsegcli.methods.sempart.model import SempartModel
from unsegcli.methods.sempart.predictor import SempartPredictor, apply_polarity, corner_flip


def tiny(seed: int = 0, **kw) -> SempartModel:
    torch.manual_seed(seed)
    return SempartModel(SempartConfig.tiny(**kw))


# ------------------------------------------------------------------------------------------- losses
def test_affinity_threshold_and_self_loops():
    f = torch.tensor([[[1.0, 0.0], [2.0, 0.2], [0.0, 1.0]]])  # cos(0,1) = 0.995, cos(0,2) = 0, cos(1,2) = 0.0995
    w = losses.affinity(f, tau=0.2, eps=1e-6)
    expected = torch.tensor([[0, 1, 1e-6], [1, 0, 1e-6], [1e-6, 1e-6, 0]])
    assert torch.allclose(w[0], expected)
    # the same tensor as a (B, C, h, w) grid; self-loops (cos 1 > τ) on request
    grid = f.transpose(1, 2).reshape(1, 2, 1, 3)
    assert torch.allclose(losses.affinity(grid, 0.2, 1e-6, self_loops=True)[0], expected + torch.eye(3))
    assert torch.allclose(losses.affinity(f, tau=0.05, eps=1e-6)[0, 1, 2], torch.tensor(1.0))


def test_soft_ncut_hand_computed():
    w = torch.tensor([[[0, 1, 0.5, 0], [1, 0, 0, 0], [0.5, 0, 0, 1], [0, 0, 1, 0.0]]])
    # binary {0,1} | {2,3}: cut 0.5, both volumes 2.5 -> discrete Ncut 0.5/2.5 + 0.5/2.5
    assert losses.soft_ncut(torch.tensor([[1.0, 1, 0, 0]]), w, eps=0).item() == pytest.approx(0.4)
    # soft s = (.5, 1, 0, 0): S_A^T W (1-S_A) = .75, S_A^T d = 1.75; S_B^T W S_A = .75, S_B^T d = 3.25
    s = torch.tensor([[0.5, 1, 0, 0]])
    assert losses.soft_ncut(s, w, eps=0).item() == pytest.approx(0.75 / 1.75 + 0.75 / 3.25)
    assert losses.soft_ncut(1 - s, w, eps=0).item() == pytest.approx(0.75 / 1.75 + 0.75 / 3.25)  # polarity-free
    for c in (0.1, 0.5, 0.93):  # every constant mask sits at exactly 1 (the plateau, our reading of the paper)
        assert losses.soft_ncut(torch.full((1, 4), c), w, eps=0).item() == pytest.approx(1.0)


def test_ncut_perfect_partition_beats_constant_mask():
    g = torch.Generator().manual_seed(0)
    u, v = torch.zeros(16), torch.zeros(16)
    u[0], v[1] = 1.0, 1.0
    truth = torch.zeros(6, 6)
    truth[1:4, 2:5] = 1
    feats = truth.flatten()[:, None] * u + (1 - truth.flatten()[:, None]) * v + 0.03 * torch.randn(36, 16, generator=g)
    w = losses.affinity(feats[None], 0.2, 1e-6)
    perfect = losses.soft_ncut(truth.flatten()[None], w).item()
    assert perfect < 1e-3
    assert losses.soft_ncut(torch.full((1, 36), 0.5), w).item() == pytest.approx(1.0, abs=1e-4)
    half_wrong = truth.clone()
    half_wrong[:, :3] = 1 - half_wrong[:, :3]
    assert losses.soft_ncut(half_wrong.flatten()[None], w).item() > 0.5  # a wrong cut is no better than none


def test_grid_gtv_hand_computed_and_laplacian():
    s = torch.tensor([[[[0.0, 1.0], [0.5, 1.0]]]])
    w_h = torch.tensor([[[1.0], [0.5]]])  # edges (0,0)-(0,1) and (1,0)-(1,1)
    w_v = torch.tensor([[[2.0, 1.0]]])  # edges (0,0)-(1,0) and (0,1)-(1,1)
    # horizontal 1²·1 + 0.5²·0.5 = 1.125; vertical 0.5²·2 + 0 = 0.5
    assert losses.grid_gtv(s, w_h, w_v).item() == pytest.approx(1.625)
    assert losses.grid_gtv(s, w_h, w_v, "mean").item() == pytest.approx(1.625 / 4)
    # independent check: ½ Σ_ij A_ij (s_i − s_j)² = sᵀ(D − A)s on a random 3x4 grid with a dense A
    g = torch.Generator().manual_seed(1)
    h, wd = 3, 4
    s = torch.rand(1, 1, h, wd, generator=g)
    w_h, w_v = torch.rand(1, h, wd - 1, generator=g), torch.rand(1, h - 1, wd, generator=g)
    a = torch.zeros(h * wd, h * wd)
    for i in range(h):
        for j in range(wd):
            if j + 1 < wd:
                a[i * wd + j, i * wd + j + 1] = a[i * wd + j + 1, i * wd + j] = w_h[0, i, j]
            if i + 1 < h:
                a[i * wd + j, (i + 1) * wd + j] = a[(i + 1) * wd + j, i * wd + j] = w_v[0, i, j]
    flat = s.flatten()
    assert losses.grid_gtv(s, w_h, w_v).item() == pytest.approx((flat @ (torch.diag(a.sum(1)) - a) @ flat).item())


def test_edge_weights_hand_computed():
    x = torch.zeros(1, 3, 2, 2)
    x[0, :, 0, 1] = torch.tensor([1.0, 0.0, 1.0])  # ‖Δ‖² = 2 to both neighbours
    w_h, w_v = losses.color_edge_weights(x, sigma=1.0)
    assert torch.allclose(w_h[0], torch.tensor([[float(np.exp(-2.0))], [1.0]]))
    assert torch.allclose(w_v[0], torch.tensor([[1.0, float(np.exp(-2.0))]]))
    assert losses.color_edge_weights(x, sigma=4.0)[0][0, 0, 0].item() == pytest.approx(np.exp(-0.5))
    f = torch.zeros(1, 2, 2, 2)
    f[0, 0] = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # (1, 0) vectors, one (-1, 0)
    f[0, 1] = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    w_h, w_v = losses.feature_edge_weights(f, tau=0.0, eps=1e-6)
    assert torch.allclose(w_h[0], torch.tensor([[1.0], [1e-6]]))  # cos = 1 and -1
    assert torch.allclose(w_v[0], torch.tensor([[1.0, 1e-6]]))


def test_sr_loss_average_pools():
    fine = torch.zeros(1, 1, 4, 4)
    fine[0, 0, :2, :2] = 1.0
    fine[0, 0, 2:, 2:] = 0.5
    fine[0, 0, 0, 2] = 1.0  # top-right cell averages to 0.25
    coarse = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # pooled [[1, .25], [0, .5]] -> squared errors 0, .0625, 0, .25
    assert losses.sr_loss(fine, coarse, "sum").item() == pytest.approx(0.3125)
    assert losses.sr_loss(fine, coarse, "mean").item() == pytest.approx(0.3125 / 4)


def test_total_loss_on_constant_masks():
    """Constant masks: Ncut = 1, both GTVs = 0, SR = (c_f − c_c)²: the total is known by hand."""
    feats = torch.randn(2, 8, 4, 4)
    image = torch.randn(2, 3, 16, 16)
    coarse, fine = torch.full((2, 1, 4, 4), 0.3), torch.full((2, 1, 16, 16), 0.7)
    t = losses.sempart_loss(coarse, fine, feats, image, SempartLossConfig())
    assert t["ncut"].item() == pytest.approx(1.0, abs=1e-5)
    assert t["gtv_coarse"].item() == 0 and t["gtv_fine"].item() == 0
    assert t["sr"].item() == pytest.approx(20 * 0.16)  # mean over cells: λ_SR · 0.4²
    t = losses.sempart_loss(coarse, fine, feats, image, SempartLossConfig(reduction_sr="sum"))
    assert t["total"].item() == pytest.approx(1 + 20 * 0.16 * 16, rel=1e-5)  # literal sum over 16 cells


def test_loss_config_validation_and_round_trip():
    cfg = SempartLossConfig(reduction_gtv="mean", tau=0.25)
    assert SempartLossConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UsageError):
        SempartLossConfig(reduction_sr="max")
    with pytest.raises(UsageError):
        SempartLossConfig.from_dict({"lambda": 1})


# ------------------------------------------------------------------------------------------- model
def test_model_shapes_and_paper_sizes():
    m = tiny()
    out = m(torch.randn(2, 3, 64, 48))
    assert out.coarse.shape == (2, 1, 8, 6) and out.fine.shape == (2, 1, 64, 48)
    assert out.features.patches.shape == (2, 32, 8, 6) and out.features.cls.shape == (2, 32)
    # the full model with our choices for what the paper leaves open: 715,333 trainable parameters
    full = SempartModel(SempartConfig(), vit=torch.nn.Module())  # no ViT-S weights to initialise: fast
    assert sum(p.numel() for p in full.trainable_parameters()) == 715_333
    assert [b[0].in_channels for b in full.fine.blocks] == [67, 195, 131, 128]  # eq. 13
    assert full.fine.classifier.in_channels == 131
    from unsegcli.config import PRESETS

    assert SempartConfig.from_preset(PRESETS["vits8"]) == SempartConfig()  # MOVE's ViT-S/8 widths = eq. 13's
    assert SempartConfig.from_preset(PRESETS["vits16"]).fine_widths == (192, 128, 128, 128, 128)  # one more x2
    cfg = SempartConfig.tiny(features="tokens")
    assert SempartConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UsageError):
        SempartConfig.tiny(patch_size=6)


def test_keys_are_the_last_attention_keys():
    """The "keys" features equal the k third of the last block's qkv, computed independently via a hook."""
    m = tiny().eval()
    x = torch.randn(1, 3, 32, 32)
    seen = {}
    m.backbone.vit.blocks[-1].attn.qkv.register_forward_hook(lambda mod, i, o: seen.setdefault("qkv", o))
    feats = m.backbone(x)
    k = seen["qkv"][0, :, 32:64]  # (1 + 16 tokens, 32)
    assert torch.allclose(feats.cls[0], k[0], atol=1e-6)
    assert torch.allclose(feats.patches[0].flatten(1).T, k[1:], atol=1e-6)
    # "tokens": the last block's output after DINO's final norm = timm's forward_features at the native size
    t = tiny(features="tokens").eval()
    x = torch.randn(1, 3, 64, 64)
    ref = t.backbone.vit.forward_features(x)
    feats = t.backbone(x)
    assert torch.allclose(feats.cls[0], ref[0, 0], atol=1e-5)
    assert torch.allclose(feats.patches[0].flatten(1).T, ref[0, 1:], atol=1e-5)


def test_gradients_reach_only_trainable_parts():
    m = tiny().train()
    x = torch.randn(2, 3, 32, 32)
    out = m(x)
    assert not out.features.patches.requires_grad
    t = losses.sempart_loss(out.coarse.sigmoid(), out.fine.sigmoid(), out.features.patches, x, SempartLossConfig())
    t["total"].backward()
    assert all(p.grad is None for p in m.backbone.parameters())
    for part in (m.encoder, m.coarse, m.fine):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert not m.backbone.vit.training  # frozen ViT stays in eval mode


def test_without_joint_training_fine_losses_stop_at_the_fine_branch():
    m = tiny().train()
    x = torch.randn(2, 3, 32, 32)
    cfg = SempartLossConfig(joint=False)
    feats = m.backbone(x)
    coarse, fine = m.heads(x, feats, joint=False)
    t = losses.sempart_loss(coarse.sigmoid(), fine.sigmoid(), feats.patches, x, cfg)
    (t["gtv_fine"] + t["sr"]).backward()
    assert all(p.grad is None for p in (*m.encoder.parameters(), *m.coarse.parameters()))
    assert all(p.grad is not None for p in m.fine.parameters())


# ------------------------------------------------------------------------------------------- polarity
def test_corner_rule():
    def mask(fill):
        m = torch.zeros(1, 1, 8, 8)
        fill(m[0, 0])
        return m

    centre = mask(lambda m: m[2:6, 2:6].fill_(0.9))
    assert not corner_flip(centre).item()  # foreground touches no corner: keep
    assert corner_flip(1 - centre).item()  # background was labelled 1: flip
    left_quarter = mask(lambda m: m[:, :2].fill_(0.9))  # 2 corners each side: the smaller (area 1/4) wins
    assert not corner_flip(left_quarter).item() and corner_flip(1 - left_quarter).item()
    three_corners = mask(lambda m: (m.fill_(0.9), m[6:, 6:].fill_(0.1)))
    assert corner_flip(three_corners).item()
    batch = torch.cat([centre, 1 - centre])
    fixed = apply_polarity(batch)
    assert torch.allclose(fixed[0], centre[0]) and torch.allclose(fixed[1], centre[0])  # 1 − (1 − m) = m


def _corner_model() -> SempartModel:
    """A tiny model whose fine logits are 20·(red channel of the input): S = 1 where the image is red."""
    m = tiny()
    with torch.no_grad():
        m.fine.classifier.weight.zero_()
        m.fine.classifier.bias.zero_()
        m.fine.classifier.weight[0, -3] = 20.0
    return m.eval()


def test_predictor_flips_bright_corners_and_restores_size():
    img = np.zeros((50, 70, 3), np.uint8)
    img[:, :, 0] = 255  # red background (normalised red > 0 -> S ≈ 1 on the corners)
    img[15:35, 20:50] = 0  # a dark object in the middle
    pred = SempartPredictor(_corner_model())
    p = pred.prepare(3, img)
    assert p.tensor.shape == (3, 64, 64) and p.original == (50, 70) and p.index == 3
    (mask,) = pred.run([p])
    assert mask.shape == (50, 70) and mask.dtype == np.float32
    assert mask[25, 35] > 0.9 and mask[2, 2] < 0.1 and mask[47, 67] < 0.1
    coarse = SempartPredictor(_corner_model(), PreprocessConfig(size=64), branch="coarse").run([p])[0]
    assert coarse.shape == (50, 70) and 0 <= coarse.min() and coarse.max() <= 1
    assert sum(coarse[i, j] > 0.5 for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1))) <= 2  # rule (d) holds
    with pytest.raises(UsageError):
        SempartPredictor(_corner_model(), PreprocessConfig(size=64), branch="medium")


# ------------------------------------------------------------------------------------------- training
def _objective(seed: int = 0, lr: float = 1e-3, **loss_kw):
    from unsegcli.engine.config import TrainConfig
    from unsegcli.methods.sempart.objective import SempartObjective

    cfg = TrainConfig(
        objective="sempart",
        steps=4,
        batch_size=2,
        crop=64,
        lr=lr,
        betas=(0.9, 0.999),
        workers=0,
        save_every=2,
        log_every=1,
        log_images_every=2,
        device="cpu",
    )
    return cfg, SempartObjective(cfg, tiny(seed), SempartLossConfig(**loss_kw))


def _trainer(tmp_path, steps: int):
    from dataclasses import replace

    from PIL import Image

    from unsegcli.engine.train import Trainer
    from unsegcli.methods.sempart.objective import SempartObjective

    (tmp_path / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate([(72, 80), (64, 64), (90, 70), (64, 100)]):
        small = np.random.default_rng(i).integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        paths.append(str(tmp_path / "images" / f"{i}.png"))
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(paths[-1])
    cfg, objective = _objective()
    cfg = replace(cfg, steps=steps)
    return Trainer(objective, SempartObjective.dataset(cfg, paths, None), cfg, tmp_path / "run")


def test_training_run_checkpoint_and_exact_resume(tmp_path):
    import json

    from unsegcli.model.checkpoint import read_checkpoint
    from unsegcli.model.state_dict import load_strict

    a = _trainer(tmp_path / "a", 4)
    last = a.run()
    lines = [json.loads(s) for s in (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    assert {"loss_total", "loss_ncut", "loss_gtv_coarse", "loss_gtv_fine", "loss_sr"} <= set(lines[0])
    assert (tmp_path / "a" / "run" / "images" / "step_0000004.png").exists()
    ckpt = read_checkpoint(last)
    assert ckpt["family"] == "sempart" and ckpt["train_state"]["objective"] == "sempart"
    assert ckpt["preprocess"]["size"] == 64 and ckpt["meta"]["sempart_loss"]["reduction_sr"] == "mean"
    # the exported checkpoint rebuilds from its own config (what the family entry does for predict)
    model = SempartModel(SempartConfig.from_dict(ckpt["model_config"]))
    load_strict(model, ckpt["state_dict"], "test")
    b = _trainer(tmp_path / "b", 2)
    b.run()
    c = _trainer(tmp_path / "b", 4)
    c.resume(tmp_path / "b" / "run" / "last.pt")
    assert c.step == 2
    c.run()
    trained = a.objective.modules()["segmenter"].state_dict()
    for k, v in c.objective.modules()["segmenter"].state_dict().items():
        torch.testing.assert_close(v, trained[k], atol=1e-6, rtol=1e-5)
    initial = tiny(0).state_dict()  # what _objective started from
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, initial[k])}
    assert any(k.startswith("fine.") for k in changed) and any(k.startswith("encoder.") for k in changed)
    assert not any(k.startswith("backbone.") for k in changed)  # the ViT stayed frozen through training


def _shapes(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images: a background colour with red < green, an ellipse with red > green, away from the
    corners. Returns (images (n, 3, S, S), masks (n, 1, S, S))."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(n, 1, size, size)
    for i in range(n):
        h, w = torch.randint(size // 3, 5 * size // 8 + 1, (2,), generator=g).tolist()
        top = int(torch.randint(size // 8, size - h - size // 8 + 1, (1,), generator=g))
        left = int(torch.randint(size // 8, size - w - size // 8 + 1, (1,), generator=g))
        masks[i, 0] = (((yy - top - h / 2) / (h / 2)) ** 2 + ((xx - left - w / 2) / (w / 2)) ** 2 <= 1).float()
    bg, fg = torch.rand(n, 3, 1, 1, generator=g) * 2 - 1, torch.rand(n, 3, 1, 1, generator=g) * 2 - 1
    bg[:, 0] = bg[:, 1] - 0.5 - 0.5 * torch.rand(n, 1, 1, generator=g)
    fg[:, 0] = fg[:, 1] + 0.5 + 0.5 * torch.rand(n, 1, 1, generator=g)
    x = masks * fg + (1 - masks) * bg + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return x, masks


class OracleFeatures(torch.nn.Module):
    """Stand-in for DINO: each patch's feature is frac·u + (1 − frac)·v + noise, frac = its share
    of object pixels, u ⟂ v, at a DINO-like magnitude (×20). The object is read off the image (red > green)."""

    def __init__(self, dim: int, patch: int):
        super().__init__()
        g = torch.Generator().manual_seed(123)
        u, v = torch.randn(dim, generator=g), torch.randn(dim, generator=g)
        v = v - (v @ u) / (u @ u) * u
        self.register_buffer("u", u / u.norm())
        self.register_buffer("v", v / v.norm())
        self.patch = patch

    def forward(self, x: torch.Tensor):
        from unsegcli.methods.sempart.model import DinoFeatures

        frac = torch.nn.functional.avg_pool2d((x[:, :1] > x[:, 1:2]).float(), self.patch)
        f = frac * self.u[:, None, None] + (1 - frac) * self.v[:, None, None]
        g = torch.Generator().manual_seed(int(x.abs().sum().item() * 1000) % 2**31)
        f = 20 * (f + 0.05 * torch.randn(f.shape, generator=g))
        return DinoFeatures(f, f.mean((2, 3)))


def _iou(model: SempartModel, x: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Mean IoU of the coarse and fine masks after the polarity rule, as predict produces them."""
    model.eval()
    with torch.no_grad():
        out = model(x)
        fine = apply_polarity(out.fine.sigmoid()) > 0.5
        coarse = torch.nn.functional.interpolate(apply_polarity(out.coarse.sigmoid()), size=x.shape[-2:]) > 0.5
    model.train()
    t = truth > 0.5
    return tuple(
        ((p & t).sum((1, 2, 3)) / (p | t).sum((1, 2, 3)).clamp(min=1)).mean().item()  # type: ignore
        for p in (coarse, fine)
    )


def test_oracle_features_toy_learns_the_object():
    """With features that carry a foreground direction, the objective's own steps take the masks from chance to
    the object. Threshold 0.6: predicting everything as foreground scores the object's area (≈ 0.19 here), an
    empty mask 0, and the coarse mask is capped near 0.75 by its 8x8 patch grid on ellipses of 21-40 px.
    Measured with these seeds: coarse 0.15 -> 0.70, fine -> 0.95 after 60 steps. Other model seeds whose initial
    masks have little contrast (per-image std < 0.1) stay on the constant-mask plateau of the soft Ncut (L = 1,
    zero gradient; our reading of the paper) in this toy: 2 of 6 seeds; the seed is fixed for that reason."""
    from unsegcli.engine.train import RunContext

    _, objective = _objective(lr=1e-2)
    model = objective.model
    model.backbone = OracleFeatures(32, 8)
    g = torch.Generator().manual_seed(0)
    x_train, _ = _shapes(64, 64, g)
    x_test, m_test = _shapes(32, 64, g)
    assert m_test.mean().item() < 0.25
    ctx = RunContext(torch.device("cpu"), g, "fp32", objective.optimizers())
    coarse0, _ = _iou(model, x_test, m_test)
    for step in range(60):
        out = objective.step([x_train[torch.randint(0, 64, (8,), generator=g)]], step, ctx)
    assert set(out.images) == {"input", "coarse", "fine"} and out.images["coarse"].shape == (8, 1, 64, 64)
    coarse, fine = _iou(model, x_test, m_test)
    assert coarse > 0.6 and fine > 0.6 and coarse > coarse0 + 0.2


def test_cli_ten_step_random_init_run_predict_eval(tmp_path, cli):
    """The issue's "done": a 10-step random-init run whose checkpoint predict, boxes and eval use like MOVE's."""
    assert cli("synth", tmp_path / "d", "--n", "6", "--size", "64", "-q").exit_code == 0
    res = cli(
        "train",
        tmp_path / "d" / "images",
        "--method",
        "sempart",
        "--random-init",
        "--arch",
        "tiny",
        "--crop",
        "64",
        "--batch-size",
        "2",
        "--steps",
        "10",
        "--out",
        tmp_path / "run",
        "--device",
        "cpu",
        "-j",
        "0",
        "-q",
    )
    assert res.exit_code == 0, res.output
    for branch in ("fine", "coarse"):
        out = tmp_path / branch
        res = cli(
            "predict",
            tmp_path / "d" / "images",
            "-o",
            out,
            "-w",
            tmp_path / "run" / "last.pt",
            "-j",
            "0",
            "-q",
            *(["--branch", branch] if branch == "coarse" else []),
        )
        assert res.exit_code == 0, res.output
        assert len(list(out.glob("*.png"))) == 6
    assert cli("eval", "saliency", "--gt", tmp_path / "d" / "masks", "--pred", tmp_path / "fine").exit_code == 0
    assert cli("boxes", tmp_path / "fine", "-o", tmp_path / "boxes.json", "-q").exit_code == 0
