"""The fast bilateral solver as TokenCut, MOVE and FOUND run it ("+BS" / "+Bilateral" rows), written from
the algorithm in shared/design/methods-training-free.md §6 (the official ``bilateral_solver.py`` of
TokenCut@fed52cd = MOVE@074d0af, itself after Barron & Poole, ECCV 2016).

Same maths as the official code (outputs agree to ~1e-14), with these differences:
- vertices are found with an exact int64 mixed-radix key instead of the float ``Σ c_d·255^d`` hash, which
  merges distinct vertices once a coordinate reaches 255 (images over 255·σ_spatial = 4,080 px at σ 16): the one
  change of result, and a fix;
- splat and slice are ``bincount`` and fancy indexing, the five blur matrices one symmetric CSR matrix,
  and the system matrix is assembled once from its entries (no sparse-matrix sums);
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
_YUV_BLOCK = 8192


@dataclass(frozen=True)
class BilateralGrid:
    """Pixels splatted to the vertices of a 5-D grid (nearest vertex: splat = sum, slice = gather)."""

    vertex: np.ndarray  # (pixels,) int64: the vertex of each pixel
    counts: np.ndarray  # (vertices,) float64: pixels per vertex, S·1
    neighbours: sp.csr_matrix  # (vertices, vertices) 0/1, symmetric: Σ_d of the ±1 links along dimension d

    @property
    def n_vertices(self) -> int:
        return len(self.counts)

    def splat(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.vertex, weights=values, minlength=self.n_vertices)

    def slice(self, values: np.ndarray) -> np.ndarray:
        return values[self.vertex]

    def blur(self, values: np.ndarray) -> np.ndarray:
        """[1 2 1] in each of the 5 dimensions: 2·5·x plus every neighbour's value (§6 step 5)."""
        return 2 * GRID_DIMS * values + self.neighbours @ values


def _cells(image: np.ndarray, sigma_spatial: float, sigma_luma: float, sigma_chroma: float) -> list[np.ndarray]:
    """The 5 grid coordinates of every pixel, each (H·W,) int64 in row-major pixel order: ⌊x/σs⌋, ⌊y/σs⌋,
    ⌊Y/σl⌋, ⌊U/σc⌋, ⌊V/σc⌋. Every value is non-negative (U, V >= 0.5 for uint8 RGB), so truncation equals the
    official ``astype(int)``; each quotient is the same float64 division as the official one."""
    h, w = image.shape[:2]
    rgb = image.reshape(-1, 3).astype(np.float64)
    # The YUV product is the official float64 dot (BLAS), so pixels on a bin edge land in the same bin. Row blocks
    # small enough that OpenBLAS runs them on one thread give the same bits (checked on all 2^24 colours); one large
    # product is threaded, and threads spinning on a busy machine cost ~0.2 s.
    yuv = (
        np.concatenate(
            [np.dot(rgb[i : i + _YUV_BLOCK], RGB_TO_YUV.T) for i in range(0, len(rgb), _YUV_BLOCK)]
            or [np.empty((0, 3))]
        )
        + YUV_OFFSET
    )
    return [
        np.tile((np.arange(w) / sigma_spatial).astype(np.int64), h),
        np.repeat((np.arange(h) / sigma_spatial).astype(np.int64), w),
        (yuv[:, 0] / sigma_luma).astype(np.int64),
        (yuv[:, 1] / sigma_chroma).astype(np.int64),
        (yuv[:, 2] / sigma_chroma).astype(np.int64),
    ]


def grid_coordinates(image: np.ndarray, sigma_spatial: float, sigma_luma: float, sigma_chroma: float) -> np.ndarray:
    """HxWx3 uint8 RGB -> (H·W, 5) int64 grid coordinates (x, y, luma, two chroma) in row-major pixel order."""
    return np.stack(_cells(image, sigma_spatial, sigma_luma, sigma_chroma), axis=1)


def build_grid(
    image: np.ndarray, sigma_spatial: float = 16.0, sigma_luma: float = 16.0, sigma_chroma: float = 8.0
) -> BilateralGrid:
    """The grid of one reference image. Vertices are numbered in increasing key order."""
    if min(sigma_spatial, sigma_luma, sigma_chroma) <= 0:
        raise UsageError("sigma_spatial, sigma_luma and sigma_chroma must be positive")
    cells = _cells(image, sigma_spatial, sigma_luma, sigma_chroma)
    # Exact key: coordinates shifted by 1 in a radix of (max + 3), so the ±1 neighbours of every vertex,
    # -1 and max + 1 included, have keys of their own and never alias another vertex.
    radix = [int(c.max()) + 3 for c in cells]
    if float(np.prod(np.array(radix, dtype=np.float64))) >= 2.0**62:
        raise UsageError(
            f"bilateral grid too fine for this image ({radix} cells per dimension); "
            "raise sigma_spatial, sigma_luma or sigma_chroma"
        )
    stride = np.concatenate(([1], np.cumprod(radix[:-1]))).astype(np.int64)
    keys = cells[0] + 1
    for d in range(1, GRID_DIMS):
        keys += (cells[d] + 1) * stride[d]
    unique_keys, vertex = np.unique(keys, return_inverse=True)
    vertex = vertex.reshape(-1)
    n = len(unique_keys)
    # Neighbour table: column 2d is the +1 neighbour along dimension d, column 2d+1 the -1 neighbour (its mirror).
    table = np.full((n, 2 * GRID_DIMS), -1, dtype=np.int32 if n < 2**31 else np.int64)
    for d in range(GRID_DIMS):
        target = unique_keys + stride[d]
        at = np.minimum(np.searchsorted(unique_keys, target), n - 1)
        found = np.flatnonzero(unique_keys[at] == target)
        table[found, 2 * d] = at[found]
        table[at[found], 2 * d + 1] = found
    present = table >= 0
    indptr = np.concatenate(([0], np.cumsum(present.sum(axis=1))))
    indices = table[present]  # row-major: grouped by row, as CSR wants
    links = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n, n))
    counts = np.bincount(vertex, minlength=n).astype(np.float64)
    return BilateralGrid(vertex, counts, links)


def bistochastize(grid: BilateralGrid, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(n, m) with n·blur(n) = m, the splat counts corrected so that Dn·B·Dn is bistochastic (§6 step 6)."""
    m = grid.counts
    n = np.ones(grid.n_vertices)
    for _ in range(iterations):
        n = np.sqrt(n * m / grid.blur(n))
    return n, n * grid.blur(n)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a·b without BLAS (einsum's own loop, no temporary)."""
    return float(np.einsum("i,i->", a, b))


def pcg(
    a: sp.csr_matrix, b: np.ndarray, x0: np.ndarray, inv_diag: np.ndarray, rtol: float = 1e-5, maxiter: int = 25
) -> np.ndarray:
    """Jacobi-preconditioned conjugate gradient, the iteration of ``scipy.sparse.linalg.cg(a, b, x0, M=diag(inv_diag),
    rtol=rtol, atol=0, maxiter=maxiter)``: stop before an iteration once ||r|| < rtol·||b||; after ``maxiter``
    iterations return the last iterate; b = 0 gives 0."""
    b_norm = np.sqrt(_dot(b, b))
    if b_norm == 0:
        return np.zeros_like(b)
    atol = rtol * b_norm
    x = x0.copy()
    r = b - a @ x
    p = np.empty_like(r)
    rho_prev = 1.0
    for iteration in range(maxiter):
        if np.sqrt(_dot(r, r)) < atol:
            break
        z = inv_diag * r
        rho = _dot(r, z)
        if iteration:
            p *= rho / rho_prev
            p += z
        else:
            p[:] = z
        q = a @ p
        alpha = rho / _dot(p, q)
        x += alpha * p
        r -= alpha * q
        rho_prev = rho
    return x


def solve(
    grid: BilateralGrid,
    target: np.ndarray,
    confidence: np.ndarray,
    lam: float = 256.0,
    cg_tol: float = 1e-5,
    cg_maxiter: int = 25,
    diag_min: float = 1e-5,
    bistochastic_iterations: int = 10,
) -> np.ndarray:
    """Per-pixel ``target`` (flat float) -> the solver's per-pixel output (flat float64), §6 steps 6–9:
    A = λ(Dm − Dn(2·5·I + ΣB_d)Dn) + diag(S·c), b = S(c⊙t), Jacobi-preconditioned CG from y0 = b / S·c."""
    n, m = bistochastize(grid, bistochastic_iterations)
    nb = grid.neighbours
    nv = grid.n_vertices
    row = np.repeat(np.arange(nv), np.diff(nb.indptr))
    w_splat = grid.splat(confidence)
    diag = lam * (m - n * (2 * GRID_DIMS * n)) + w_splat
    # A in CSR: each row's diagonal entry first, then its neighbours' -λ·n_i·n_j
    indptr = nb.indptr + np.arange(nv + 1)
    first = indptr[:-1]
    rest = np.ones(indptr[-1], dtype=bool)
    rest[first] = False
    indices = np.empty(indptr[-1], dtype=nb.indices.dtype)
    data = np.empty(indptr[-1])
    indices[first], data[first] = np.arange(nv), diag
    indices[rest], data[rest] = nb.indices, -lam * (n[row] * nb.data * n[nb.indices])
    a = sp.csr_matrix((data, indices, indptr), shape=(nv, nv))
    b = grid.splat(confidence * target)
    with np.errstate(divide="ignore", invalid="ignore"):
        y0 = b / w_splat  # a vertex whose pixels all have confidence 0 gets nan, as in the official code
    residual = b - a @ y0
    if np.sqrt(_dot(residual, residual)) <= cg_tol:  # the legacy SciPy early exit (old _get_atol)
        y = y0
    else:  # legacy tol=t meant ||r|| <= t·||b||: today's rtol=t, atol=0
        y = pcg(a, b, y0, 1.0 / np.maximum(diag, diag_min), cg_tol, cg_maxiter)
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
    t = target.reshape(-1).astype(np.float64)
    c = np.full(t.shape, confidence, dtype=np.float64)
    out = solve(grid, t, c, lam, cg_tol, cg_maxiter, diag_min, bistochastic_iterations)
    return out.reshape(target.shape)
