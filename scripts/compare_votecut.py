"""Run `unseg predict --method votecut` and the official CuVLER VoteCut code side by side on the same features.

The official code is imported from a CuVLER checkout outside this repository (``--official``); nothing of it is
copied here. Both sides get the same per-backbone features of each image: the tensors that ``unseg predict
--save-features`` would store (``--features vit``: DINO keys / DINOv2 final tokens of the given or tiny random
backbones) or features with a planted foreground/background structure (``--features planted``). Then:

- official: ``votecut.ncut.ncut`` (its eigenvector and eigenvalues) and ``votecut.votecut.votecut`` (k-means,
  proposals, IoU vote) with the CRF switched off, scores ``cluster_size / max`` as ``utils/annotaions_worker.py``;
- ours: the cuts stage of ``VoteCutPredictor`` (the one `unseg predict --from-features` runs) on the same tensors.

Per image it prints whether the masks and the scores are equal, each backbone's relative eigengap
(λ3 - λ2) / λ3 of the normalised Laplacian (λ1 = 0 <= λ2 <= λ3, official ``ncut(eig_vecs=2)``) and, for a miss,
the first stage that differs: ``eigvec`` (our eigenvector is not the official one), ``kmeans`` (our k-means
partitions the official eigenvector otherwise than scikit-learn), ``order`` (the same proposals, and the official vote
itself changes when they are permuted: ties in the vote counts, whose order the official code leaves to numpy's
unstable argsort, decide it; ``ours_among_official_orders`` says whether ours is one of those answers) or ``vote``
(a real difference). A miss whose backbones all have a gap >= --min-gap and that is not an ``order`` tie is a
defect: the exit code is then 1.

``--crf`` compares the optional CRF instead (`unseg predict --method votecut --refine crf`): our vote of each
image (as above) gives the 60 x 60 voted masks, and both sides refine the same masks on the same RGB image: the
official ``mask_post_processing`` (nearest upsampling, crop, CutLER's ``densecrf`` through the real pydensecrf,
holes filled, the empty / box-IoU gates) and ours (``votecut.full_masks`` with ``RefineOptions("crf")``). Per
image it prints how many refined masks are equal, how many pixels differ, how many the official code kept raw
(``crf_success`` False), and whether the instance maps agree (the official masks painted by our overlap rule);
any difference is a defect (exit code 1). It needs the ``crf`` extra (pydensecrf2) installed.

The official code needs scikit-learn, OpenCV and torchvision (and imports pydensecrf, stubbed when missing
without ``--crf``: the CRF is not run). Keep them out of the project's environment, e.g.:

    git clone https://github.com/shahaf-arica/CuVLER /tmp/CuVLER
    python -m pip install --target /tmp/cuvler-site --no-deps scikit-learn joblib threadpoolctl narwhals cloudpickle
    PYTHONPATH=.:/tmp/cuvler-site python scripts/compare_votecut.py --official /tmp/CuVLER --features planted
    PYTHONPATH=.:/tmp/cuvler-site python scripts/compare_votecut.py --official /tmp/CuVLER --features vit
    PYTHONPATH=.:/tmp/cuvler-site python scripts/compare_votecut.py --official /tmp/CuVLER --features vit --crf

(CPU, seconds per image at the default --fixed-size 224 with three tiny random backbones.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from unsegcli.io.features import FeatureRecord  # noqa: E402
from unsegcli.methods import method_options  # noqa: E402
from unsegcli.methods.spectral.core import binary_cosine_affinity, fiedler  # noqa: E402
from unsegcli.methods.spectral.votecut import (  # noqa: E402
    VoteCutPredictor,
    full_masks,
    instance_map,
    kmeans_1d,
    parse_ks,
    proposals,
    vote,
)
from unsegcli.refine import RefineOptions  # noqa: E402
from unsegcli.synth import generate  # noqa: E402

MIN_GAP = 1e-3  # default --min-gap: below it the 2nd eigenvector is taken as not unique (see docs/parity.md)


class NoCrf(Exception):
    """Raised in place of the official densecrf: its caller then keeps the raw upsampled vote (crf_success False)."""


def import_official(root: Path, crf: bool = False) -> types.SimpleNamespace:
    """The official functions, from the checkout at ``root``. Without ``crf`` its densecrf is switched off (and
    pydensecrf stubbed if absent); with ``crf`` the real pydensecrf must be installed."""
    try:
        import pydensecrf.densecrf
        import pydensecrf.utils  # noqa: F401
    except ImportError:
        if crf:
            sys.exit("--crf needs pydensecrf (pip install 'unseg[crf]')")
        stub = types.ModuleType("pydensecrf")
        stub.densecrf = types.ModuleType("pydensecrf.densecrf")  # type: ignore[attr-defined]
        stub.utils = types.ModuleType("pydensecrf.utils")  # type: ignore[attr-defined]
        sys.modules.update({"pydensecrf": stub, "pydensecrf.densecrf": stub.densecrf, "pydensecrf.utils": stub.utils})
    sys.path.insert(0, str(root))
    import votecut.votecut as vc  # the official package, from the checkout
    from votecut.ncut import ncut

    def no_crf(*_: object) -> None:
        raise NoCrf

    if not crf:
        vc.densecrf = no_crf
    return types.SimpleNamespace(ncut=ncut, votecut=vc.votecut, kmeans=vc.kmeans_labeling, vc=vc)


def random_backbones(folder: Path, seed: int) -> list[Path]:
    """Three tiny random ViTs in the official layouts: DINO /16, DINO /8, DINOv2 /14 (the tests' helpers)."""
    from tests.helpers import save_dino_backbone
    from tests.methods.spectral.files import save_dinov2

    return [
        save_dino_backbone(folder / "dino16.pth", patch_size=16, seed=seed),
        save_dino_backbone(folder / "dino8.pth", patch_size=8, seed=seed + 1),
        save_dinov2(folder / "dinov2.pth", seed=seed + 2),
    ]


def planted_features(mask: np.ndarray, grids: list[int], noise: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Per grid, (g², 32) float32 features: a patch's class (foreground when most of its pixels are) picks one of
    two random unit directions, plus Gaussian noise of norm ~``noise``: a two-block graph with a clear gap."""
    out = []
    for g in grids:
        share = np.asarray(Image.fromarray(mask).resize((g, g), Image.BILINEAR), np.float32) / 255
        cls = (share > 0.5).ravel().astype(int)
        dirs = rng.normal(size=(2, 32))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        out.append((dirs[cls] + noise * rng.normal(size=(g * g, 32)) / np.sqrt(32)).astype(np.float32))
    return out


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two labellings split the patches alike, whatever the label numbers."""
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    return len(pairs) == len(set(a.ravel().tolist())) == len(set(b.ravel().tolist()))


def as_set(masks: list[tuple[np.ndarray, float]]) -> list[tuple[bytes, float]]:
    return sorted((np.ascontiguousarray(m, bool).tobytes(), float(s)) for m, s in masks)


def paint(masks: list[np.ndarray], shape: tuple[int, int]) -> list[np.ndarray]:
    """Masks (in order) -> each object's pixels in one instance map, the smaller mask on top where two overlap
    (our documented rule for the official output's overlapping masks)."""
    labels = np.zeros(shape, np.int32)
    for k in sorted(range(len(masks)), key=lambda k: -int(masks[k].sum())):
        labels[masks[k]] = k + 1
    return [labels == k + 1 for k in range(len(masks))]


def official_vote(off: types.SimpleNamespace, eig: list[np.ndarray], ks: tuple[int, ...], tau_m: float, size):
    """The official votecut() on per-backbone (g, g) eigenvectors -> [(full-size mask, 60x60 mask, size)]."""
    groups = {f"b{i}": {"eigenvectors": u[None]} for i, u in enumerate(eig)}
    image = Image.new("RGB", (size[1], size[0]))  # only its size is read without the CRF
    out = off.votecut(image, groups, Ks=ks, tau_m=tau_m)
    return [(m["mask"] > 0, m["bit_mask"] > 0, int(m["cluster_size"])) for m in out]


def permutations(n: int, count: int = 16) -> list[np.ndarray]:
    """The identity, the reverse and ``count`` seeded shuffles of range(n)."""
    rng = np.random.default_rng(0)
    return [np.arange(n), np.arange(n)[::-1]] + [rng.permutation(n) for _ in range(count)]


def official_clusters(off, props: list[np.ndarray], o) -> list[tuple[bytes, float]]:
    """The official IoU clustering and pixel vote (iou_clustering without its CRF step) -> (60 x 60 mask, size) set."""
    grid = np.array(off.vc.resize_masks([p.astype(np.float64) for p in props], shape=(60, 60)))
    clusters = off.vc.cluster_mask_by_iou(grid, threshold=o.cluster_iou)[: o.max_objects]
    return as_set([(grid[c["segment_cluster_indices"]].mean(0) > o.tau_m, c["cluster_size"]) for c in clusters])


def compare_image(off, feats: list[np.ndarray], grids: list[int], size, args) -> dict:
    o = method_options("votecut", tau=args.tau, eigensolver=args.eigensolver)
    ks = parse_ks(o.ks)
    row: dict = {"gaps": [], "eig_cos": [], "stage": "equal"}
    u_off, u_ours = [], []
    for f, g in zip(feats, grids, strict=True):
        vec, val = off.ncut(torch.from_numpy(f)[None], tau=o.tau, eig_vecs=2)
        lam2, lam3 = float(val[0, 0]), float(val[0, 1])
        row["gaps"].append((lam3 - lam2) / lam3 if lam3 > 0 else 0.0)
        uo = vec[0, :, 0].numpy()
        ut = fiedler(binary_cosine_affinity(torch.from_numpy(f)[None], o.tau, o.eps), o.eigensolver, True)[0].numpy()
        row["eig_cos"].append(float(abs(uo @ ut)))
        u_off.append(uo.reshape(g, g))
        u_ours.append(ut.reshape(g, g))
    predictor = VoteCutPredictor("votecut", o, stage="cuts")
    record = FeatureRecord({f"keys_{b}": f for b, f in enumerate(feats)}, {"grids": grids, "original": list(size)})
    labels, scores = predictor.run([predictor.prepare(0, record)])[0]
    try:
        official = official_vote(off, u_off, ks, o.tau_m, size)
    except Exception as e:  # noqa: BLE001 - the official code raises on no proposal or an empty vote
        row.update(stage="official error", error=f"{type(e).__name__}: {e}")
        groups = {f"b{i}": {"eigenvectors": u[None]} for i, u in enumerate(u_off)}
        if not scores and not off.vc.instances_from_semantic_labels([d["labels"] for d in off.kmeans(groups, ks)]):
            # no proposal: the official code raises and skips the image (no annotation); ours writes no object
            row.update(stage="equal (no proposal)", equal=True, masks_equal=True, scores_equal=True, objects=(0, 0))
        return row
    top = max((s for _, _, s in official), default=1)
    theirs = list(zip(paint([m for m, _, _ in official], size), [s / top for _, _, s in official], strict=True))
    ours = [(labels == k, scores[k]) for k in sorted(scores)]
    row["objects"] = (len(ours), len(theirs))
    row["masks_equal"] = sorted(m for m, _ in as_set(ours)) == sorted(m for m, _ in as_set(theirs))
    row["scores_equal"] = sorted(s for _, s in ours) == sorted(s for _, s in theirs)
    row["equal"] = as_set(ours) == as_set(theirs)
    if row["equal"]:
        return row
    # the first stage that differs
    ours_lab = [kmeans_1d(u.ravel(), k).reshape(u.shape) for u in u_ours for k in ks]
    off_lab = [d["labels"] for d in off.kmeans({f"b{i}": {"eigenvectors": u[None]} for i, u in enumerate(u_off)}, ks)]
    on_off = [kmeans_1d(u.ravel(), k).reshape(u.shape) for u in u_off for k in ks]
    if not all(same_partition(a, b) for a, b in zip(on_off, off_lab, strict=True)):
        row["stage"] = "kmeans"
    elif not all(same_partition(a, b) for a, b in zip(ours_lab, off_lab, strict=True)):
        row["stage"] = "eigvec"
    else:
        ours_props = proposals(ours_lab)
        off_props = off.vc.instances_from_semantic_labels(off_lab)
        same_props = as_set([(p, 0) for p in ours_props]) == as_set([(p > 0, 0) for p in off_props])
        # the official vote on permutations of the same proposals: if its result changes, ties in the vote counts
        # decide it (the official np.argsort leaves their order to the CPU's sort), and ours is one of its answers
        mine = as_set(vote(ours_props, o.tau_m, o.cluster_iou, o.max_objects))
        answers = [official_clusters(off, [off_props[i] for i in perm], o) for perm in permutations(len(off_props))]
        order_dependent = any(a != answers[0] for a in answers)
        row["ours_among_official_orders"] = mine in answers
        row["stage"] = "order" if same_props and order_dependent else "vote"
    return row


def compare_crf(off, feats: list[np.ndarray], grids: list[int], image: np.ndarray, args) -> dict:
    """Our vote's masks refined by the official mask_post_processing and by ours, on the same image."""
    o = method_options("votecut", tau=args.tau, eigensolver=args.eigensolver)
    size = image.shape[:2]
    predictor = VoteCutPredictor("votecut", o, stage="cuts")
    record = FeatureRecord({f"keys_{b}": f for b, f in enumerate(feats)}, {"grids": grids, "original": list(size)})
    eig = predictor.eigenvectors([predictor.prepare(0, record)])
    labellings = [kmeans_1d(u[0].ravel(), k).reshape(u[0].shape) for u in eig for k in predictor.ks]
    voted = vote(proposals(labellings), o.tau_m, o.cluster_iou, o.max_objects)
    row: dict = {"masks": len(voted), "equal_masks": 0, "diff_px": [], "official_raw": 0, "ours_raw": 0}
    if not voted:
        row["map_equal"] = True
        return row
    crf = RefineOptions(method="crf")
    grid = [m for m, _ in voted]
    raw = full_masks(grid, size)
    ours = full_masks(grid, size, image, crf)
    theirs = []
    for m, r, mine in zip(grid, raw, ours, strict=True):
        final, success = off.vc.mask_post_processing(m.astype(np.uint8), Image.fromarray(image))
        final = np.asarray(final) > 0
        theirs.append(final)
        row["official_raw"] += not success
        row["ours_raw"] += bool(np.array_equal(mine, r))
        row["diff_px"].append(int(np.count_nonzero(final != mine)))
        row["equal_masks"] += row["diff_px"][-1] == 0
    labels, _ = instance_map(voted, size, image, crf)
    row["map_equal"] = all(np.array_equal(labels == k + 1, t) for k, t in enumerate(paint(theirs, size)))
    return row


def report_crf(rows: list[dict]) -> int:
    """The --crf summary; 1 when any mask or map differs."""
    masks = sum(r["masks"] for r in rows)
    equal = sum(r["equal_masks"] for r in rows)
    maps = sum(r["map_equal"] for r in rows)
    print(
        f"CRF: {equal}/{masks} refined masks equal on {len(rows)} images (official kept raw: "
        f"{sum(r['official_raw'] for r in rows)}, ours raw: {sum(r['ours_raw'] for r in rows)}); "
        f"instance maps equal on {maps}/{len(rows)}"
    )
    return 0 if equal == masks and maps == len(rows) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="a CuVLER checkout (github.com/shahaf-arica/CuVLER)")
    ap.add_argument("--features", choices=("vit", "planted"), default="vit")
    ap.add_argument("--images", type=Path, help="a folder of images (default: `unseg synth` images)")
    ap.add_argument("--n", type=int, default=12, help="generated images (without --images)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=96, help="side of the generated images")
    ap.add_argument("--backbones", default="", help="comma-separated backbones (default: three tiny random ViTs)")
    ap.add_argument("--fixed-size", type=int, default=224, help="VoteCut's square input (official: 480)")
    ap.add_argument("--grids", default="14,28,16", help="planted features: grid sides per backbone")
    ap.add_argument("--noise", type=float, default=0.6, help="planted features: noise norm")
    ap.add_argument("--tau", type=float, default=0.15)
    ap.add_argument("--eigensolver", choices=("fast", "exact"), default="fast")
    ap.add_argument("--min-gap", type=float, default=MIN_GAP, help="relative eigengap below which a miss is excused")
    ap.add_argument("--crf", action="store_true", help="compare the optional CRF on our voted masks")
    ap.add_argument("--json", type=Path, help="write the per-image rows here")
    args = ap.parse_args()
    off = import_official(args.official.resolve(), crf=args.crf)

    if args.images:
        files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
        samples = [(p.name, np.asarray(Image.open(p).convert("RGB")), None) for p in files]
    else:
        samples = [
            (f"synth_{i}", s.image, s.mask)
            for i, s in enumerate(generate(args.seed, i, args.size) for i in range(args.n))
        ]
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        backbones = args.backbones.split(",") if args.backbones else random_backbones(Path(tmp), args.seed)
        extractor = None
        if args.features == "vit":
            opts = method_options("votecut", fixed_size=args.fixed_size)
            extractor = VoteCutPredictor("votecut", opts, backbone=backbones, stage="features")
        rows = []
        for i, (name, image, mask) in enumerate(samples):
            if extractor is not None:
                rec = extractor.run([extractor.prepare(i, image)])[0]
                grids = [int(g) for g in rec.geometry["grids"]]
                feats = [rec.tensors[f"keys_{b}"] for b in range(len(grids))]
            else:
                if mask is None:
                    sys.exit("--features planted needs generated images (their masks), not --images")
                grids = [int(g) for g in args.grids.split(",")]
                feats = planted_features(mask, grids, args.noise, rng)
            if args.crf:
                row = {"image": name, **compare_crf(off, feats, grids, image, args)}
                rows.append(row)
                print(
                    f"{name}: {row['equal_masks']}/{row['masks']} refined masks equal, pixels differing "
                    f"{row['diff_px']}, official kept raw {row['official_raw']}, ours raw {row['ours_raw']}, "
                    f"instance map equal {row['map_equal']}",
                    flush=True,
                )
                continue
            row = {"image": name, **compare_image(off, feats, grids, image.shape[:2], args)}
            row["clear"] = min(row["gaps"]) >= args.min_gap
            rows.append(row)
            gaps = " ".join(f"{g:.1e}" for g in row["gaps"])
            cos = " ".join(f"{c:.6f}" for c in row["eig_cos"])
            stage = row["stage"]
            if stage == "order":
                stage += f" (ours among the official orders' answers: {row['ours_among_official_orders']})"
            if "error" in row:
                stage += f" ({row['error']})"
            print(
                f"{name}: {'EQUAL' if row.get('equal') else 'differs'} masks={row.get('masks_equal')} "
                f"scores={row.get('scores_equal')} objects(ours, official)={row.get('objects')} "
                f"stage={stage} gaps={gaps} |cos(u)|={cos}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    if args.crf:
        return report_crf(rows)
    equal = sum(bool(r.get("equal")) for r in rows)
    bad = [r["image"] for r in rows if not r.get("equal") and r["clear"] and r["stage"] != "order"]
    clear = [r for r in rows if r["clear"]]
    print(
        f"{args.features} features: {equal}/{len(rows)} images equal (masks and scores); "
        f"{sum(bool(r.get('equal')) for r in clear)}/{len(clear)} of those whose every backbone has a relative "
        f"eigengap >= {args.min_gap:g}; misses at a clear gap that are not tie-order: {bad or 'none'}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
