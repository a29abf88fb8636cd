"""VoteCut (Arica et al., CuVLER, CVPR 2024): normalised cuts on several backbones, k-means on each
eigenvector, connected components as proposals, and a vote across them whose agreement is each mask's score.

Our own code from the official rules (shahaf-arica/CuVLER ``extract_eig_vecs.py``, ``votecut/ncut.py``,
``votecut/votecut.py``, ``utils/annotaions_worker.py``):

1. every backbone sees the image resized to a square (480, 476 for patch 14) and gives DINO's last-block keys
   or DINOv2's final-LayerNorm patch tokens; the binary cosine graph (tau, eps) gives u, the 2nd eigenvector
   of the symmetric normalised Laplacian;
2. u is clustered for each K in ``ks`` by the official scikit-learn ``KMeans(n_clusters=K, random_state=0,
   n_init=10)``, reproduced in numpy (``kmeans_1d``): the same labels, numbering included, so the proposals come
   in the official order. It is not the exact 1-D optimum: Lloyd's iterations stop a few patches away from it,
   and the official masks are made from where they stop (scripts/compare_votecut.py, docs/parity.md);
3. per cluster: skipped if it holds >= 2 grid corners, or has more than 30 4-connected components; each
   component is a proposal unless its box is under 5 patches both wide and tall;
4. proposals are resized (nearest) to 60 x 60 and grouped greedily by IoU > ``cluster_iou`` (``vote``), at
   most ``max_objects`` groups; a group's mask is the patches more than ``tau_m`` of its members hold, its
   score the group's size over the image's largest group's (so the top mask scores 1).

Ties the official code leaves to an unstable sort (equal vote counts) are broken by proposal order here, the
lower index first. The voted masks may overlap; the instance map holds one object per pixel, so where two
overlap the smaller one is kept on top (``instance_map``).

5. optional (``unseg predict --method votecut --refine crf``, the ``crf`` extra): each voted mask, upsampled
   to the image, is refined by CutLER's dense CRF (``refine.crf.dense_crf`` with ``RefineOptions``' constants)
   on a crop of the image around its box, holes filled; the raw mask is kept when the CRF's mask is empty or
   its box moved (box IoU < 0.5) (``crf_refine``, CuVLER votecut.py mask_post_processing). Off by default, as
   unseg's other methods: the official output without a CRF is the raw upsampled vote.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...config import validate
from ...engine.predictor import Output, Prepared
from ...errors import UsageError, param
from ...io.features import FeatureRecord
from ...labels.components import label_components
from ...model.dino_keys import FinalTokens, LastBlockKeys, is_dinov2, load_backbone, preprocess, register_count
from ...model.forward import inference_forward
from ...refine import RefineOptions
from ...refine.postprocess import GATE_IOU, fill_holes
from ...runtime import resolve_device
from .core import binary_cosine_affinity, fiedler
from .options import VoteCutOptions

COMMON_GRID = 60  # proposals meet on a 60 x 60 grid (CuVLER iou_clustering patches_shape)
MAX_COMPONENTS = 30  # a cluster split into more components is skipped (instances_from_semantic_labels)
MIN_BOX = 5  # a component under 5 patches both wide and tall is skipped (min_mask_w = min_mask_h = 5)
PIVOT_STEPS = 5  # moves of a group's pivot (cluster_mask_by_iou pivot_iter)
KMEANS_INITS = 10  # CuVLER votecut.py kmeans_labeling: KMeans(n_clusters=k, random_state=0, n_init=10)
KMEANS_SEED = 0  # ... random_state=0
KMEANS_MAX_ITER = 300  # scikit-learn KMeans' default max_iter
KMEANS_TOL = 1e-4  # scikit-learn KMeans' default tol, relative to the data's mean variance (_tolerance)


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        ks = ()
    if not ks or any(k < 2 for k in ks):
        raise UsageError(f"{param('ks')} must be comma-separated integers >= 2, not {text!r}")
    return ks


def kmeans_1d(values: np.ndarray, k: int) -> np.ndarray:
    """(N,) float -> (N,) int labels of CuVLER's ``KMeans(n_clusters=k, random_state=0, n_init=10)`` on the values
    as one feature (votecut.py kmeans_labeling), reproduced from scikit-learn's documented algorithm with its
    defaults: the data centred, greedy k-means++ seeding, Lloyd's iterations until the labels repeat or the centres
    move less than ``KMEANS_TOL`` times the variance, the lowest inertia of ``KMEANS_INITS`` runs. Not the exact
    1-D optimum: Lloyd stops at a nearby fixed point, and the official masks are made from that. Label numbers are
    scikit-learn's too (they order the proposals). Equal to scikit-learn up to the last bits of its threaded sums."""
    x = values.astype(np.float64).reshape(-1, 1)
    x = x - x.mean(axis=0)
    tol = float(np.mean(np.var(x, axis=0))) * KMEANS_TOL
    rng = np.random.RandomState(KMEANS_SEED)  # scikit-learn's random_state=0 is this legacy generator
    best: tuple[np.ndarray, float] | None = None
    for _ in range(KMEANS_INITS):
        labels, inertia = _lloyd(x, _kmeans_pp(x, k, rng), tol)
        if best is None or (inertia < best[1] and not _same_labels(labels, best[0])):
            best = (labels, inertia)
    assert best is not None
    return best[0]


def _sq_dist(c: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(C, 1) centres, (N, 1) points -> (C, N) squared distances as -2 c.x + |c|^2 + |x|^2 (clipped at 0)."""
    d = -2 * (c @ x.T)
    d += c * c
    d += (x * x).T
    return np.maximum(d, 0)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """Greedy k-means++ (Arthur & Vassilvitskii; scikit-learn's variant): the first centre uniform, each next
    one the best of 2 + int(log k) candidates drawn in proportion to the squared distance to the centres so far."""
    n = len(x)
    weight = np.ones(n)
    first = rng.choice(n, p=weight / weight.sum())
    centres = [x[first]]
    closest = _sq_dist(x[[first]], x)
    potential = closest @ weight
    for _ in range(1, k):
        draws = rng.uniform(size=2 + int(np.log(k))) * potential
        cand = np.minimum(np.searchsorted(np.cumsum(weight * closest), draws), n - 1)
        dist = np.minimum(closest, _sq_dist(x[cand], x))
        pots = dist @ weight.reshape(-1, 1)
        best = int(np.argmin(pots))
        potential, closest = pots[best], dist[best]
        centres.append(x[cand[best]])
    return np.stack(centres)


def _lloyd(x: np.ndarray, centres: np.ndarray, tol: float) -> tuple[np.ndarray, float]:
    """Lloyd's k-means from ``centres`` -> (labels, inertia): up to KMEANS_MAX_ITER steps, stopping when the
    labels repeat or the squared centre shifts sum to <= ``tol``; then the labels of the final centres. An empty
    cluster takes the points farthest from their centres (the labels stay)."""
    labels_old = np.full(len(x), -1)
    strict = False
    for _ in range(KMEANS_MAX_ITER):
        labels = np.argmin((centres * centres).T - 2 * (x @ centres.T), axis=1)
        sums = np.bincount(labels, weights=x[:, 0], minlength=len(centres))[:, None]
        counts = np.bincount(labels, minlength=len(centres)).astype(np.float64)
        empty = np.flatnonzero(counts == 0)
        dist = ((x - centres[labels]) ** 2).sum(1) if len(empty) else np.zeros(1)
        if dist.max() > 0:  # scikit-learn _relocate_empty_clusters_dense
            for e, far in zip(empty, np.argsort(-dist, kind="stable"), strict=False):
                sums[labels[far]] -= x[far]
                counts[labels[far]] -= 1
                sums[e], counts[e] = x[far], 1
        new = sums * (1 / np.maximum(counts, 1))[:, None]
        shift = ((new - centres) ** 2).sum()
        centres = new
        if np.array_equal(labels, labels_old):
            strict = True
            break
        if shift <= tol:
            break
        labels_old = labels
    if not strict:
        labels = np.argmin((centres * centres).T - 2 * (x @ centres.T), axis=1)
    return labels, float(((x - centres[labels]) ** 2).sum())


def _same_labels(a: np.ndarray, b: np.ndarray) -> bool:
    """The same partition, whatever the label numbers."""
    return len(set(zip(a.tolist(), b.tolist(), strict=True))) == len(set(a.tolist())) == len(set(b.tolist()))


def proposals(labellings: Sequence[np.ndarray]) -> list[np.ndarray]:
    """(gh, gw) int labellings, in order -> bool proposals: per label (ascending) that holds < 2 grid
    corners and has at most MAX_COMPONENTS 4-connected components, each component whose box is at least
    MIN_BOX patches wide or tall (CuVLER instances_from_semantic_labels)."""
    out = []
    for lab in labellings:
        for value in np.unique(lab):
            region = lab == value
            if int(region[0, 0]) + int(region[0, -1]) + int(region[-1, 0]) + int(region[-1, -1]) >= 2:
                continue
            n, comp, stats = label_components(np.ascontiguousarray(region), connectivity=4)
            if n - 1 > MAX_COMPONENTS:
                continue
            for i in range(1, n):
                if stats[i, 2] < MIN_BOX and stats[i, 3] < MIN_BOX:
                    continue
                out.append(comp == i)
    return out


def on_common_grid(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Bool masks of any grid -> (P, 60, 60) float32 by nearest resampling (torch's legacy nearest, which
    torchvision's NEAREST resize of the official code calls)."""
    out = np.zeros((len(masks), COMMON_GRID, COMMON_GRID), np.float32)
    for i, m in enumerate(masks):
        t = torch.from_numpy(m.astype(np.float32))[None, None]
        out[i] = F.interpolate(t, size=(COMMON_GRID, COMMON_GRID), mode="nearest")[0, 0].numpy()
    return out


def group_by_iou(iou: np.ndarray, threshold: float) -> list[np.ndarray]:
    """(P, P) IoU -> groups of proposal indices, in creation order (CuVLER cluster_mask_by_iou): candidates by
    descending count of proposals above ``threshold`` (ties: lower index first); a group starts at its pivot
    and takes in the pivot's neighbours, moving the pivot to the member with the largest IoU sum within the
    group, up to PIVOT_STEPS times; it is kept (minus proposals earlier groups used) unless its final pivot
    was used before; either way its members are used."""
    above = iou > threshold
    todo = list(np.argsort(-above.sum(1), kind="stable"))
    used: set[int] = set()
    groups = []
    while todo:
        pivot = int(todo.pop(0))
        members = np.array([pivot])
        for _ in range(PIVOT_STEPS):
            grown = np.union1d(members, np.flatnonzero(above[pivot]))
            if len(grown) == len(members):
                break
            members = grown
            pivot = int(members[np.argmax(iou[np.ix_(members, members)].sum(1))])
        if pivot not in used:
            members = np.array([m for m in members if int(m) not in used], np.int64)
            groups.append(members)
        used.update(int(m) for m in members)
        todo = [i for i in todo if int(i) not in used]
    return groups


def vote(
    props: Sequence[np.ndarray], tau_m: float, cluster_iou: float, max_objects: int
) -> list[tuple[np.ndarray, int]]:
    """Proposals -> [(60 x 60 bool voted mask, group size)], at most ``max_objects`` groups in creation order,
    then sorted by size (descending, stable). A group whose vote is empty is dropped."""
    if not props:
        return []
    grid = on_common_grid(props)
    flat = grid.reshape(len(grid), -1)
    inter = flat @ flat.T  # exact small integers in float32, as the official matmul
    sizes = flat.sum(1)
    iou = inter / (sizes[:, None] + sizes[None, :] - inter)  # float32, as the official cdist + matmul
    out = []
    for members in group_by_iou(iou, cluster_iou)[:max_objects]:
        share = grid[members].sum(0) / np.float32(len(members))  # float32 mean, compared in float32
        mask = share > np.float32(tau_m)
        if mask.any():
            out.append((mask, len(members)))
    return sorted(out, key=lambda m: -m[1])


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bool mask (not empty) -> (x0, y0, x1, y1), exclusive ends (CuVLER bbox_from_mask's x, y, w, h)."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two non-empty masks' boxes (CuVLER votecut.py IoU_bbox)."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = box_of(a), box_of(b)
    inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
    return inter / ((ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter)


def crf_refine(mask: np.ndarray, image: np.ndarray, options: RefineOptions) -> np.ndarray:
    """A voted mask at image size (bool, not empty) + the HxWx3 uint8 image -> the mask refined as CuVLER's
    mask_post_processing does: the crop is the mask's box widened by a third of its width (height) on each side,
    clipped to the image; CutLER's dense CRF on that crop, holes filled, pasted into an empty mask. The raw mask
    is kept when the result is empty or its box IoU with the raw mask's is below 0.5."""
    from ...refine.crf import dense_crf

    h, w = mask.shape
    x0, y0, x1, y1 = box_of(mask)
    bw, bh = x1 - x0, y1 - y0
    cx0, cx1, cy0, cy1 = max(x0 - bw // 3, 0), min(x1 + bw // 3, w), max(y0 - bh // 3, 0), min(y1 + bh // 3, h)
    o = options
    crop = dense_crf(
        image[cy0:cy1, cx0:cx1],
        mask[cy0:cy1, cx0:cx1].astype(np.float32),
        o.crf_iterations,
        o.crf_pos_w,
        o.crf_pos_xy_std,
        o.crf_bi_w,
        o.crf_bi_xy_std,
        o.crf_bi_rgb_std,
    )
    refined = np.zeros_like(mask)
    refined[cy0:cy1, cx0:cx1] = fill_holes(crop)
    if not refined.any() or box_iou(mask, refined) < GATE_IOU:  # votecut.py: IoU_bbox(...) < 0.5
        return mask
    return refined


def full_masks(
    voted: Sequence[np.ndarray],
    original: tuple[int, int],
    image: np.ndarray | None = None,
    refine: RefineOptions | None = None,
) -> np.ndarray:
    """Voted 60 x 60 masks (not empty) -> (n, H, W) bool: upsampled nearest to the image (CuVLER
    mask_post_processing's F.interpolate), each refined by ``crf_refine`` with ``refine`` (and ``image``) if given."""
    stack = torch.from_numpy(np.stack(voted).astype(np.float32))[None]
    full = F.interpolate(stack, size=tuple(original), mode="nearest")[0].numpy() > 0
    if refine is not None:
        assert image is not None
        full = np.stack([crf_refine(m, image, refine) for m in full])
    return full


def instance_map(
    voted: Sequence[tuple[np.ndarray, int]],
    original: tuple[int, int],
    image: np.ndarray | None = None,
    refine: RefineOptions | None = None,
) -> Output:
    """Voted masks (sorted by group size) -> (H, W) uint8 labels, object k = the k-th mask, and its score =
    group size / the largest group size. Masks at image size (``full_masks``: refined with ``refine``, if given);
    where they overlap the smaller mask lies on top, so an object inside another keeps its pixels."""
    labels = np.zeros(original, np.uint8)
    if not voted:
        return labels, {}
    full = full_masks([m for m, _ in voted], original, image, refine)
    for k in sorted(range(len(voted)), key=lambda k: -int(full[k].sum())):  # largest first, smaller on top
        labels[full[k]] = k + 1
    top = max(size for _, size in voted)
    return labels, {k + 1: size / top for k, (_, size) in enumerate(voted)}


class VoteCutPredictor:
    """MaskPredictor of VoteCut: every backbone runs once per batch; the vote is per image. ``refine`` (crf):
    each mask refined by ``crf_refine``. ``stage`` splits the run (``io.features``, as ``SpectralPredictor``):
    "features" returns each image's keys or tokens per backbone; "cuts" loads no backbone and runs the
    eigenvectors, k-means and vote on such records."""

    kind = "instances"

    def __init__(
        self,
        method: str = "votecut",
        options: VoteCutOptions | None = None,
        backbone: Any = None,
        device: str | torch.device = "cpu",
        refine: RefineOptions | None = None,
        stage: str | None = None,
        precision: str = "fp32",
        engine: str = "torch",
    ):
        if refine is not None:
            if refine.method != "crf":
                raise UsageError(f"{param('method')} {method} applies {param('refine')} crf, not {refine.method}")
            from ...refine.crf import require_crf

            require_crf()
        self.refine = refine
        self.options = options if options is not None else VoteCutOptions()
        if not isinstance(self.options, VoteCutOptions):
            raise UsageError(f"options for {method} must be VoteCutOptions")
        validate(self.options)
        self.ks = parse_ks(self.options.ks)
        self.stage = stage
        if stage == "features":
            self.kind = "features"
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.vits: list[Any] = []
        self.sizes: list[int] = []
        if stage == "cuts":
            return
        specs: Sequence[str | Path] = (
            backbone if isinstance(backbone, (tuple, list))
            else [backbone] if backbone is not None
            else [s.strip() for s in self.options.backbone.split(",")]
        )  # fmt: skip
        exact = self.options.eigensolver == "exact"
        self.vits = [load_backbone(s, explicit_attention=exact).to(self.device) for s in specs]
        # per backbone what it cuts: CuVLER's DINOv2 copy resizes the position table plainly (no antialias) and
        # cuts the final tokens; DINO, the last block's keys (``precision``, ``engine``: model.forward)
        self.forwards = [
            inference_forward(
                FinalTokens(vit, "size-antialias" if register_count(vit) else "size")
                if is_dinov2(vit)
                else LastBlockKeys(vit),
                self.device,
                precision,
                engine,
            )
            for vit in self.vits
        ]
        for vit in self.vits:
            p = int(vit.patch_embed.proj.kernel_size[0])
            if self.options.fixed_size < p:
                raise UsageError(f"{param('fixed_size')} {self.options.fixed_size} is smaller than a {p}-px patch")
            self.sizes.append(self.options.fixed_size // p * p)

    def prepare(self, index: int, image: Any) -> Prepared:
        if self.stage == "cuts":  # a FeatureRecord: one (N, D) array per backbone
            keys = [torch.from_numpy(image.tensors[f"keys_{b}"]) for b in range(len(image.geometry["grids"]))]
            grids = image.geometry["grids"]
            original = tuple(image.geometry["original"])
            return Prepared(index, keys[0], (0, 0), original, extra={"keys": keys, "grids": grids})
        inputs = {s: preprocess(image, "fixed", 1, s)[0] for s in sorted(set(self.sizes))}
        first = inputs[self.sizes[0]]
        extra: dict[str, Any] = {"inputs": inputs}
        if self.refine is not None:
            extra["image"] = image  # the CRF's reference, at the original size
        return Prepared(index, first, (first.shape[1], first.shape[2]), image.shape[:2], extra=extra)

    def features(self, batch: Sequence[Prepared]) -> list[tuple[torch.Tensor, int]]:
        """-> per backbone, the (B, N, D) keys (DINO) or final tokens (DINOv2) of the batch and its grid side."""
        if self.stage == "cuts":
            return [
                (torch.stack([p.extra["keys"][b] for p in batch]).to(self.device), int(g))
                for b, g in enumerate(batch[0].extra["grids"])
            ]
        out = []
        for vit, forward, size in zip(self.vits, self.forwards, self.sizes, strict=True):
            x = torch.stack([p.extra["inputs"][size] for p in batch])
            out.append((forward(x).to(self.device), size // int(vit.patch_embed.proj.kernel_size[0])))
        return out

    def eigenvectors(self, batch: Sequence[Prepared]) -> list[list[np.ndarray]]:
        """-> per backbone, per image, the (g, g) float64 eigenvector u."""
        o = self.options
        out = []
        for feats, g in self.features(batch):
            u = fiedler(binary_cosine_affinity(feats, o.tau, o.eps), o.eigensolver, normalised=True)
            out.append(list(u.cpu().numpy().reshape(len(batch), g, g)))
        return out

    @torch.inference_mode()
    def run(self, batch: Sequence[Prepared]) -> list[Any]:
        o = self.options
        if self.stage == "features":
            feats = self.features(batch)
            grids = [g for _, g in feats]
            return [
                FeatureRecord(
                    {f"keys_{b}": f[i].float().cpu().numpy() for b, (f, _) in enumerate(feats)},
                    {"grids": grids, "original": list(item.original)},
                )
                for i, item in enumerate(batch)
            ]
        eig = self.eigenvectors(batch)
        out: list[Any] = []
        for i, item in enumerate(batch):
            labellings = [kmeans_1d(u[i].ravel(), k).reshape(u[i].shape) for u in eig for k in self.ks]
            voted = vote(proposals(labellings), o.tau_m, o.cluster_iou, o.max_objects)
            out.append(instance_map(voted, item.original, item.extra.get("image"), self.refine))
        return out
