"""The training-free methods' options, declared once: official defaults (each cited), help, ranges and choices.

``unseg predict`` makes its flags from these fields (``cli.options.method_flags``) and the library checks the same
metadata (``config.validate``), so the two cannot drift. Free of torch and numpy on purpose: ``unseg predict
--help`` shows these defaults, and the help must not import torch (tests/test_cli.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ...config import WEIGHTS_METAVAR, option

Geometry = Literal["pad", "resize", "fixed"]
Eigensolver = Literal["exact", "fast"]
Orientation = Literal["official", "symmetric"]
EIGENSOLVERS: tuple[str, ...] = get_args(Eigensolver)
ORIENTATIONS: tuple[str, ...] = get_args(Orientation)

# One help text per option, shared by the methods that take it (each keeps its own default).
_BACKBONE = (
    "DINO or DINOv2 ViT whose features are cut: a known name (dino-vits16, dino-vitb8, dinov2-vits14, "
    "dinov2-vits14-reg, ...; get it with `unseg weights fetch NAME`), the official .pth, a timm file, or timm:NAME. "
    "TokenCut, LOST, MaskCut cut its last-block keys (DINOv2: register tokens dropped); VoteCut takes several, "
    "comma-separated (--backbones is the same option, the spelling for that list), and cuts DINO's keys and "
    "DINOv2's final-LayerNorm patch tokens, as CuVLER."
)
_TAU = "Cosine threshold of the patch graph: pairs above it get weight 1, the others --eps."
_EPS = "Weight of the patch graph's dissimilar pairs."
_EIGENSOLVER = (
    "TokenCut, MaskCut: exact = the official dense generalised eigh on the CPU (O(N^3): slow on large grids), with "
    "DINO's explicit attention, for parity with the official code; fast = batched Lanczos on the device. They agree "
    "up to sign and ~1e-10 except when the 2nd and 3rd eigenvalues (nearly) coincide, where the eigenvector is "
    "ill-defined, or when an entry sits on the partition threshold."
)
_GEOMETRY = (
    "How an image meets the patch grid. pad: the official CorLoc code, full resolution, zero-padded to a patch "
    "multiple (the mask's box equals the official box). resize: TokenCut's saliency code, resized to a patch "
    "multiple and the mask resized back. fixed: MaskCut's --fixed-size square."
)
_FIXED_SIZE = "Side of the square images are resized to with --geometry fixed."


def _tau(default: float, cite: str) -> float:
    return option(default, _TAU, min=-1.0, max=1.0, max_open=True, cite=cite)


def _eps(cite: str) -> float:
    # a weight of dissimilar pairs: 0 would disconnect the graph, 1 would erase the threshold
    return option(1e-5, _EPS, min=0.0, max=1.0, min_open=True, max_open=True, cite=cite)


def _fixed_size(cite: str) -> int:
    return option(480, _FIXED_SIZE, min=8, cite=cite, applies_with=("geometry", "fixed"))


@dataclass(frozen=True)
class TokenCutOptions:
    tau: float = _tau(0.2, "main_tokencut.py --tau 0.2 (README; get_saliency.py the same)")
    eps: float = _eps("object_discovery.py ncut(eps=1e-5)")
    eigensolver: Eigensolver = option("fast", _EIGENSOLVER, cite="unseg; 'exact' = the official dense eigh")
    geometry: Geometry = option("pad", _GEOMETRY, cite="main_tokencut.py pads for CorLoc; get_saliency.py resizes")
    fixed_size: int = _fixed_size("MaskCut's README command --fixed_size 480")
    backbone: str = option(
        "dino-vits16", _BACKBONE, cite="main_tokencut.py --arch vit_small --patch_size 16", metavar=WEIGHTS_METAVAR
    )


@dataclass(frozen=True)
class LostOptions:
    k_patches: int = option(
        100, "LOST: lowest-degree patches the seed may expand over.", min=1, cite="main_lost.py --k_patches 100"
    )
    geometry: Geometry = option("pad", _GEOMETRY, cite="main_lost.py pads the full-resolution image")
    fixed_size: int = _fixed_size("MaskCut's README command --fixed_size 480")
    backbone: str = option(
        "dino-vits16", _BACKBONE, cite="main_lost.py --arch vit_small --patch_size 16", metavar=WEIGHTS_METAVAR
    )


@dataclass(frozen=True)
class MaskCutOptions:
    tau: float = _tau(0.15, "CutLER README command: --tau 0.15")
    eps: float = _eps("maskcut.py get_affinity_matrix(eps=1e-5)")
    # at most 255 objects: one byte per label in the instance PNG
    max_objects: int = option(
        3, "MaskCut: cuts per image, so the most objects one instance mask holds.", min=1, max=255,
        cite="CutLER README command: --N 3",
    )  # fmt: skip
    max_iou: float = option(
        0.5, "MaskCut: drop a new mask whose IoU with the previous one is higher.", min=0.0, max=1.0,
        cite="maskcut_forward: IoU > 0.5 against the previous mask",
    )  # fmt: skip
    min_fraction: float = option(
        0.01, "MaskCut: drop a mask covering at most this fraction of the patch grid.", min=0.0, max=1.0,
        cite="maskcut_forward: a mask covering <= 1% of the grid",
    )  # fmt: skip
    stop_score: float = option(
        0.0, "MaskCut, adaptive object count: stop at the first cut whose score (1 - its normalised-cut value on "
        "the graph it was cut from) is below this, instead of always making --max-objects cuts. 0 = never stop "
        "early (the official behaviour).", min=0.0, max=1.0,
        cite="unseg; the official code always makes N cuts (CutLER maskcut.py --N)",
    )  # fmt: skip
    orientation: Orientation = option(
        "official",
        "MaskCut: which side of the cut is the object. official: CutLER's rule, which tests the corners only under "
        "one eigenvector sign (with --eigensolver exact that sign is LAPACK's, exactly as in the official code; the "
        "fast solver makes the largest-|v| entry positive, and under that sign official equals symmetric). "
        "symmetric: the side touching >= 3 grid corners is background whatever the sign.",
        cite="maskcut.py check_num_fg_corners",
    )
    eigensolver: Eigensolver = option("fast", _EIGENSOLVER, cite="unseg; 'exact' = the official dense eigh")
    geometry: Geometry = option("fixed", _GEOMETRY, cite="maskcut(): LANCZOS resize to fixed_size x fixed_size")
    fixed_size: int = _fixed_size("CutLER README command: --fixed_size 480")
    backbone: str = option(
        "dino-vitb8", _BACKBONE, cite="CutLER README command: --vit-arch base --patch-size 8", metavar=WEIGHTS_METAVAR
    )


@dataclass(frozen=True)
class VoteCutOptions:
    backbone: str = option(
        "dino-vits16,dinov2-vitb14,dinov2-vits14,dino-vitb16,dino-vits8-300ep,dino-vitb8",
        _BACKBONE,
        cite="CuVLER extract_eig_vecs.py --models dino_s16 dinov2_b14 dinov2_s14 dino_b16 dino_s8 dino_b8",
        metavar=WEIGHTS_METAVAR,
        aliases=("--backbones",),
    )
    tau: float = _tau(0.15, "CuVLER extract_eig_vecs.py ncut(features, tau=0.15)")
    eps: float = _eps("CuVLER votecut/ncut.py ncut(eps=1e-5)")
    ks: str = option(
        "2,3", "VoteCut: the k-means cluster counts run on each backbone's eigenvector, comma-separated.",
        cite="CuVLER create_pseudo_masks.py --Ks (2, 3)", metavar="K,K",
    )  # fmt: skip
    tau_m: float = option(
        0.2, "VoteCut: a patch is in a voted mask when more than this share of its cluster's proposals hold it.",
        min=0.0, max=1.0, max_open=True, cite="CuVLER create_pseudo_masks.py --tau-m 0.2",
    )  # fmt: skip
    cluster_iou: float = option(
        0.6, "VoteCut: proposals whose IoU is above this vote for the same object.", min=0.0, max=1.0,
        max_open=True, cite="CuVLER votecut.py cluster_mask_by_iou(threshold=0.6)",
    )  # fmt: skip
    max_objects: int = option(
        10, "VoteCut: the most objects one instance mask holds.", min=1, max=255,
        cite="CuVLER votecut.py iou_clustering(max_masks_per_img=10)",
    )  # fmt: skip
    eigensolver: Eigensolver = option(
        "fast", "VoteCut: exact = the official dense eigh of the normalised Laplacian on the CPU (O(N^3)); fast = "
        "batched Lanczos on the device (agree up to sign, which k-means ignores, and ~1e-10).",
        cite="unseg; 'exact' = CuVLER votecut/ncut.py torch.linalg.eigh",
    )  # fmt: skip
    fixed_size: int = option(
        480, "VoteCut: side of the square every image is resized to, rounded down to a patch multiple per backbone "
        "(480 for DINO, 476 for DINOv2).", min=14,
        cite="CuVLER extract_eig_vecs.py ImagesDataset resize (480, 480); (476, 476) for dinov2",
    )  # fmt: skip
