"""Typed configuration: the one home of defaults and of the named model shapes (``PRESETS``).

Every constant is cited: MOVE = Bielski & Favaro, NeurIPS 2022 (paper, supplementary D) and the
official code (github adambielski/move-seg).
"""

from __future__ import annotations

import math
import os
import types
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .errors import UsageError, param

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # official infer.py / DINO normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)

# Worker processes for decoding/reading, unless told otherwise: a few, never more than the machine has.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)

# autocast precision names; runtime.AUTOCAST_DTYPES maps them to torch dtypes
Precision = Literal["fp32", "bf16", "fp16"]
# what runs a model's inference forward (model.forward.inference_forward): torch, or OpenVINO (the openvino extra)
Engine = Literal["torch", "openvino"]
# how position embeddings meet a grid other than the native one (model.backbone.POS_RULES)
PosEmbedRule = Literal["dino", "timm", "size", "size-antialias"]


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a JSON-ish ``value`` (lists for tuples) fits the annotation ``hint``."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return value in args
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args, strict=True))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type) and is_dataclass(hint):  # a nested config: its own from_dict checks its fields
        return isinstance(value, dict) or isinstance(value, hint)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # nested configs and other annotations: their own from_dict checks them


def checked_fields(cls: Any, data: Any) -> dict[str, Any]:
    """A stored config mapping -> keyword arguments for the dataclass ``cls``; raises UsageError naming
    the field for a non-mapping, an unknown field or a value of the wrong type (a checkpoint from another
    version, a hand-edited file). Lists become tuples."""
    if not isinstance(data, dict):
        raise UsageError(f"{cls.__name__} must be a mapping, not {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    for k, v in data.items():
        if not _type_ok(v, hints[k]):
            raise UsageError(f"{cls.__name__}.{k} = {v!r} is not a valid {_type_name(hints[k])}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


# The metavar of a method option that names a weights file (a known name or a path; several comma-separated):
# prediction settings tags record such files by content (``io.outputs.weights_identity``), not by name.
WEIGHTS_METAVAR = "NAME|PATH"


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    min: float | None = None,
    max: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
    cite: str | None = None,
    metavar: str | None = None,
    applies_with: tuple[str, Any] | None = None,
    aliases: tuple[str, ...] = (),
) -> Any:
    """A method option declared once: a dataclass field whose metadata the CLI turns into a flag (``--name``
    with dashes, or ``flag``; its help, range and ``Literal`` choices) and ``validate`` checks in the library.
    ``cite``: where the default comes from (official code or paper), shown in ``--help``. ``applies_with``:
    (other option, value) that this one only matters under; giving it otherwise is an error (``given_apply``).
    ``aliases``: other spellings of the flag (``--backbones`` for VoteCut's list), the same option underneath."""
    meta = {"help": help, "flag": flag, "min": min, "max": max, "min_open": min_open, "max_open": max_open}
    more = {"cite": cite, "metavar": metavar, "applies_with": applies_with, "aliases": aliases}
    return field(default=default, metadata={**meta, **more})


def given_apply(opts: Any, given: Any) -> None:
    """Refuse an option in ``given`` (names) whose ``applies_with`` condition ``opts`` does not meet: it would be
    silently ignored. UsageError naming both parameters."""
    for f in fields(opts):
        cond = f.metadata.get("applies_with")
        if f.name in given and cond is not None and getattr(opts, cond[0]) != cond[1]:
            other, value = param(cond[0]), getattr(opts, cond[0])
            raise UsageError(f"{param(f.name)} applies with {other} {cond[1]}, not {other} {value}")


def literal_choices(hint: Any) -> tuple[Any, ...]:
    """The values of a ``Literal`` annotation (also inside ``X | None``); () for other annotations."""
    if get_origin(hint) is Literal:
        return get_args(hint)
    if get_origin(hint) in (Union, types.UnionType):
        return tuple(v for a in get_args(hint) for v in literal_choices(a))
    return ()


def interval(meta: Any) -> str:
    """``[lo, hi)`` and the like, from an option's metadata."""
    lo, hi = meta.get("min"), meta.get("max")
    left = "-inf" if lo is None else f"{lo:g}"
    right = "inf" if hi is None else f"{hi:g}"
    opening = "(" if meta.get("min_open") or lo is None else "["
    closing = ")" if meta.get("max_open") or hi is None else "]"
    return f"{opening}{left}, {right}{closing}"


def check_option(name: str, value: Any, meta: Any, choices: tuple[Any, ...] = ()) -> None:
    """One option's value against its metadata (``option``) and its ``Literal`` choices; UsageError naming it."""
    if value is None:
        return
    if choices and value not in choices:
        raise UsageError(f"{param(name)} must be one of {', '.join(map(str, choices))}, not {value!r}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is None and hi is None:
        return
    below = lo is not None and (value < lo or (meta.get("min_open") and value == lo))
    above = hi is not None and (value > hi or (meta.get("max_open") and value == hi))
    if below or above or (isinstance(value, float) and not math.isfinite(value)):
        raise UsageError(f"{param(name)} must be in {interval(meta)}, not {value}")


def validate(opts: Any) -> None:
    """Check an options dataclass against its fields' metadata (``option``): ``Literal`` choices and ranges.
    Raises UsageError naming the parameter, which the CLI says as its flag."""
    hints = get_type_hints(type(opts))
    for f in fields(opts):
        check_option(f.name, getattr(opts, f.name), f.metadata, literal_choices(hints[f.name]))


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _from_dict(cls, data: dict[str, Any]):
    return cls(**checked_fields(cls, data))


@dataclass(frozen=True)
class BackboneConfig:
    """A timm VisionTransformer. Defaults: DINO ViT-S/8 (384-d, 12 blocks, 6 heads, patch 8)."""

    timm_name: str = "vit_small_patch8_224.dino"
    patch_size: int = 8
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    img_size: int = 224  # size the position embeddings were trained at (28x28 grid for S/8)
    # Block whose output feeds the head; -2 = penultimate (official arg extractor_block_layer -2).
    block_index: int = -2
    # Position-embedding resampling for non-224 inputs: "dino" reproduces DINO's
    # interpolate_pos_encoding (bicubic, scale (n + 0.1) / sqrt(N)); "timm" resamples to the exact grid.
    pos_embed: PosEmbedRule = "dino"

    @property
    def feature_block(self) -> int:
        return self.block_index if self.block_index >= 0 else self.depth + self.block_index


@dataclass(frozen=True)
class HeadConfig:
    """MOVE's conv upsampling head ("conv_minc128", supplementary D).

    Widths follow the official rule max(min_channels, int(embed_dim * 0.5 ** (i + 1))) for
    log2(patch) upsampling blocks plus one block without upsampling.
    """

    widths: tuple[int, ...] = (192, 128, 128, 128)
    upsampling_blocks: int = 3

    @staticmethod
    def for_backbone(embed_dim: int, patch_size: int, min_channels: int = 128, width_mult: float = 0.5) -> HeadConfig:
        n_up = patch_size.bit_length() - 1
        if 1 << n_up != patch_size:
            raise ValueError(f"patch size {patch_size} is not a power of two")
        widths = tuple(max(min_channels, int(embed_dim * width_mult ** (i + 1))) for i in range(n_up + 1))
        return HeadConfig(widths=widths, upsampling_blocks=n_up)


@dataclass(frozen=True)
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        kw = checked_fields(cls, data)
        missing = {"backbone", "head"} - set(kw)
        if missing:
            raise UsageError(f"ModelConfig lacks {', '.join(sorted(missing))}")
        return cls(backbone=_from_dict(BackboneConfig, kw["backbone"]), head=_from_dict(HeadConfig, kw["head"]))

    @classmethod
    def tiny(
        cls,
        embed_dim: int = 32,
        depth: int = 2,
        num_heads: int = 2,
        patch_size: int = 8,
        min_channels: int = 8,
        pos_embed: PosEmbedRule = "dino",
        img_size: int = 64,
    ) -> ModelConfig:
        """A small random model of the same architecture, for tests and the demo checkpoint."""
        backbone = BackboneConfig(
            timm_name="",
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            img_size=img_size,
            pos_embed=pos_embed,
        )
        return cls(backbone=backbone, head=HeadConfig.for_backbone(embed_dim, patch_size, min_channels=min_channels))


def _dino(timm_name: str, patch_size: int, embed_dim: int, num_heads: int) -> ModelConfig:
    """A DINO ViT (12 blocks) with MOVE's conv_minc128 head."""
    backbone = BackboneConfig(timm_name, patch_size, embed_dim, 12, num_heads)
    return ModelConfig(backbone=backbone, head=HeadConfig.for_backbone(embed_dim, patch_size))


PresetName = Literal["vits8", "vits16", "vitb8", "vitb16", "demo", "tiny"]

# The one name -> ModelConfig table (for `unseg train --arch`, the official import and tests).
# DINO shapes: facebookresearch/dino vision_transformer.py vit_small (384-d, 6 heads) / vit_base (768-d, 12 heads).
PRESETS: dict[PresetName, ModelConfig] = {
    "vits8": _dino("vit_small_patch8_224.dino", 8, 384, 6),  # MOVE's model: DINO ViT-S/8 + conv_minc128
    "vits16": _dino("vit_small_patch16_224.dino", 16, 384, 6),
    "vitb8": _dino("vit_base_patch8_224.dino", 8, 768, 12),
    "vitb16": _dino("vit_base_patch16_224.dino", 16, 768, 12),
    # the embedded demo checkpoint's shape: small ViT/8 + the MOVE head, < 20 MB
    "demo": ModelConfig.tiny(embed_dim=128, depth=4, num_heads=4, min_channels=16, img_size=96),
    "tiny": ModelConfig.tiny(),  # a few-kB random model for tests
}


@dataclass(frozen=True)
class PreprocessConfig:
    """Official inference preprocessing (infer.py): shorter side to `size` with PIL bicubic,
    optional cap on the longer side, ImageNet mean/std, reflect padding to the patch multiple."""

    size: int = 448
    max_size: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        # stored in checkpoints: a bad value must fail when the checkpoint loads, naming the field, not on
        # every image ("height and width must be > 0" per image for a size of -5)
        def positive(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v > 0

        if not positive(self.size):
            raise ValueError(f"preprocess size must be a positive integer, not {self.size!r}")
        if self.max_size is not None and not positive(self.max_size):
            raise ValueError(f"preprocess max_size must be a positive integer or null, not {self.max_size!r}")
        for name, v in (("mean", self.mean), ("std", self.std)):
            if len(v) != 3 or not all(isinstance(x, int | float) and math.isfinite(x) for x in v):
                raise ValueError(f"preprocess {name} must be 3 finite numbers, not {v!r}")
        if min(self.std) <= 0:
            raise ValueError(f"preprocess std must be positive, not {self.std!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        return _from_dict(cls, data)
