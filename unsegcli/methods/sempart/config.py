"""Sempart's constants, each cited. [P] = the paper (Ravindran & Basu, arXiv 2309.10972, section /
equation given); [S#n] = our choice n where the paper is silent (listed in README, Sempart), for
what the paper leaves open (the paper has no official code).

Two dataclasses: ``SempartConfig`` is the architecture and inference preprocessing (it travels in the
checkpoint as the family's model config), ``SempartLossConfig`` the training objective (stored in the
checkpoint's train_state and meta, so a run records which reductions it used).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from ...config import BackboneConfig, ModelConfig, checked_fields, option
from ...errors import UsageError

FEATURES = ("keys", "tokens")
Reduction = Literal["sum", "mean"]
REDUCTIONS: tuple[str, ...] = get_args(Reduction)
BRANCHES = ("fine", "coarse")
# What `unseg train --method sempart` changes from TrainConfig's MOVE defaults [P §4.1]: batch 8, 320x320
# inputs, Adam lr 1e-4 (β = Adam's defaults (0.9, 0.999); the paper names no others), 20 epochs on DUTS-TR.
TRAIN_DEFAULTS: dict[str, Any] = {"batch_size": 8, "crop": 320, "lr": 1e-4, "betas": (0.9, 0.999), "epochs": 20}


def _check(cls, data: dict[str, Any]) -> dict[str, Any]:
    return checked_fields(cls, data)


@dataclass(frozen=True)
class SempartConfig:
    """Frozen DINO ViT -> one transformer encoder layer -> coarse head (patch grid) + fine branch (pixels)."""

    # DINO ViT-S/8, frozen [P §4.1, App. C]; the same BackboneConfig (timm shape, DINO position-embedding rule)
    # as MOVE. Its block_index is not used: Sempart reads the LAST block (see ``features``).
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # DINO tensor fed to the encoder and to the affinity graph: "keys" of the last attention layer (all heads
    # concatenated, 384-d) as TokenCut, which the paper's graph "follows" [P §4.1; S#1]; "tokens" = the last
    # block's output after DINO's final norm.
    features: str = "keys"
    # Prepend DINO's [CLS] (key) to the encoder's sequence and drop its output: App. D describes the encoder's
    # [CLS] attention map [P App. D; S#2].
    use_cls: bool = True
    # "a single layer transformer encoder with two attention heads" 384 -> 64 [P App. C eq. 11]. Where 384 -> 64
    # happens, MLP width and norm placement are unstated: Linear 384 -> 64 before one pre-norm layer, MLP 4x,
    # GELU, no dropout, no positional embedding [S#3, S#4].
    encoder_dim: int = 64
    encoder_heads: int = 2
    encoder_depth: int = 1
    encoder_mlp: int = 256
    # Fine branch widths: Block^67_192, Block^195_128, Block^131_128, Block^128_128 [P eq. 13]; one upsampling
    # block per factor 2 of the patch size, then one without.
    fine_widths: tuple[int, ...] = (192, 128, 128, 128)
    # LeakyReLU slope of Block = conv3x3-BN-LeakyReLU "as also done in MOVE" [P eq. 12]; PyTorch/MOVE default [S#10].
    leaky_slope: float = 0.01
    # Inputs are 3x320x320 [P App. C]; predict resizes every image to size x size, aspect not kept [S#13].
    input_size: int = 320

    def __post_init__(self) -> None:
        p = self.backbone.patch_size
        if p < 2 or p & (p - 1):
            raise UsageError(f"Sempart needs a power-of-two patch size (the fine branch doubles per block), not {p}")
        if len(self.fine_widths) != self.upsampling_blocks + 1:
            raise UsageError(
                f"fine_widths needs {self.upsampling_blocks + 1} entries for patch size {p}, "
                f"got {len(self.fine_widths)}"
            )
        if self.features not in FEATURES:
            raise UsageError(f"features must be one of {FEATURES}, not {self.features!r}")
        if self.encoder_dim % self.encoder_heads:
            raise UsageError(f"encoder_dim {self.encoder_dim} is not divisible by encoder_heads {self.encoder_heads}")
        if self.input_size % p:
            raise UsageError(f"input_size {self.input_size} is not a multiple of the patch size {p}")

    @property
    def upsampling_blocks(self) -> int:
        return self.backbone.patch_size.bit_length() - 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SempartConfig:
        data = _check(cls, data)
        if "backbone" in data:
            data["backbone"] = BackboneConfig(**_check(BackboneConfig, data["backbone"]))
        return cls(**data)

    @classmethod
    def from_preset(cls, model: ModelConfig, input_size: int = 320) -> SempartConfig:
        """Sempart on a MOVE preset's backbone (`--arch`): the fine branch takes the MOVE head's widths, which for
        ViT-S/8 are exactly the paper's 192/128/128/128 (eq. 13); the encoder keeps the paper's size.
        ``input_size`` = the training crop, so predict sees what training saw."""
        return cls(backbone=model.backbone, fine_widths=model.head.widths, input_size=input_size)

    @classmethod
    def tiny(
        cls,
        embed_dim: int = 32,
        depth: int = 2,
        num_heads: int = 2,
        patch_size: int = 8,
        img_size: int = 64,
        width: int = 8,
        encoder_dim: int = 16,
        **kw: Any,
    ) -> SempartConfig:
        """A small random model of the same architecture, for tests and pipeline demos."""
        backbone = BackboneConfig(
            timm_name="",
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            img_size=img_size,
        )
        n_up = patch_size.bit_length() - 1
        kw = {
            "encoder_dim": encoder_dim,
            "encoder_mlp": 4 * encoder_dim,
            "input_size": img_size,
            "fine_widths": (width,) * (n_up + 1),
            **kw,
        }
        return cls(backbone=backbone, **kw)


@dataclass(frozen=True)
class SempartLossConfig:
    """Eq. 9: L = E_x[L_Ncut + λc·L_GTV-coarse + λf·L_GTV-fine + λsr·L_SR]."""

    # Affinity for L_Ncut: W_ij = 1 if cos > τ else ε (eq. 5), τ = 0.2, ε = 1e-6, no self-loops [P §4.1, Table 4].
    tau: float = option(
        0.2, "Affinity threshold of the NCut graph (cosine > tau -> 1, else 1e-6).", min=-1.0, max=1.0, max_open=True,
        cite="Sempart §4.1, Table 4: tau 0.2",
    )  # fmt: skip
    eps: float = 1e-6
    self_loops: bool = False
    # Guard added to the Ncut denominators S^T W 1 (unstated) [S#8].
    ncut_eps: float = 1e-6
    # L_GTV-coarse edge weights: W of eq. 5 with τ = 0, ε = 1e-6, 4-neighbours only [P §3.3, §4.1(b)].
    tau_gtv: float = 0.0
    # L_GTV-fine edge weights exp(-||X_i - X_j||^2 / σ), σ = 1 [P §3.3, §4.1(c)], X = the ImageNet-normalised
    # network input [S#6].
    sigma: float = 1.0
    # λ_GTV-coarse = 0.0006, λ_SR = 20, λ_GTV-fine = 0.0002, "applied for all results" [P §4.1].
    lambda_gtv_coarse: float = option(
        6e-4, "Weight of the coarse graph total variation.", min=0.0, cite="Sempart §4.1: λ_GTV-coarse 0.0006"
    )
    lambda_gtv_fine: float = option(
        2e-4, "Weight of the colour-weighted fine total variation.", min=0.0, cite="Sempart §4.1: λ_GTV-fine 0.0002"
    )
    lambda_sr: float = option(
        20.0, "Weight of the fine-to-coarse distillation term.", min=0.0, cite="Sempart §4.1: λ_SR 20"
    )
    # Per-image reductions [S#5]: the paper writes sums. GTV as a sum per image (its λs only make
    # sense for sums); SR as a MEAN over the patch grid: the literal sum, weighted by 20, is ~1e4x stronger per
    # node than L_Ncut and pulls both branches onto the constant-mask plateau where L_Ncut = 1 with zero
    # gradient. "sum" everywhere reproduces the literal reading. The batch is always averaged (E_x) [P §3.4].
    reduction_gtv: Reduction = option(
        "sum", "Per-image reduction of the total-variation terms.", flag="--gtv-reduction", cite="unseg [S#5]"
    )
    reduction_sr: Reduction = option(
        "mean",
        "Per-image reduction of the distillation term; 'sum' is the paper read literally, which pulls both masks "
        "onto a constant (see README).",
        flag="--sr-reduction",
        cite="unseg [S#5]",
    )
    # Gradients of L_fine and L_joint reach the encoder and coarse branch ("joint training") [P §4.4, App. D];
    # False = the paper's "w/o joint training" ablation (stop-gradient into the fine branch).
    joint: bool = True

    def __post_init__(self) -> None:
        for name in ("reduction_gtv", "reduction_sr"):
            if getattr(self, name) not in REDUCTIONS:
                raise UsageError(f"{name} must be one of {REDUCTIONS}, not {getattr(self, name)!r}")
        if self.sigma <= 0:
            raise UsageError(f"sigma must be positive, not {self.sigma}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SempartLossConfig:
        return cls(**_check(cls, data))
