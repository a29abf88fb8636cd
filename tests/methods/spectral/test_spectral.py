"""Training-free methods (LOST, TokenCut, MaskCut).

Known answers: hand-built graphs whose cut is known, transcriptions of the official formulas
(dense generalised eigh, scipy's 4-connected labelling, DINO's qkv hook), and round trips.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.linalg import eigh

from unsegcli.errors import UsageError, WeightsNotFoundError
from unsegcli.methods import METHODS, method_options
from unsegcli.methods.spectral.core import binary_cosine_affinity, fiedler, orient_by_seed, orient_corners
from unsegcli.methods.spectral.lost import LostOptions, lost_masks
from unsegcli.methods.spectral.maskcut import MaskCutOptions, maskcut_masks, rejected
from unsegcli.methods.spectral.predictor import CUTS, SpectralPredictor, upsample_labels
from unsegcli.methods.spectral.tokencut import TokenCutOptions, tokencut_masks
from unsegcli.model.dino_keys import backbone_config_from_state, last_block_keys, load_dino_vit, preprocess

from ...helpers import save_dino_backbone


def planted_keys(
    grid: tuple[int, int], boxes: list[tuple[int, int, int, int]], noise: float = 0.0, dim: int = 32, seed: int = 0
) -> torch.Tensor:
    """Keys of regions: background = 0, box k = k + 1 (see keys_of_regions)."""
    lab = torch.zeros(grid, dtype=torch.long)
    for k, (y0, x0, y1, x1) in enumerate(boxes):
        lab[y0:y1, x0:x1] = k + 1
    return keys_of_regions(lab, noise, dim, seed)


def keys_of_regions(lab: torch.Tensor, noise: float = 0.0, dim: int = 32, seed: int = 0) -> torch.Tensor:
    """(1, N, dim) keys: orthonormal region centres plus noise of norm ~``noise``."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.linalg.qr(torch.randn(dim, int(lab.max()) + 1, generator=g))[0].T
    return (centres[lab.ravel()] + noise / dim**0.5 * torch.randn(lab.numel(), dim, generator=g))[None]


def official_tokencut(keys: torch.Tensor, grid: tuple[int, int], tau: float = 0.2, eps: float = 1e-5) -> np.ndarray:
    """Transcription of TokenCut's ncut + detect_box (TokenCut object_discovery.py): dense generalised
    eigh, mean split, argmax|v| seed, scipy's 4-connected component of the seed."""
    k = torch.nn.functional.normalize(keys[0], p=2, dim=1)
    a = (k @ k.T).numpy() > tau
    a = np.where(a.astype(float) == 0, eps, a)
    d = np.diag(a.sum(1))
    v = eigh(d - a, d, subset_by_index=[1, 2])[1][:, 0]
    bip = v > v.sum() / len(v)
    seed = np.argmax(np.abs(v))
    if not bip[seed]:
        bip = ~bip
    objects, _ = ndimage.label(bip.reshape(grid))
    return objects == objects[np.unravel_index(seed, grid)]


def official_lost(keys: torch.Tensor, grid: tuple[int, int], k_patches: int = 100) -> np.ndarray:
    """Transcription of LOST's lost + detect_box (LOST object_discovery.py), stable sort for ties."""
    a = (keys[0] @ keys[0].T).numpy()
    pos = a.copy()
    np.fill_diagonal(pos, 0)
    order = np.argsort((pos > 0).sum(1), kind="stable")  # score -degree, descending
    seed = order[0]
    potentials = order[:k_patches]
    similars = potentials[a[seed, potentials] > 0]
    m = a[similars].sum(0)
    objects, _ = ndimage.label((m > 0).reshape(grid))
    return objects == objects[np.unravel_index(seed, grid)]


@pytest.mark.parametrize("solver", ["exact", "fast"])
def test_two_cliques_fiedler_is_known(solver):
    """Two cliques (n1 < n2) joined by eps edges: v is constant on each side, λ2 = eps N/(N eps + ...)
    checked through the Rayleigh quotient, vᵀDv = 1, and the smaller clique has the larger |v|."""
    grid = (8, 8)
    keys = planted_keys(grid, [(2, 2, 5, 6)])  # 12 object patches, 52 background
    a = binary_cosine_affinity(keys, 0.2, 1e-5)
    assert set(a.unique().tolist()) == {1e-5, 1.0}
    v = fiedler(a, solver)[0].numpy()
    d = a[0].sum(1).numpy()
    obj = np.zeros(grid, bool)
    obj[2:5, 2:6] = True
    obj = obj.ravel()
    assert np.ptp(v[obj]) < 1e-9 and np.ptp(v[~obj]) < 1e-9
    assert abs(v @ (d * v) - 1) < 1e-9 and abs(v @ d) < 1e-9  # D-normalised, D-orthogonal to 1
    lam = v @ (np.diag(d) - a[0].numpy()) @ v
    # by hand: degrees d1 = n1 + eps n2, d2 = n2 + eps n1; v = (c1 on the object, -c2 elsewhere) with
    # c1 n1 d1 = c2 n2 d2 gives (D - A) v = λ D v with λ = eps n2 / d1 + eps n1 / d2
    n1, n2, eps = 12, 52, 1e-5
    d1, d2 = n1 + eps * n2, n2 + eps * n1
    assert lam == pytest.approx(eps * n2 / d1 + eps * n1 / d2, rel=1e-6)
    assert abs(v[obj][0]) > abs(v[~obj][0])
    mask = tokencut_masks(keys, grid, TokenCutOptions(eigensolver=solver))[0][0]
    assert (mask.ravel().astype(bool) == obj).all()


def test_seed_component_keeps_only_the_seeds_piece():
    """Two separate patches of one cluster: the 4-connected component holding the seed is kept."""
    grid = (10, 10)
    lab = torch.zeros(grid, dtype=torch.long)
    lab[1:4, 1:4] = 1
    lab[6:8, 6:8] = 1
    keys = keys_of_regions(lab)
    mask = tokencut_masks(keys, grid, TokenCutOptions(eigensolver="exact"))[0][0].astype(bool)
    expect = official_tokencut(keys, grid)
    assert (mask == expect).all()
    assert mask.sum() in (9, 4) and ndimage.label(mask)[1] == 1


@pytest.mark.parametrize("seed", range(4))
def test_exact_and_fast_agree_with_the_official_transcription(seed):
    grid = (12, 16)
    boxes = [(2, 3, 7, 9), (8, 10, 11, 15)][: 1 + seed % 2]
    keys = planted_keys(grid, boxes, noise=0.9, seed=seed)
    a = binary_cosine_affinity(keys, 0.2, 1e-5)
    ve, vf = fiedler(a, "exact")[0], fiedler(a, "fast")[0]
    assert torch.minimum((ve - vf).abs().max(), (ve + vf).abs().max()) < 1e-8
    expect = official_tokencut(keys, grid)
    for solver in ("exact", "fast"):
        assert (tokencut_masks(keys, grid, TokenCutOptions(eigensolver=solver))[0][0].astype(bool) == expect).all()


def test_fast_solver_is_deterministic_and_batched():
    grid = (10, 12)
    keys = torch.cat([planted_keys(grid, [(1, 1, 5, 6)], 0.8, seed=s) for s in range(3)])
    a = binary_cosine_affinity(keys, 0.2, 1e-5)
    batched = fiedler(a, "fast")
    for i in range(3):
        assert torch.equal(fiedler(a[i : i + 1], "fast")[0], fiedler(a[i : i + 1], "fast")[0])
        assert torch.allclose(batched[i], fiedler(a[i : i + 1], "fast")[0], atol=1e-10)


def test_lost_matches_its_transcription():
    grid = (12, 16)
    for seed in range(3):
        keys = planted_keys(grid, [(3, 4, 8, 10)], noise=1.0, seed=seed) + 0.4
        for k in (5, 100):
            got = lost_masks(keys, grid, LostOptions(k_patches=k))[0][0].astype(bool)
            assert (got == official_lost(keys, grid, k)).all()


def corner_example() -> np.ndarray:
    """6x6 vector of CutLER maskcut/maskcut.py: a 2x2 object at +0.5, background at -1 with its peak -2 inside."""
    v = np.full((6, 6), -1.0)
    v[2:4, 2:4] = 0.5
    v[1, 4] = -2.0
    return v.ravel()[None]


def test_official_corner_rule_depends_on_the_sign_and_symmetric_does_not():
    v = corner_example()
    obj = np.zeros((6, 6), bool)
    obj[2:4, 2:4] = True
    plus, minus = orient_corners(v, (6, 6), "official")[0], orient_corners(-v, (6, 6), "official")[0]
    assert plus.sum() == 32 and (minus[0] == obj.ravel()).all()  # background under +v, object under -v
    for s in (1, -1):
        fg, seed = orient_corners(s * v, (6, 6), "symmetric")
        assert (fg[0] == obj.ravel()).all() and fg[0, seed[0]]


def test_orientations_are_sign_invariant_on_random_vectors():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 48))
    for rule in ("symmetric",):
        a, sa = orient_corners(v, (6, 8), rule)
        b, sb = orient_corners(-v, (6, 8), rule)
        assert (a == b).all() and (sa == sb).all()
    a, sa = orient_by_seed(v)
    b, sb = orient_by_seed(-v)
    assert (a == b).all() and (sa == sb).all()
    assert a[np.arange(50), sa].all()
    # under a peak-positive sign (the fast solver's convention) the official rule is the symmetric one
    peak_pos = v * np.sign(v[np.arange(50), np.abs(v).argmax(1)])[:, None]
    for x, y in zip(orient_corners(peak_pos, (6, 8), "official"), orient_corners(v, (6, 8), "symmetric"), strict=True):
        assert (x == y).all()
    # under a peak-negative sign it is TokenCut's rule: the peak's side, corners ignored
    neg = orient_corners(-peak_pos, (6, 8), "official")[0]
    assert (neg == orient_by_seed(v)[0]).all()
    assert (neg != orient_corners(peak_pos, (6, 8), "official")[0]).any(1).sum() > 5  # the sign matters


def test_fast_solver_sign_is_peak_positive():
    keys = planted_keys((8, 10), [(1, 1, 4, 5)], noise=0.8)
    v = fiedler(binary_cosine_affinity(keys, 0.2, 1e-5), "fast")[0]
    assert v[v.abs().argmax()] > 0


def test_maskcut_rejections():
    opts = MaskCutOptions()
    prev = np.zeros((4, 10, 10), bool)
    new = np.zeros((4, 10, 10), bool)
    new[0, 0, 0] = True  # 1 patch = 1% of the grid: rejected (<= 1%)
    new[1, 0, :2] = True  # 2 patches: kept
    prev[2, :4, :5], new[2, :4, 1:6] = True, True  # IoU 16/24 > 0.5: rejected
    prev[3, :2, :6], new[3, :2, 2:8] = True, True  # IoU 8/16 = 0.5: kept (strict >)
    assert rejected(prev, new, opts).tolist() == [True, False, True, False]


def test_maskcut_finds_planted_objects_disjoint():
    grid = (16, 16)
    boxes = [(2, 2, 8, 9), (10, 9, 14, 14)]
    keys = planted_keys(grid, boxes, noise=0.3, seed=1)
    for solver in ("exact", "fast"):
        for orientation in ("official", "symmetric"):
            lab = maskcut_masks(keys, grid, MaskCutOptions(eigensolver=solver, orientation=orientation))[0][0]
            found = {
                tuple(np.argwhere(lab == k).min(0)) + tuple(np.argwhere(lab == k).max(0) + 1)
                for k in range(1, lab.max() + 1)
            }
            assert found == {(y0, x0, y1, x1) for y0, x0, y1, x1 in boxes}
            assert lab.max() == 2


def test_maskcut_max_objects_and_labels_consecutive():
    grid = (16, 16)
    keys = planted_keys(grid, [(2, 2, 8, 9), (10, 9, 14, 14), (1, 11, 5, 15)], noise=0.3, seed=2)
    one = maskcut_masks(keys, grid, MaskCutOptions(max_objects=1))[0][0]
    three = maskcut_masks(keys, grid, MaskCutOptions(max_objects=3))[0][0]
    assert one.max() == 1 and ((three == 1) == (one == 1)).all()
    ids = np.unique(three)
    assert ids.tolist() == list(range(len(ids)))


@pytest.fixture(scope="module")
def dino_file(tmp_path_factory):
    """A random DINO-shaped ViT (patch 8, 128-d, 2 heads of 64, 2 blocks) saved as DINO's own .pth."""
    return save_dino_backbone(tmp_path_factory.mktemp("dino") / "dino_tiny8.pth", patch_size=8, embed_dim=128, depth=2)


def test_backbone_shape_is_read_from_the_file(dino_file):
    cfg = backbone_config_from_state(torch.load(dino_file))
    assert (cfg.patch_size, cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.img_size) == (8, 128, 2, 2, 64)


def test_keys_equal_the_official_hook(dino_file):
    """Transcription of the official hook: qkv output -> reshape (B, T, 3, nh, dh) -> permute ->
    k = qkv[1].transpose(1, 2).reshape(B, T, nh * dh), CLS dropped; at the native size, where the
    model's own forward uses the position embeddings unchanged."""
    vit = load_dino_vit(dino_file, explicit_attention=True)
    x = torch.randn(2, 3, 64, 64)
    seen = {}
    handle = vit.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: seen.setdefault("qkv", o))
    with torch.no_grad():
        vit.forward_features(x)
    handle.remove()
    b, t, _ = seen["qkv"].shape
    qkv = seen["qkv"].reshape(b, t, 3, 2, -1).permute(2, 0, 3, 1, 4)
    k = qkv[1].transpose(1, 2).reshape(b, t, -1)[:, 1:]
    assert torch.equal(last_block_keys(vit, x), k)
    fused = load_dino_vit(dino_file)
    assert torch.allclose(last_block_keys(fused, x), k, atol=1e-5)
    assert last_block_keys(vit, torch.randn(1, 3, 40, 56)).shape == (1, 35, 128)


def test_geometries():
    img = np.random.default_rng(0).integers(0, 255, (75, 100, 3), dtype=np.uint8)
    x, content = preprocess(img, "pad", 16)
    assert x.shape == (3, 80, 112) and content == (75, 100)
    assert (x[:, 75:] == 0).all() and (x[:, :, 100:] == 0).all()
    x, content = preprocess(img, "resize", 8)  # round(100/8) = 12 (half to even), round(75/8) = 9
    assert x.shape == (3, 72, 96) and content == (72, 96)
    x, content = preprocess(img, "fixed", 8, 60)  # 60 -> round(7.5) = 8 patches: resize_pil's 64
    assert x.shape == (3, 64, 64)
    lab = np.zeros((2, 3), np.uint8)
    lab[0, 1] = 1
    pad = upsample_labels(lab, "pad", 8, (10, 20), (10, 20))
    assert pad.shape == (10, 20) and np.argwhere(pad).min(0).tolist() == [0, 8] and pad.sum() == 8 * 8
    fixed = upsample_labels(np.array([[1, 2], [0, 0]], np.uint8), "fixed", 8, (16, 16), (30, 50))
    assert fixed.shape == (30, 50) and set(np.unique(fixed)) == {0, 1, 2}
    assert (fixed[:10, :20] == 1).all() and (fixed[:10, 30:] == 2).all() and (fixed[20:] == 0).all()


def test_missing_backbone_is_one_clear_message(tmp_path, monkeypatch):
    from unsegcli.model import registry

    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(WeightsNotFoundError, match="dino-vitb8") as e:
        SpectralPredictor("maskcut")
    assert "unseg weights fetch dino-vitb8" in str(e.value)
    assert registry.KNOWN["dino-vits8-300ep"].filename == "dino_deitsmall8_300ep_pretrain.pth"


def test_options_are_checked():
    assert method_options("maskcut").tau == 0.15 and method_options("tokencut").tau == 0.2
    assert method_options("lost", k_patches=5, tau=None).k_patches == 5
    with pytest.raises(UsageError, match="tau: not an option of method lost"):
        method_options("lost", tau=0.3)
    # one declaration, one range: the library and the CLI (tests/test_methods_cli.py) refuse the same values
    for method, name, value in [("tokencut", "tau", 1.0), ("maskcut", "eps", 0.0), ("maskcut", "max_objects", 256)]:
        with pytest.raises(UsageError, match=f"{name} must be in"):
            method_options(method, **{name: value})
    assert method_options("tokencut", tau=-1.0).tau == -1.0
    with pytest.raises(UsageError, match="geometry"):
        method_options("tokencut", geometry="crop")
    with pytest.raises(UsageError, match="orientation"):
        method_options("maskcut", orientation="corner")


def scene(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 30, np.uint8)
    img[h // 4 : 3 * h // 4, w // 5 : w // 2] = (230, 40, 40)
    img[h // 2 :, 2 * w // 3 :] = (40, 200, 90)
    return np.clip(img.astype(int) + rng.integers(0, 25, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", list(CUTS))
@pytest.mark.parametrize("geometry", ["pad", "resize", "fixed"])
def test_predictor_end_to_end(dino_file, method, geometry):
    opts = method_options(method, geometry=geometry, **({"fixed_size": 64} if geometry == "fixed" else {}))
    pred = SpectralPredictor(method, opts, backbone=dino_file)
    images = [scene(70, 100, 0), scene(70, 100, 1)]
    batch = [pred.prepare(i, im) for i, im in enumerate(images)]
    assert batch[0].tensor.shape == batch[1].tensor.shape
    outs = pred.run(batch)
    single = [pred.run([b])[0] for b in batch]
    for out, one in zip(outs, single, strict=True):
        (out, scores), (one, one_scores) = out, one  # (labels or the soft mask, the objects' scores)
        assert scores == one_scores and all(0.0 <= v <= 1.0 for v in scores.values())
        assert set(scores) == (set(np.unique(out)) - {0} if METHODS[method].writes == "instances" else {1})
        assert out.shape == (70, 100) and np.array_equal(out, one)  # a batch gives the batch-1 result
        if METHODS[method].writes == "soft":
            assert pred.kind == "soft" and out.dtype == np.float32 and set(np.unique(out)) <= {0.0, 1.0}
            assert out.any()
        else:
            assert pred.kind == "instances" and out.dtype == np.uint8 and out.max() >= 1
    if geometry == "pad":  # the mask's box is the official detect_box box: patch multiples, clipped
        ys, xs = np.nonzero(outs[0][0])
        assert xs.min() % 8 == 0 and ys.min() % 8 == 0
        assert (xs.max() + 1) % 8 == 0 or xs.max() + 1 == 100
        assert (ys.max() + 1) % 8 == 0 or ys.max() + 1 == 70


def test_tokencut_exact_pad_equals_the_transcription_on_the_same_keys(dino_file):
    pred = SpectralPredictor("tokencut", method_options("tokencut", eigensolver="exact"), backbone=dino_file)
    img = scene(70, 100, 3)
    p = pred.prepare(0, img)
    keys = last_block_keys(pred.vit, p.tensor[None])
    expect = official_tokencut(keys, (9, 13)).repeat(8, 0).repeat(8, 1)[:70, :100]
    assert np.array_equal(pred.run([p])[0][0].astype(bool), expect)
