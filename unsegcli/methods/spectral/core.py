"""The shared core of the training-free methods: affinities, the Fiedler vector, orientation and
seed rules, and the seed's connected component (LOST, TokenCut and CutLER's official code).

Everything is batched over images of one grid size and runs on whatever device the tensors are on
(the CPU path is the same code as the GPU one). Patch masks leave as numpy arrays because the
component labelling is OpenCV's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import UsageError
from ...labels.components import label_components
from .options import EIGENSOLVERS, ORIENTATIONS

LANCZOS_TOL = 1e-10  # residual |Mu - θu| of the Ritz pair; eigenvalues of M lie in [-1, 1]
LANCZOS_CHECK_EVERY = 8  # Rayleigh-Ritz solves (small eigh) between convergence checks
START_SEED = 0  # fixed start vector: the same on every device and every run


# --- affinities -------------------------------------------------------------------------------


def cosine_similarity(keys: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, N, N) float32 cosines, as the official torch code (``F.normalize`` then a
    matmul). A zero key (a painted patch) has cosine 0 to everything, itself included."""
    k = F.normalize(keys.float(), p=2, dim=-1)
    return k @ k.transpose(-1, -2)


def binary_affinity(cos: torch.Tensor, tau: float, eps: float) -> torch.Tensor:
    """TokenCut/MaskCut graph: 1 where the cosine exceeds tau, eps elsewhere (diagonal included),
    float64 as the official ``np.where(A.astype(float) == 0, eps, A)``."""
    one = torch.ones((), dtype=torch.float64, device=cos.device)
    return torch.where(cos > tau, one, one.new_tensor(eps))


def binary_cosine_affinity(keys: torch.Tensor, tau: float, eps: float) -> torch.Tensor:
    return binary_affinity(cosine_similarity(keys), tau, eps)


def dot_affinity(keys: torch.Tensor) -> torch.Tensor:
    """LOST graph: raw dot products of the keys, float32, no normalisation."""
    k = keys.float()
    return k @ k.transpose(-1, -2)


# --- the Fiedler vector -----------------------------------------------------------------------


def fiedler(affinity: torch.Tensor, solver: str = "fast", normalised: bool = False) -> torch.Tensor:
    """(B, N, N) symmetric affinity -> (B, N) float64 second-smallest generalised eigenvector of
    (D - A) v = λ D v, D-normalised (vᵀDv = 1) like ``scipy.linalg.eigh(D - A, D)``; its sign: below.

    ``exact`` is the official call itself, per image on the CPU: the dense generalised problem
    ``scipy.linalg.eigh(D - A, D, subset_by_index=[1, 2])`` (O(N³)), so even the eigenvector's sign,
    which MaskCut's official orientation depends on, is LAPACK's. ``fast`` uses
    (D - A) v = λ D v  <=>  (I - M) u = λ u with M = D^-½ A D^-½, v = D^-½ u: the second-largest
    eigenvector of M by Lanczos with the known top one (u ∝ √d, eigenvalue 1) deflated and a fixed
    start vector, so it is deterministic; batched and on the tensors' device. Its sign is fixed so
    that the entry of largest magnitude is positive (under that sign MaskCut's official orientation
    rule equals the symmetric one, see ``orient_corners``). The two agree to ~1e-10 up to sign,
    except when λ2 and λ3 (nearly) coincide, where the eigenvector itself is ill-defined, or for
    entries of v that sit on the partition threshold (MaskCut's painted patches, CutLER maskcut/maskcut.py).

    ``normalised``: return u instead of v, the unit 2nd eigenvector of the symmetric normalised Laplacian
    I - M (VoteCut's, CuVLER votecut/ncut.py; ``exact`` is then its dense ``eigh`` of that Laplacian).
    """
    if solver not in EIGENSOLVERS:
        raise UsageError(f"eigensolver must be one of {', '.join(EIGENSOLVERS)}, not {solver!r}")
    a = affinity.double()
    if solver == "exact":
        from scipy.linalg import eigh

        out = []
        for item in a.cpu().numpy():
            deg = np.diag(item.sum(1))
            if normalised:
                r_ = 1.0 / np.sqrt(item.sum(1))
                out.append(eigh(r_[:, None] * (deg - item) * r_[None, :], subset_by_index=[1, 1])[1][:, 0])
            else:
                out.append(eigh(deg - item, deg, subset_by_index=[1, 2])[1][:, 0])
        return torch.from_numpy(np.stack(out)).to(affinity.device)
    d = a.sum(-1)
    r = d.rsqrt()
    top = d.sqrt()
    u = _lanczos_second(a, r, top / top.norm(dim=-1, keepdim=True))
    v = u if normalised else u * r
    peak = v.gather(-1, v.abs().argmax(-1, keepdim=True))
    return torch.where(peak < 0, -v, v)


def _start_vector(n: int, count: int, like: torch.Tensor) -> torch.Tensor:
    """Standard-normal rows from a CPU generator with a fixed seed, so every device starts alike."""
    g = torch.Generator().manual_seed(START_SEED)
    return torch.randn(count, n, generator=g, dtype=torch.float64).to(like.device)


def _orthogonalise(w: torch.Tensor, top: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """w minus its components on the deflated vector and the basis, twice (classical Gram-Schmidt
    needs the second pass to keep the Krylov basis orthogonal to machine precision)."""
    for _ in range(2):
        w = w - top * (top * w).sum(-1, keepdim=True)
        w = w - (basis @ (basis.transpose(-1, -2) @ w[..., None]))[..., 0]
    return w


def _lanczos_second(a: torch.Tensor, r: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Largest eigenvector of M = diag(r) a diag(r) restricted to the complement of ``top`` (unit
    vectors, batched): Lanczos with full reorthogonalisation and Rayleigh-Ritz every few steps until
    every item's residual is under LANCZOS_TOL (or the space is exhausted, when the answer is
    exact). M is applied as r * (a @ (r * x)), never formed: one pass over a per product.

    An item keeps the Ritz vector of the check at which it converged, not the one of the step at
    which the slowest item of the batch converged, so its result does not depend on its batch
    neighbours' convergence. When λ2 ≈ λ3 the vector is ill-defined: rounding (batched BLAS calls
    differ from single ones in the last bit, devices differ) can then still pick another one."""
    b, n, _ = a.shape
    steps = n - 1
    cap = min(steps, 64)  # columns allocated; doubled when a hard case needs more
    basis = a.new_zeros(b, n, cap)
    images = a.new_zeros(b, n, cap)
    q = _orthogonalise(_start_vector(n, 1, a).expand(b, n), top, basis[..., :0])
    q = q / q.norm(dim=-1, keepdim=True)
    u = q
    done = torch.zeros(b, 1, dtype=torch.bool, device=a.device)
    for j in range(steps):
        if j == cap:
            grow = min(steps, 2 * cap) - cap
            basis, images = (torch.cat([t, t.new_zeros(b, n, grow)], dim=-1) for t in (basis, images))
            cap += grow
        basis[..., j] = q
        w = r * torch.bmm(a, (r * q)[..., None])[..., 0]
        images[..., j] = w
        if (j + 1) % LANCZOS_CHECK_EVERY == 0 or j + 1 == steps:
            q_j, mq_j = basis[..., : j + 1], images[..., : j + 1]
            t = q_j.transpose(-1, -2) @ mq_j
            theta, y = torch.linalg.eigh((t + t.transpose(-1, -2)) / 2)
            y_top = y[..., -1:]
            ritz = (q_j @ y_top)[..., 0]
            resid = ((mq_j @ y_top)[..., 0] - theta[..., -1:] * ritz).norm(dim=-1, keepdim=True)
            u = torch.where(done, u, ritz)
            done |= resid < LANCZOS_TOL
            if bool(done.all()):
                break
        w = _orthogonalise(w, top, basis[..., : j + 1])
        norm = w.norm(dim=-1, keepdim=True)
        broke = norm < 1e-8
        if bool(broke.any()):
            # invariant subspace found: go on from a fresh (fixed) vector orthogonal to it
            g = torch.Generator().manual_seed(START_SEED + j + 1)
            fresh = torch.randn(n, generator=g, dtype=torch.float64).to(a.device).expand(b, n)
            fresh = _orthogonalise(fresh, top, basis[..., : j + 1])
            w = torch.where(broke, fresh, w)
            norm = w.norm(dim=-1, keepdim=True)
        q = w / norm
    return u


def ncut_score(affinity: torch.Tensor, masks: np.ndarray) -> np.ndarray:
    """(B, N, N) affinity + (B, gh, gw) bool masks -> (B,) float64 confidence max(0, 1 - Ncut) of each mask
    against the rest of its graph, Ncut = cut/vol(mask) + cut/vol(rest) (Shi & Malik 2000; TokenCut and
    MaskCut minimise its relaxation). 1: the mask is disconnected from the rest; 0: it is no more apart
    than any cut of a uniform graph (where Ncut = 1), or the mask is empty or everything."""
    a = affinity.double()
    m = torch.from_numpy(masks.reshape(len(masks), -1)).to(a.device, torch.float64)
    deg = a.sum(-1)
    vol = (m * deg).sum(-1)
    rest = deg.sum(-1) - vol
    cut = vol - (m * torch.bmm(a, m[..., None])[..., 0]).sum(-1)
    ncut = torch.where((vol > 0) & (rest > 0), cut / vol.clamp_min(1e-300) + cut / rest.clamp_min(1e-300), 1.0)
    return (1.0 - ncut).clamp_min(0.0).cpu().numpy()


# --- partitions, orientation, seeds -----------------------------------------------------------


def mean_bipartition(v: np.ndarray) -> np.ndarray:
    """(B, N) -> bool: v above its arithmetic mean (TokenCut/MaskCut ``v > avg``)."""
    return v > (v.sum(-1, keepdims=True) / v.shape[-1])


def orient_by_seed(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TokenCut: seed = argmax |v|; the foreground is the side of the mean that holds the seed.
    Invariant to the sign of v. -> (foreground (B, N) bool, seed (B,))."""
    fg = mean_bipartition(v)
    seed = np.abs(v).argmax(-1)
    flip = ~fg[np.arange(len(v)), seed]
    return np.where(flip[:, None], ~fg, fg), seed


def grid_corners(fg: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(B, N) bool -> number of the grid's 4 corner patches inside (MaskCut check_num_fg_corners)."""
    gh, gw = grid
    return fg[:, [0, gw - 1, (gh - 1) * gw, gh * gw - 1]].sum(-1)


def orient_corners(v: np.ndarray, grid: tuple[int, int], rule: str = "official") -> tuple[np.ndarray, np.ndarray]:
    """MaskCut's object-centric orientation -> (foreground (B, N) bool, seed (B,)).

    ``official`` (CutLER maskcut_forward): with P = {v > mean}, reverse when P holds >= 3 corners or
    misses argmax |v|; the seed is argmax v (argmin v when reversed). The corner test therefore only
    acts when the peak argmax |v| is positive; with a negative peak the rule is TokenCut's (the peak's
    side, corners ignored), so the answer depends on the eigenvector's arbitrary sign (CutLER maskcut/maskcut.py):
    LAPACK's with the exact solver (as the official code), peak-positive with the fast one.
    ``symmetric``: whichever side holds >= 3 corners is background; otherwise the side holding
    argmax |v| is foreground; the seed is that side's extreme. It never depends on the sign and
    equals ``official`` under a peak-positive sign.
    """
    if rule not in ORIENTATIONS:
        raise UsageError(f"orientation must be one of {', '.join(ORIENTATIONS)}, not {rule!r}")
    rows = np.arange(len(v))
    p_side = mean_bipartition(v)
    peak_in_p = p_side[rows, np.abs(v).argmax(-1)]
    p_corners = grid_corners(p_side, grid)
    if rule == "official":
        reverse = (p_corners >= 3) | ~peak_in_p
    else:
        q_corners = grid_corners(~p_side, grid)
        reverse = np.where(p_corners >= 3, True, np.where(q_corners >= 3, False, ~peak_in_p))
    fg = np.where(reverse[:, None], ~p_side, p_side)
    seed = np.where(reverse, v.argmin(-1), v.argmax(-1))
    return fg, seed


def min_degree_seed(affinity: torch.Tensor) -> torch.Tensor:
    """LOST patch ranking: ascending number of positively correlated other patches (self excluded).
    -> (B, N) patch order, seed first. The official ``argsort`` is not stable and degrees are
    integers; ours is stable, so among tied degrees the lowest patch index comes first."""
    pos = affinity > 0
    pos.diagonal(dim1=-2, dim2=-1).fill_(False)
    return torch.sort(pos.sum(-1), dim=-1, stable=True).indices


# --- components -------------------------------------------------------------------------------


def seed_component(fg: np.ndarray, seed: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(B, N) bool + (B,) seeds -> (B, gh, gw) bool: the 4-connected component of the foreground
    that holds the seed (``scipy.ndimage.label`` default structure, as detect_box)."""
    gh, gw = grid
    out = np.zeros((len(fg), gh, gw), bool)
    for i, (mask, s) in enumerate(zip(fg.reshape(-1, gh, gw), seed, strict=True)):
        r, c = divmod(int(s), gw)
        if not mask[r, c]:
            continue
        _, labels, _ = label_components(np.ascontiguousarray(mask), connectivity=4)
        out[i] = labels == labels[r, c]
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched IoU of boolean masks over the last two axes; 0/0 is NaN (never > a threshold), as
    TokenCut's metric.IoU."""
    inter = (a & b).sum((-2, -1))
    union = (a | b).sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union
