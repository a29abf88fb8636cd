"""The training-free methods' options, with the official defaults (each cited), and their checks.

Free of torch and numpy on purpose: ``unseg predict --help`` shows these defaults, and the help must
not import torch (tests/test_cli.py).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal, get_args

from ..errors import UsageError

MethodName = Literal["tokencut", "lost", "maskcut"]
Geometry = Literal["pad", "resize", "fixed"]
Eigensolver = Literal["exact", "fast"]
Orientation = Literal["official", "symmetric"]
GEOMETRIES: tuple[str, ...] = get_args(Geometry)
EIGENSOLVERS: tuple[str, ...] = get_args(Eigensolver)
ORIENTATIONS: tuple[str, ...] = get_args(Orientation)


@dataclass(frozen=True)
class TokenCutOptions:
    tau: float = 0.2  # main_tokencut.py --tau 0.2 (README; get_saliency.py the same)
    eps: float = 1e-5  # object_discovery.py ncut(eps=1e-5): weight of dissimilar pairs
    eigensolver: str = "fast"  # "exact" = the official dense generalised eigh
    geometry: str = "pad"  # main_tokencut.py (CorLoc) pads; the saliency script resizes ("resize")
    fixed_size: int = 480  # only for geometry "fixed"
    backbone: str = "dino-vits16"  # main_tokencut.py --arch vit_small --patch_size 16


@dataclass(frozen=True)
class LostOptions:
    k_patches: int = 100  # main_lost.py --k_patches 100: candidates for the seed expansion
    geometry: str = "pad"  # main_lost.py pads the full-resolution image
    fixed_size: int = 480  # only for geometry "fixed"
    backbone: str = "dino-vits16"  # main_lost.py --arch vit_small --patch_size 16


@dataclass(frozen=True)
class MaskCutOptions:
    tau: float = 0.15  # CutLER README command: --tau 0.15
    eps: float = 1e-5  # maskcut.py get_affinity_matrix(eps=1e-5)
    max_objects: int = 3  # README command: --N 3
    max_iou: float = 0.5  # maskcut_forward: drop a mask with IoU > 0.5 against the previous one
    min_fraction: float = 0.01  # maskcut_forward: drop a mask covering <= 1% of the patch grid
    orientation: str = "official"  # check_num_fg_corners rule; "symmetric" = sign-invariant variant
    eigensolver: str = "fast"
    geometry: str = "fixed"  # maskcut(): LANCZOS resize to fixed_size x fixed_size
    fixed_size: int = 480  # README command: --fixed_size 480
    backbone: str = "dino-vitb8"  # README command: --vit-arch base --patch-size 8


OPTIONS: dict[str, type] = {"tokencut": TokenCutOptions, "lost": LostOptions, "maskcut": MaskCutOptions}
# what each method writes (MaskPredictor.kind): one object as a 0/1 mask, or an instance label map
KINDS: dict[str, Literal["soft", "instances"]] = {"tokencut": "soft", "lost": "soft", "maskcut": "instances"}


def option_names(method: str) -> list[str]:
    """The option names ``method`` takes, in declaration order."""
    return [f.name for f in fields(OPTIONS[method])]


def method_options(method: str, **overrides: Any) -> Any:
    """The method's options with the official defaults, ``overrides`` (None = keep default) applied
    and checked. Unknown option names are an error naming the method's options."""
    if method not in OPTIONS:
        raise UsageError(f"unknown method {method!r}: choose one of {', '.join(OPTIONS)}")
    names = option_names(method)
    unknown = sorted(k for k, v in overrides.items() if v is not None and k not in names)
    if unknown:
        raise UsageError(f"method {method} has no option {', '.join(unknown)}; its options: {', '.join(sorted(names))}")
    opts = replace(OPTIONS[method](), **{k: v for k, v in overrides.items() if v is not None})
    validate_options(opts)
    return opts


def check_geometry(geometry: str, fixed_size: int) -> None:
    if geometry not in GEOMETRIES:
        raise UsageError(f"geometry must be one of {', '.join(GEOMETRIES)}, not {geometry!r}")
    if fixed_size < 1:
        raise UsageError(f"fixed_size must be positive, not {fixed_size}")


def validate_options(opts: Any) -> None:
    check_geometry(opts.geometry, opts.fixed_size)
    if getattr(opts, "eigensolver", "fast") not in EIGENSOLVERS:
        raise UsageError(f"eigensolver must be one of {', '.join(EIGENSOLVERS)}, not {opts.eigensolver!r}")
    if getattr(opts, "orientation", "official") not in ORIENTATIONS:
        raise UsageError(f"orientation must be one of {', '.join(ORIENTATIONS)}, not {opts.orientation!r}")
    if hasattr(opts, "tau") and not -1.0 <= opts.tau < 1.0:
        raise UsageError(f"tau is a cosine threshold in [-1, 1), not {opts.tau}")
    if hasattr(opts, "eps") and not 0.0 < opts.eps < 1.0:
        raise UsageError(f"eps must be in (0, 1), not {opts.eps}")
    for name in ("k_patches", "max_objects"):
        if hasattr(opts, name) and getattr(opts, name) < 1:
            raise UsageError(f"{name} must be at least 1, not {getattr(opts, name)}")
    if hasattr(opts, "max_objects") and opts.max_objects > 255:
        raise UsageError(f"max_objects must be at most 255 (one byte per label), not {opts.max_objects}")
    for name in ("max_iou", "min_fraction"):
        if hasattr(opts, name) and not 0.0 <= getattr(opts, name) <= 1.0:
            raise UsageError(f"{name} is a fraction in [0, 1], not {getattr(opts, name)}")
