"""Mask refinement: the bilateral solver against hand-checkable cases and an independent official-style
transcription (benchmarks/refine_speed.py), the component rule, the large-image key, the dense CRF, and the
streaming runner."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.sparse as sp

from unsegcli.errors import UsageError
from unsegcli.refine import RefineOptions, match_size, refine_mask
from unsegcli.refine.bilateral import bilateral_solve, build_grid, grid_coordinates
from unsegcli.refine.crf import crf_available, dense_crf
from unsegcli.refine.postprocess import iou, object_component

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def official():
    """The official-style transcription used as the benchmark baseline."""
    spec = importlib.util.spec_from_file_location("refine_speed", ROOT / "benchmarks" / "refine_speed.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("refine_speed", mod)
    spec.loader.exec_module(mod)
    return mod


def textured(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A blocky colour image with noise and an elliptic object, and a mask that misses the object a little."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = np.kron(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
    obj = (xx - w / 2) ** 2 / (w / 4) ** 2 + (yy - h / 2) ** 2 / (h / 3) ** 2 < 1
    img = np.where(obj[..., None], [210, 50, 40], img) + rng.normal(0, 12, (h, w, 3))
    mask = np.roll(obj, 3, axis=1)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def step_image(h: int = 48, w: int = 64) -> np.ndarray:
    img = np.full((h, w, 3), 20, np.uint8)
    img[:, w // 2 :] = 235
    return img


def test_step_edge_is_followed():
    # Left half dark, right half bright; the target starts 4 px too early (x >= 28). With σs = 16 the dark pixels
    # x = 16..31 share one vertex per row band: 4 of its 16 columns are 1, so its value is near 1/4, and the
    # solver output must switch exactly at the image edge x = 32.
    img = step_image()
    target = np.zeros((48, 64))
    target[:, 28:] = 1.0
    soft = bilateral_solve(img, target)
    assert soft[:, :32].max() < 0.5 < soft[:, 32:].min()
    comp = refine_mask(target.astype(np.float32), img, RefineOptions(output="component"))
    assert comp.dtype == np.uint8
    np.testing.assert_array_equal(comp, np.broadcast_to(np.arange(64) >= 32, (48, 64)))


def test_one_vertex_gives_the_target_mean():
    # A flat 8x8 image is one grid vertex without neighbours: bistochastisation leaves m unchanged, the smoothness
    # term vanishes, and the solution is Σ c·t / Σ c = mean(t) everywhere.
    img = np.full((8, 8, 3), 100, np.uint8)
    target = np.random.default_rng(0).random((8, 8))
    np.testing.assert_allclose(bilateral_solve(img, target), np.full((8, 8), target.mean()), rtol=0, atol=1e-12)


def test_flat_image_agrees_monotonically_with_the_input():
    # On a flat image only the spatial distance matters: a ramp target gives an output that is constant per
    # 16-px cell, the same in every row, strictly increasing from cell to cell, and, as the ramp and the
    # 8 cells are symmetric about the centre, out(x) + out(127 - x) = 1.
    img = np.full((32, 128, 3), 90, np.uint8)
    target = np.broadcast_to(np.linspace(0, 1, 128), (32, 128))
    out = bilateral_solve(img, target)
    np.testing.assert_allclose(out, np.broadcast_to(out[0], out.shape), atol=1e-12)
    cells = out[0].reshape(8, 16)
    np.testing.assert_allclose(cells, cells[:, :1].repeat(16, 1), atol=1e-12)
    assert np.all(np.diff(cells[:, 0]) > 1e-3)
    np.testing.assert_allclose(out[0] + out[0, ::-1], 1.0, atol=1e-9)
    # and pointwise: raising the input anywhere never lowers the output anywhere
    bump = np.zeros((32, 128))
    bump[8:20, 40:70] = 0.3
    assert np.all(bilateral_solve(img, target + bump) >= out - 1e-12)


def test_soft_output_within_unit_interval():
    for seed in range(6):
        img, mask = textured(40 + 7 * seed, 56, seed)
        rng = np.random.default_rng(seed)
        target = mask.astype(float) if seed % 2 else rng.random(mask.shape)
        raw = bilateral_solve(img, target)
        assert -1e-9 <= raw.min() and raw.max() <= 1 + 1e-9
        soft = refine_mask(target.astype(np.float32), img)
        assert soft.dtype == np.float32 and 0.0 <= soft.min() and soft.max() <= 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_official_style_transcription(official, seed):
    img, mask = textured(45, 70, seed)
    noisy = np.clip(mask * 0.8 + np.random.default_rng(seed).random(mask.shape) * 0.3, 0, 1)
    for target in (mask.astype(float), noisy):
        ours = bilateral_solve(img, target, 16, 16, 8)
        ref, _ = official.official_style(img, target, 16, 16, 8)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    # other sigmas too (the function's own defaults, 24/4/4)
    np.testing.assert_allclose(
        bilateral_solve(img, mask.astype(float), 24, 4, 4),
        official.official_style(img, mask.astype(float), 24, 4, 4)[0],
        rtol=0,
        atol=1e-9,
    )


def test_component_rule_on_object_larger_than_background(official):
    # The object covers 75% of the image: the official "second-largest label, background counted" rule returns
    # the background; ours returns the object.
    img = np.full((40, 40, 3), 30, np.uint8)
    img[:, 10:] = 220
    target = np.zeros((40, 40))
    target[:, 10:] = 1.0
    _, official_binary = official.official_style(img, target)
    assert official_binary[:, :10].all() and not official_binary[:, 10:].any()
    ours = refine_mask(target.astype(np.float32), img, RefineOptions(output="component"))
    np.testing.assert_array_equal(ours, (np.arange(40) >= 10)[None].repeat(40, 0))
    # --output official: the published rule, for parity: the background, as the transcription
    published = refine_mask(target.astype(np.float32), img, RefineOptions(output="official"))
    np.testing.assert_array_equal(published, official_binary.astype(np.uint8))


def test_object_component_keeps_largest_foreground_and_fills_holes():
    b = np.zeros((20, 20), bool)
    b[2:12, 2:12] = True
    b[5:7, 5:7] = False  # a hole
    b[15:18, 15:18] = True  # a smaller second object
    out = object_component(b)
    expected = np.zeros((20, 20), bool)
    expected[2:12, 2:12] = True
    np.testing.assert_array_equal(out, expected)
    assert not object_component(np.zeros((5, 5), bool)).any()  # official: all ones


def _links(coords: np.ndarray) -> sp.csr_matrix:
    """Independent neighbour matrix: 1 where two coordinate rows differ by ±1 in one coordinate (a dict lookup)."""
    index = {c: i for i, c in enumerate(map(tuple, coords.tolist()))}
    rows, cols = [], []
    for i, c in enumerate(coords.tolist()):
        for d in range(5):
            for step in (-1, 1):
                j = index.get((*c[:d], c[d] + step, *c[d + 1 :]))
                if j is not None:
                    rows.append(i)
                    cols.append(j)
    n = len(coords)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))


@pytest.mark.parametrize("sigmas", [(16, 16, 8), (1, 0.1, 0.1)])
def test_vertices_and_blur_match_the_distinct_coordinate_tuples(sigmas):
    # σ 1/0.1/0.1 makes keys too wide to pack with the pixel index (2^49 x 2^15 pixels): the argsort path.
    rng = np.random.default_rng(4)
    palette = rng.integers(0, 256, (6, 3))
    img = np.kron(palette[rng.integers(0, 6, (40, 40))], np.ones((4, 4, 1))).astype(np.uint8)
    img[rng.random((160, 160)) < 0.1] += 1
    grid = build_grid(img, *sigmas)
    coords = grid_coordinates(img, *sigmas)
    _, inverse = np.unique(coords, axis=0, return_inverse=True)
    pairs = np.unique(np.stack((grid.vertex, inverse.reshape(-1)), axis=1), axis=0)
    assert len(pairs) == grid.n_vertices == inverse.max() + 1  # a bijection between vertices and tuples
    np.testing.assert_array_equal(grid.counts, np.bincount(grid.vertex))
    # the blur: 2·5 on the diagonal, 1 between tuples that differ by one in one coordinate
    vertex_coords = np.zeros((grid.n_vertices, 5), np.int64)
    vertex_coords[grid.vertex] = coords
    expected = _links(vertex_coords) + 10 * sp.eye(grid.n_vertices)
    assert expected.nnz > 2 * grid.n_vertices  # links in more than a few places
    assert abs(grid.blur_matrix - expected).max() == 0
    # rows ordered by length (what makes the matrix-vector products fast)
    assert np.all(np.diff(np.diff(grid.blur_matrix.indptr)) >= 0)


def test_parity_at_photo_like_vertex_counts(official):
    # noise of σ 10 levels gives ~10^4 vertices of every neighbour count, as photos do
    rng = np.random.default_rng(11)
    img, mask = textured(150, 200, 11)
    img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    ours = bilateral_solve(img, mask.astype(float))
    np.testing.assert_allclose(ours, official.official_style(img, mask.astype(float))[0], rtol=0, atol=1e-9)


def test_large_image_key_has_no_collisions(official):
    # 4,200 px wide at σs 16 puts x cells at 0..262; the official float hash Σ c·255^d maps cell (255, y=0) onto
    # (0, y=1), merging pixels 4,080 px apart. Our key counts exactly the distinct coordinate tuples.
    img = np.full((20, 4200, 3), 128, np.uint8)
    coords = grid_coordinates(img, 16, 16, 8)
    distinct = len(np.unique(coords, axis=0))
    assert build_grid(img).n_vertices == distinct == 263 * 2
    official_hash = coords.astype(float) @ (255.0 ** np.arange(5))
    assert len(np.unique(official_hash)) < distinct
    # The merged cells would carry the far right's target to the top left; ours keeps them apart.
    target = np.zeros((20, 4200))
    target[:16, 4080:4096] = 1.0
    out = bilateral_solve(img, target)
    assert out[16:, :16].max() < 0.05 < out[:16, 4080:4096].min()


def test_iou_gate_keeps_the_mask_unchanged_when_the_solver_moves_away():
    img = step_image()
    target = np.zeros((48, 64), np.float32)
    target[:, 24:40] = 1.0  # straddles the edge: the solver keeps only the bright part x = 32..39 (IoU 0.5)
    gated = refine_mask(target, img, RefineOptions(output="component", iou_gate=True))
    ungated = refine_mask(target, img, RefineOptions(output="component"))
    assert iou(ungated > 0, target > 0.5) <= 0.5
    np.testing.assert_array_equal(gated, target.astype(np.uint8))


def test_mask_of_another_size_is_resized_bilinearly():
    img, mask = textured(40, 60, 3)
    small = cv2.resize(mask.astype(np.float32), (30, 20), interpolation=cv2.INTER_AREA)
    assert match_size(small, (40, 60)).shape == (40, 60)
    np.testing.assert_array_equal(
        refine_mask(small, img), refine_mask(cv2.resize(small, (60, 40), interpolation=cv2.INTER_LINEAR), img)
    )


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError):
        RefineOptions(method="guided")
    with pytest.raises(UsageError):
        RefineOptions(sigma_luma=0)


def test_crf_missing_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)  # import fails as if not installed
    with pytest.raises(UsageError) as e:
        refine_mask(np.zeros((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8), RefineOptions(method="crf"))
    assert "pip install 'unseg[crf]'" in str(e.value)


@pytest.mark.skipif(not crf_available(), reason="optional extra unseg[crf] (pydensecrf2) not installed")
def test_crf_snaps_a_blocky_mask_to_the_object_and_gates():
    h, w = 96, 128
    yy, xx = np.mgrid[:h, :w]
    obj = (xx - 64) ** 2 / 36**2 + (yy - 48) ** 2 / 26**2 < 1
    img = np.where(obj[..., None], [220, 40, 40], [30, 90, 160]).astype(np.uint8)
    blocky = np.kron(obj.reshape(12, 8, 16, 8).mean((1, 3)) > 0.5, np.ones((8, 8))).astype(np.float32)
    assert iou(blocky > 0, obj) < 0.95
    out = refine_mask(blocky, img, RefineOptions(method="crf"))
    assert out.dtype == np.uint8 and iou(out > 0, obj) > 0.99
    # a mask elsewhere: the CRF result overlaps it by less than 0.5, and CutLER drops the mask
    wrong = np.zeros((h, w), np.float32)
    wrong[:30, :20] = 1.0
    gated = refine_mask(wrong, img, RefineOptions(method="crf"))
    assert not gated.any()


@pytest.mark.skipif(not crf_available(), reason="optional extra unseg[crf] (pydensecrf2) not installed")
def test_crf_takes_a_read_only_image():
    # np.asarray of a PIL image and Ray Data's Arrow-backed arrays are read-only; pydensecrf's buffer needs a
    # writable one (CuVLER mask_post_processing copies the image for it)
    yy, xx = np.mgrid[:48, :64]
    obj = (xx - 32) ** 2 / 18**2 + (yy - 24) ** 2 / 13**2 < 1
    img = np.where(obj[..., None], [220, 40, 40], [30, 90, 160]).astype(np.uint8)
    img.flags.writeable = False
    box = np.zeros(obj.shape, np.float32)
    box[11:38, 14:51] = 1.0  # the object's box: the CRF trims the corners to the ellipse
    assert np.array_equal(dense_crf(img, box), obj)


def _write_pair(root: Path, rel: str, img: np.ndarray, mask: np.ndarray | None) -> None:
    (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / f"{rel}.png"), img[..., ::-1])
    if mask is not None:
        (root / "masks" / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "masks" / f"{rel}.png"), (mask * 255).astype(np.uint8))


def test_refine_files_resume_and_bad_inputs(tmp_path):
    from unsegcli.refine.runner import plan_refine, refine_files

    img, mask = textured(32, 48, 5)
    _write_pair(tmp_path, "a", img, mask)
    _write_pair(tmp_path, "sub/b", img, cv2.resize(mask.astype(np.uint8), (24, 16), interpolation=cv2.INTER_NEAREST))
    (tmp_path / "masks" / "orphan.png").write_bytes(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes())
    (tmp_path / "masks" / "broken.png").write_bytes(b"not a png")
    _write_pair(tmp_path, "broken", img, None)
    out = tmp_path / "out"
    tasks = plan_refine([str(tmp_path / "masks")], str(tmp_path / "images"), str(out))
    errors, notices = [], []
    s = refine_files(tasks, RefineOptions(), on_error=errors.append, on_notice=notices.append)
    assert (s.masks, s.written, s.skipped, len(s.failed)) == (4, 2, 0, 2)
    assert any("orphan.png" in e and "no image 'orphan.*'" in e for e in errors)
    assert any("broken.png" in e for e in errors)
    assert len(notices) == 1 and "b.png" in notices[0] and "24x16" in notices[0] and "48x32" in notices[0]
    written = cv2.imread(str(out / "a.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(
        written, (np.clip(refine_mask(mask.astype(np.float32), img), 0, 1) * 255).astype(np.uint8)
    )
    assert cv2.imread(str(out / "sub" / "b.png"), cv2.IMREAD_UNCHANGED).shape == (32, 48)
    # resume: existing outputs are skipped; --overwrite recomputes them, here in two worker processes
    again = refine_files(tasks, RefineOptions(), on_error=lambda m: None)
    assert (again.written, again.skipped) == (0, 2)
    redo = refine_files(tasks, RefineOptions(output="component"), workers=2, overwrite=True, on_error=lambda m: None)
    assert redo.written == 2
    assert set(np.unique(cv2.imread(str(out / "a.png"), cv2.IMREAD_UNCHANGED))) <= {0, 255}


def test_cli_refine_command(tmp_path):
    """The command as the lead registers it (app.command(epilog=EXAMPLES)), on a tiny generated set."""
    import typer
    from typer.testing import CliRunner

    from unsegcli.cli.refine import EXAMPLES, refine

    app = typer.Typer()
    app.command(epilog=EXAMPLES)(refine)
    app.command("noop", hidden=True)(lambda: None)  # two commands, so `refine` is a subcommand as in unseg
    img, mask = textured(32, 48, 7)
    _write_pair(tmp_path, "x", img, mask)
    (tmp_path / "masks" / "lost.png").write_bytes(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes())
    out = tmp_path / "refined"
    args = ["refine", str(tmp_path / "masks"), "--images", str(tmp_path / "images"), "--out", str(out), "-j", "0"]
    r = CliRunner().invoke(app, [*args, "--output", "component", "--iou-gate"])
    assert r.exit_code == 1, r.output  # the mask without an image fails, the other is written
    assert "lost.png" in r.output and (out / "x.png").exists()
    r = CliRunner().invoke(app, [*args, "--method", "guided"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["refine", "--help"])
    assert "second-largest" in r.output and "unseg[crf]" in r.output


def test_pcg_is_scipys_cg_iteration():
    # Our CG (numpy reductions, no BLAS threads) against scipy.sparse.linalg.cg with the same arguments.
    import scipy.sparse as sp
    from scipy.sparse.linalg import cg

    from unsegcli.refine.bilateral import pcg

    rng = np.random.default_rng(0)
    n = 300
    m = sp.random(n, n, density=0.02, random_state=1)
    a = (m @ m.T + sp.diags(rng.uniform(0.5, 2.0, n))).tocsr()
    b, x0 = rng.normal(size=n), rng.normal(size=n)
    inv = 1.0 / a.diagonal()
    for maxiter, rtol in ((3, 1e-5), (25, 1e-5), (200, 1e-3)):
        ref, _ = cg(a, b, x0=x0, M=sp.diags(inv), rtol=rtol, atol=0.0, maxiter=maxiter)
        np.testing.assert_allclose(pcg(a, b, x0, inv, rtol, maxiter), ref, rtol=0, atol=1e-10)
    assert not pcg(a, np.zeros(n), x0, inv).any()


def test_refine_image_file_for_one_pass_predict(tmp_path):
    from unsegcli.refine.runner import refine_image_file

    img, mask = textured(30, 40, 9)
    cv2.imwrite(str(tmp_path / "i.png"), img[..., ::-1])
    opts = RefineOptions(output="component")
    refine_image_file(str(tmp_path / "o" / "i.png"), mask.astype(np.float32), str(tmp_path / "i.png"), opts)
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "o" / "i.png"), cv2.IMREAD_UNCHANGED),
        refine_mask(mask.astype(np.float32), img, opts) * 255,
    )


def test_fill_holes_equals_scipys_binary_fill_holes():
    """Our one-labelling hole filling against scipy's own (what the official post-processing calls)."""
    from scipy import ndimage

    from unsegcli.refine.postprocess import fill_holes

    rng = np.random.default_rng(0)
    for i in range(200):
        h, w = rng.integers(1, 40, 2)
        m = rng.random((h, w)) < rng.uniform(0.2, 0.8)
        np.testing.assert_array_equal(fill_holes(m), ndimage.binary_fill_holes(m), err_msg=str(i))
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False  # a one-pixel hole
    assert fill_holes(ring)[3, 3] and not fill_holes(ring)[0, 0]
