"""The fast bilateral solver as TokenCut, MOVE and FOUND run it ("+BS" / "+Bilateral" rows), written from
the algorithm of the official ``bilateral_solver.py`` of
TokenCut@fed52cd = MOVE@074d0af, itself after Barron & Poole, ECCV 2016).

Same maths as the official code (outputs agree to ~1e-14), with these differences:
- vertices are found with an exact int64 mixed-radix key instead of the float ``Σ c_d·255^d`` hash, which
  merges distinct vertices once a coordinate reaches 255 (images over 255·σ_spatial = 4,080 px at σ 16): the one
  change of result, and a fix;
- splat and slice are ``bincount`` and gathers; the blur (its [1 2 1] centre weight included) and the system
  matrix are one CSR matrix each, on one sparsity pattern, assembled from entries (no sparse-matrix sums);
- vertices are numbered by their neighbour count, so that the CSR rows come in runs of equal length: the
  matrix-vector products, ~37 per image and most of the solver's time, run ~2.7x faster (the row loop's
  branches become predictable); summation order within a row changes, nothing else;
- the conjugate gradient has the official tolerance semantics in SciPy's current terms (``rtol=tol``,
  ``atol=0``; the official ``tol=`` raises TypeError on SciPy >= 1.14), plus the legacy early exit (initial
  residual <= tol). ``pcg`` is the iteration of ``scipy.sparse.linalg.cg`` step for step (tests compare the
  two), with numpy reductions instead of BLAS dot products: BLAS threads spin on a busy machine, and made
  SciPy's cg several times slower on the shared 2-core machine (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import UsageError

# JPEG/JFIF full-range BT.601 RGB -> YUV, the official rgb2yuv (§6 step 2)
RGB_TO_YUV = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
YUV_OFFSET = np.array([0.0, 128.0, 128.0])
GRID_DIMS = 5  # x, y, luma, two chroma
CENTRE_WEIGHT = 2 * GRID_DIMS  # the [1 2 1] kernel's centre, once per dimension (§6 step 5)
_YUV_BLOCK = 8192


@dataclass(frozen=True)
class BilateralGrid:
    """Pixels splatted to the vertices of a 5-D grid (nearest vertex: splat = sum, slice = gather).

    ``blur_matrix`` row i: entry (i, i) = 2·5 first, then 1 for each ±1 neighbour along any dimension."""

    vertex: np.ndarray  # (pixels,) int32 (int64 when 11·pixels >= 2^31): the vertex of each pixel
    counts: np.ndarray  # (vertices,) float64: pixels per vertex, S·1
    blur_matrix: sp.csr_matrix  # (vertices, vertices), symmetric

    @property
    def n_vertices(self) -> int:
        return len(self.counts)

    def splat(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.vertex, weights=values, minlength=self.n_vertices)

    def slice(self, values: np.ndarray) -> np.ndarray:
        return values[self.vertex]

    def blur(self, values: np.ndarray) -> np.ndarray:
        """[1 2 1] in each of the 5 dimensions: 2·5·x plus every neighbour's value (§6 step 5)."""
        return self.blur_matrix @ values


def _colour_key(image: np.ndarray, sigma_luma: float, sigma_chroma: float, strides: tuple[int, ...]) -> np.ndarray:
    """Σ_k strides[k]·cell_k over the YUV cells ⌊Y/σl⌋, ⌊U/σc⌋, ⌊V/σc⌋: (H·W,) int64 in row-major pixel order.
    Every value is non-negative (U, V >= 0.5 for uint8 RGB), so truncation equals the official ``astype(int)``;
    each quotient is the same float64 division of the same float64 YUV value as the official one."""
    rgb = image.reshape(-1, 3)
    key = np.empty(len(rgb), dtype=np.int64)
    yuv, channel = np.empty((_YUV_BLOCK, 3)), np.empty(_YUV_BLOCK)
    # The YUV product is the official float64 dot (BLAS), so pixels on a bin edge land in the same bin. Row blocks
    # small enough that OpenBLAS runs them on one thread give the same bits (checked on all 2^24 colours); one large
    # product is threaded, and threads spinning on a busy machine cost ~0.2 s. Blocks also keep the temporaries in
    # cache: whole-image YUV and cell arrays cost 2-3x more.
    for i in range(0, len(rgb), _YUV_BLOCK):
        block = rgb[i : i + _YUV_BLOCK]
        y, c, out = yuv[: len(block)], channel[: len(block)], key[i : i + _YUV_BLOCK]
        np.dot(block.astype(np.float64), RGB_TO_YUV.T, out=y)
        for k, sigma in enumerate((sigma_luma, sigma_chroma, sigma_chroma)):
            np.add(y[:, k], YUV_OFFSET[k], out=c)
            c /= sigma
            cell = c.astype(np.int64)
            cell *= strides[k]
            if k:
                out += cell
            else:
                out[:] = cell
    return key


def _spatial_cells(size: int, sigma_spatial: float) -> np.ndarray:
    """⌊i/σs⌋ for i < size, the official ``(mgrid / sigma_spatial).astype(int)``."""
    return (np.arange(size) / sigma_spatial).astype(np.int64)


def grid_coordinates(image: np.ndarray, sigma_spatial: float, sigma_luma: float, sigma_chroma: float) -> np.ndarray:
    """HxWx3 uint8 RGB -> (H·W, 5) int64 grid coordinates (x, y, luma, two chroma) in row-major pixel order."""
    h, w = image.shape[:2]
    x = np.tile(_spatial_cells(w, sigma_spatial), h)
    y = np.repeat(_spatial_cells(h, sigma_spatial), w)
    colour = [_colour_key(image, sigma_luma, sigma_chroma, unit) for unit in ((1, 0, 0), (0, 1, 0), (0, 0, 1))]
    return np.column_stack((x, y, *colour))


def _sort_keys(keys: np.ndarray, span: int) -> np.ndarray:
    """Sort ``keys`` (all < ``span``) in place and return the pixel order (ties by pixel index). One sort of
    key·2^b + pixel when that fits in 63 bits (3-4x faster than argsort), else a stable argsort."""
    bits = max(1, (len(keys) - 1).bit_length())
    if span << bits <= 2**63:
        keys <<= bits
        keys |= np.arange(len(keys))
        keys.sort()
        order = keys & ((1 << bits) - 1)
        keys >>= bits
        return order
    order = np.argsort(keys, kind="stable")
    keys[:] = keys[order]
    return order


def build_grid(
    image: np.ndarray, sigma_spatial: float = 16.0, sigma_luma: float = 16.0, sigma_chroma: float = 8.0
) -> BilateralGrid:
    """The grid of one reference image. Vertices are numbered by neighbour count, then by key: the CSR rows then
    come in runs of equal length, which makes the matrix-vector products ~2.7x faster (predictable row loops)."""
    if min(sigma_spatial, sigma_luma, sigma_chroma) <= 0:
        raise UsageError("sigma_spatial, sigma_luma and sigma_chroma must be positive")
    h, w = image.shape[:2]
    if h * w == 0:
        raise UsageError(f"image has no pixels ({h}x{w})")
    xs, ys = _spatial_cells(w, sigma_spatial), _spatial_cells(h, sigma_spatial)
    # Exact key: coordinates shifted by 1 in a radix of (max + 3), so the ±1 neighbours of every vertex,
    # -1 and max + 1 included, have keys of their own and never alias another vertex. YUV of uint8 RGB lies in
    # [0, 256) (Y <= 255, U and V in [0.5, 255.5]), so ⌊256/σ⌋ bounds the colour cells without a pass over them.
    radix = [int(xs[-1]) + 3, int(ys[-1]) + 3, *(int(256 / s) + 3 for s in (sigma_luma, sigma_chroma, sigma_chroma))]
    stride = [1]
    for r in radix[:-1]:
        stride.append(stride[-1] * r)
    span = stride[-1] * radix[-1]
    if span >= 2**62:
        raise UsageError(
            f"bilateral grid too fine for this image ({radix} cells per dimension); "
            "raise sigma_spatial, sigma_luma or sigma_chroma"
        )
    keys = _colour_key(image, sigma_luma, sigma_chroma, tuple(stride[2:]))
    keys.reshape(h, w)[...] += (xs + 1)[None, :] + ((ys + 1) * stride[1])[:, None] + sum(stride[2:])
    order = _sort_keys(keys, span)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    unique_keys = keys[starts]
    run = np.diff(starts, append=len(keys))  # pixels per vertex, in key order
    n = len(unique_keys)
    # Links (lo, hi): hi is lo's +1 neighbour along one dimension. Along x (stride 1) that is the next key.
    lo = [np.flatnonzero(np.diff(unique_keys) == 1)]
    hi = [lo[0] + 1]
    for d in range(1, GRID_DIMS):
        target = unique_keys + stride[d]
        at = np.minimum(np.searchsorted(unique_keys, target), n - 1)
        found = np.flatnonzero(unique_keys[at] == target)
        lo.append(found)
        hi.append(at[found])
    degree = np.zeros(n, dtype=np.int8)  # at most 2·5
    for a, b in zip(lo, hi, strict=True):
        degree[a] += 1
        degree[b] += 1
    perm = np.argsort(degree, kind="stable")  # a radix sort on int8
    index_dtype = np.int32 if (1 + 2 * GRID_DIMS) * len(keys) < 2**31 else np.int64  # bounds every CSR index
    rank = np.empty(n, dtype=index_dtype)
    rank[perm] = np.arange(n, dtype=index_dtype)
    indptr = np.zeros(n + 1, dtype=index_dtype)
    np.cumsum(degree[perm] + 1, out=indptr[1:])
    # Each row: the vertex itself first, then its neighbours, placed link group by link group (a vertex has at
    # most one +1 and one -1 neighbour per dimension, so the rows within a group are distinct).
    indices = np.empty(indptr[-1], dtype=index_dtype)
    fill = indptr[:-1].copy()
    indices[fill] = np.arange(n, dtype=index_dtype)
    fill += 1
    for a, b in zip(lo, hi, strict=True):
        ra, rb = rank[a], rank[b]
        for row, col in ((ra, rb), (rb, ra)):
            at = fill[row]
            indices[at] = col
            fill[row] = at + 1
    data = np.ones(len(indices))
    data[indptr[:-1]] = CENTRE_WEIGHT
    vertex = np.empty(len(keys), dtype=index_dtype)
    vertex[order] = np.repeat(rank, run)
    return BilateralGrid(vertex, run[perm].astype(np.float64), sp.csr_matrix((data, indices, indptr), shape=(n, n)))


def bistochastize(grid: BilateralGrid, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(n, m) with n·blur(n) = m, the splat counts corrected so that Dn·B·Dn is bistochastic (§6 step 6)."""
    m = grid.counts
    n = np.ones(grid.n_vertices)
    for _ in range(iterations):
        blurred = grid.blur(n)
        n *= m
        n /= blurred
        np.sqrt(n, out=n)
    blurred = grid.blur(n)
    blurred *= n
    return n, blurred


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a·b without BLAS (einsum's own loop, no temporary)."""
    return float(np.einsum("i,i->", a, b))


def pcg(
    a: sp.csr_matrix,
    b: np.ndarray,
    x0: np.ndarray,
    inv_diag: np.ndarray,
    rtol: float = 1e-5,
    maxiter: int = 25,
    r0: np.ndarray | None = None,
) -> np.ndarray:
    """Jacobi-preconditioned conjugate gradient, the iteration of ``scipy.sparse.linalg.cg(a, b, x0, M=diag(inv_diag),
    rtol=rtol, atol=0, maxiter=maxiter)``: stop before an iteration once ||r|| < rtol·||b||; after ``maxiter``
    iterations return the last iterate; b = 0 gives 0. ``r0``: b - a·x0 when the caller has it."""
    b_norm = np.sqrt(_dot(b, b))
    if b_norm == 0:
        return np.zeros_like(b)
    atol = rtol * b_norm
    x = x0.copy()
    r = b - a @ x if r0 is None else r0.copy()
    p, z, step = np.empty_like(r), np.empty_like(r), np.empty_like(r)
    rho_prev = 1.0
    for iteration in range(maxiter):
        if np.sqrt(_dot(r, r)) < atol:
            break
        np.multiply(inv_diag, r, out=z)
        rho = _dot(r, z)
        if iteration:
            p *= rho / rho_prev
            p += z
        else:
            p[:] = z
        q = a @ p
        alpha = rho / _dot(p, q)
        x += np.multiply(p, alpha, out=step)
        r -= np.multiply(q, alpha, out=step)
        rho_prev = rho
    return x


def solve(
    grid: BilateralGrid,
    target: np.ndarray,
    confidence: np.ndarray | float,
    lam: float = 256.0,
    cg_tol: float = 1e-5,
    cg_maxiter: int = 25,
    diag_min: float = 1e-5,
    bistochastic_iterations: int = 10,
) -> np.ndarray:
    """Per-pixel ``target`` (flat float) and ``confidence`` (per pixel, or one value for all) -> the solver's
    per-pixel output (flat float64), §6 steps 6–9: A = λ(Dm − Dn(2·5·I + ΣB_d)Dn) + diag(S·c), b = S(c⊙t),
    Jacobi-preconditioned CG from y0 = b / S·c."""
    n, m = bistochastize(grid, bistochastic_iterations)
    blur = grid.blur_matrix
    w_splat = confidence * grid.counts if np.ndim(confidence) == 0 else grid.splat(np.asarray(confidence))
    diag = lam * (m - n * (CENTRE_WEIGHT * n)) + w_splat
    # A on the blur's pattern: -λ·n_i·n_j off the diagonal, which comes first in each row
    data = np.repeat(n, np.diff(blur.indptr))
    data *= n[blur.indices]
    data *= -lam
    data[blur.indptr[:-1]] = diag
    a = sp.csr_matrix((data, blur.indices, blur.indptr), shape=blur.shape)
    b = grid.splat(confidence * target)
    with np.errstate(divide="ignore", invalid="ignore"):
        y0 = b / w_splat  # a vertex whose pixels all have confidence 0 gets nan, as in the official code
    residual = b - a @ y0
    if np.sqrt(_dot(residual, residual)) <= cg_tol:  # the legacy SciPy early exit (old _get_atol)
        y = y0
    else:  # legacy tol=t meant ||r|| <= t·||b||: today's rtol=t, atol=0
        y = pcg(a, b, y0, 1.0 / np.maximum(diag, diag_min), cg_tol, cg_maxiter, residual)
    return grid.slice(y)


def bilateral_solve(
    image: np.ndarray,
    target: np.ndarray,
    sigma_spatial: float = 16.0,
    sigma_luma: float = 16.0,
    sigma_chroma: float = 8.0,
    lam: float = 256.0,
    confidence: float = 0.999,
    cg_tol: float = 1e-5,
    cg_maxiter: int = 25,
    diag_min: float = 1e-5,
    bistochastic_iterations: int = 10,
) -> np.ndarray:
    """HxWx3 uint8 RGB reference + HxW float target -> HxW float64 solver output (the official
    ``output_solver``, unclipped). Constant confidence, as every official call uses (0.999)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UsageError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
    if target.shape != image.shape[:2]:
        raise UsageError(f"target {target.shape} and image {image.shape[:2]} differ in size")
    grid = build_grid(image, sigma_spatial, sigma_luma, sigma_chroma)
    out = solve(
        grid,
        target.reshape(-1).astype(np.float64),
        confidence,
        lam,
        cg_tol,
        cg_maxiter,
        diag_min,
        bistochastic_iterations,
    )
    return out.reshape(target.shape)
