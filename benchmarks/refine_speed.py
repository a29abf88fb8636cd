"""Per-image time of ``unseg``'s bilateral solver against an official-style implementation, on the same
generated VOC-size (500x375) images, plus multi-process throughput of ``refine_files``.

    python benchmarks/refine_speed.py --n 12 --workers 2

``official_style`` below is a transcription of the official TokenCut/MOVE ``bilateral_solver.py`` *structure*,
written from the official solver's structure (not copied): float hash Σ c_d·255^d, one sparse splat
matrix S, ten per-dimension/per-direction blur matrices summed on every blur, the system assembled from sparse
matrix sums, SciPy CG (with the SciPy >= 1.14 fix: ``rtol``/``atol=0`` for the removed ``tol=``), slicing by Sᵀ,
and ``binary_solver``'s per-label pixel count in a Python loop with the second-largest-label rule. It is both
the speed baseline and the independent reference that tests/test_refine.py checks our solver against.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.sparse.linalg import cg

sys.path.insert(0, str(Path(__file__).resolve().parent))

_YUV = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def official_style(
    image: np.ndarray, target: np.ndarray, sigma_spatial: float = 16, sigma_luma: float = 16, sigma_chroma: float = 8
) -> tuple[np.ndarray, np.ndarray]:
    """(soft solver output, binary_solver) with the official constants: λ 256, confidence 0.999, CG tol 1e-5,
    25 iterations, diagonal clamp 1e-5, 10 bistochastisation rounds."""
    h, w = target.shape
    yuv = np.tensordot(image, _YUV, ([2], [1])) + np.array([0, 128.0, 128.0]).reshape(1, 1, -1)
    gy, gx = np.mgrid[:h, :w]
    grid = np.dstack(
        (
            (gx / sigma_spatial).astype(int),
            (gy / sigma_spatial).astype(int),
            (yuv[..., 0] / sigma_luma).astype(int),
            (yuv[..., 1:] / sigma_chroma).astype(int),
        )
    )
    flat = grid.reshape(-1, 5)
    n_pix = flat.shape[0]
    radix = 255.0 ** np.arange(5)
    hashes = flat @ radix
    keys, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    verts = flat[first]
    n_vert = len(keys)
    splat_m = sp.csr_matrix((np.ones(n_pix), (inverse.reshape(-1), np.arange(n_pix))))
    blurs = []
    for d in range(5):
        acc = 0.0
        for step in (-1, 1):
            shifted = verts.astype(float).copy()
            shifted[:, d] += step
            nk = shifted @ radix
            loc = np.clip(np.searchsorted(keys, nk), 0, n_vert - 1)
            ok = np.flatnonzero(keys[loc] == nk)
            acc = acc + sp.csr_matrix((np.ones(len(ok)), (ok, loc[ok])), shape=(n_vert, n_vert))
        blurs.append(acc)

    def blur(x):
        out = 2 * 5 * x
        for b in blurs:
            out = out + b.dot(x)
        return out

    m = splat_m.dot(np.ones(n_pix))
    nvec = np.ones(n_vert)
    for _ in range(10):
        nvec = np.sqrt(nvec * m / blur(nvec))
    m = nvec * blur(nvec)
    dm, dn = sp.diags(m, 0), sp.diags(nvec, 0)
    t = target.reshape(-1, 1).astype(np.double)
    c = np.full((h * w, 1), 0.999)
    a_smooth = dm - dn.dot(blur(dn))
    c_splat = splat_m.dot(c)
    a = 256 * a_smooth + sp.diags(c_splat[:, 0], 0)
    b = splat_m.dot(t * c)
    precond = sp.diags(1 / np.maximum(a.diagonal(), 1e-5), 0)
    y0 = b / c_splat
    y = np.empty_like(y0)
    y[:, 0], _ = cg(a, b[:, 0], x0=y0[:, 0], M=precond, maxiter=25, rtol=1e-5, atol=0.0)
    soft = splat_m.T.dot(y).reshape(h, w)
    filled = ndimage.binary_fill_holes(soft > 0.5)
    labels, count = ndimage.label(filled)
    sizes = [np.sum(labels == i) for i in range(count + 1)]
    order = np.argsort(sizes)
    binary = labels == order[-2] if len(order) > 1 else np.ones((h, w), dtype=bool)
    return soft, binary


def voc_like(i: int) -> tuple[np.ndarray, np.ndarray]:
    """A 500x375 generated image (unseg synth's textures and shapes, plus sensor-like noise of σ 10 levels so that
    the grid has photo-like 20-60k vertices) and a TokenCut-like blocky mask: the true mask pooled to a 16-px patch
    grid, thresholded at half, upsampled nearest."""
    import cv2

    from unsegcli.synth import generate

    s = generate(0, i, 375)
    noise = np.random.default_rng(i).normal(0, 10, (375, 500, 3))
    img = np.clip(cv2.resize(s.image, (500, 375), interpolation=cv2.INTER_AREA) + noise, 0, 255).astype(np.uint8)
    gt = cv2.resize(s.mask, (500, 375), interpolation=cv2.INTER_NEAREST) > 127
    patches = cv2.resize(gt.astype(np.float32), (500 // 16 + 1, 375 // 16 + 1), interpolation=cv2.INTER_AREA) > 0.5
    mask = cv2.resize(patches.astype(np.uint8), (500, 375), interpolation=cv2.INTER_NEAREST)
    return img, mask.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12, help="images (each timed once per implementation)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--throughput-n", type=int, default=24, help="pairs for the refine_files throughput run")
    args = ap.parse_args()
    from _common import machine

    from unsegcli.refine import RefineOptions, refine_mask
    from unsegcli.refine.bilateral import build_grid

    pairs = [voc_like(i) for i in range(args.n)]
    ours_t, off_t, worst = [], [], 0.0
    for img, mask in pairs:  # interleaved, so both see the same machine load
        t0 = time.perf_counter()
        off_soft, _ = official_style(img, mask)
        t1 = time.perf_counter()
        refine_mask(mask, img, RefineOptions(output="component"))  # computes the soft output too
        t2 = time.perf_counter()
        worst = max(worst, float(np.abs(refine_mask(mask, img) - np.clip(off_soft, 0, 1)).max()))
        off_t.append(t1 - t0)
        ours_t.append(t2 - t1)
    off_med, ours_med = float(np.median(off_t)), float(np.median(ours_t))
    ratios = [o / u for o, u in zip(off_t, ours_t, strict=True)]
    vertices = [build_grid(img).n_vertices for img, _ in pairs]
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"machine: {machine()}; OMP_NUM_THREADS={threads}; load average {os.getloadavg()[0]:.1f}")
    print(f"per image, 500x375, {args.n} images ({min(vertices)}-{max(vertices)} grid vertices), soft + component:")
    print(f"  official-style median {off_med * 1e3:.0f} ms (mean {np.mean(off_t) * 1e3:.0f})")
    print(f"  ours           median {ours_med * 1e3:.0f} ms (mean {np.mean(ours_t) * 1e3:.0f})")
    print(
        f"  speed-up: median {off_med / ours_med:.1f}x, per-image {min(ratios):.1f}-{max(ratios):.1f}x; "
        f"max |soft difference| {worst:.1e}"
    )

    import cv2

    from unsegcli.refine.runner import plan_refine, refine_files

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        (root / "masks").mkdir()
        for i in range(args.throughput_n):
            img, mask = pairs[i % len(pairs)]
            cv2.imwrite(str(root / "images" / f"{i:05d}.jpg"), img[..., ::-1])
            cv2.imwrite(str(root / "masks" / f"{i:05d}.png"), (mask * 255).astype(np.uint8))
        for workers in sorted({1, args.workers}):
            out = root / f"out{workers}"
            tasks = plan_refine([str(root / "masks")], str(root / "images"), str(out))
            t0 = time.perf_counter()
            summary = refine_files(tasks, RefineOptions(), workers=workers)
            dt = time.perf_counter() - t0
            assert summary.written == args.throughput_n and not summary.failed
            print(
                f"refine_files soft, {args.throughput_n} pairs, {workers} worker(s): {dt:.2f} s, "
                f"{args.throughput_n / dt:.2f} pairs/s (decode + solve + PNG write)"
            )


if __name__ == "__main__":
    main()
