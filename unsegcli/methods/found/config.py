"""FOUND's constants and options, each cited from the official code (valeoai/FOUND at 1ad22ba, Apache-2.0;
Siméoni et al., "Unsupervised Object Localization: Observing the Background to Discover Objects", CVPR 2023).

Free of torch on purpose: ``unseg predict --help`` and ``unseg train --help`` make flags from these fields.

- ``FoundConfig``: the architecture stored in our checkpoints (family "found"): the frozen DINO ViT's shape;
  the decoder is a 1x1 convolution from its width to one logit.
- ``FoundOptions``: ``unseg predict --method found`` (the official decoder on the 300-epoch ViT-S/8).
- ``FoundBkgOptions``: ``unseg predict --method found-bkg`` (the training-free background discovery).
- ``FoundTrainOptions``: ``unseg train --method found`` (the official loss weights and stages).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from ...config import WEIGHTS_METAVAR, BackboneConfig, checked_fields, option

Mode = Literal["multi", "single"]
MODES: tuple[str, ...] = get_args(Mode)

# The DINO file FOUND reads (model.py get_vit_encoder: vit_small, patch 8 -> dino_deitsmall8_300ep_pretrain.pth)
BACKBONE = "dino-vits8-300ep"
DECODER = "found-decoder"  # data/weights/decoder_weights.pt of the official repository (model registry)
# Binary masks everywhere: sigmoid > 0.5 (evaluation/saliency.py, evaluation/uod.py, main_found_train.py)
THRESHOLD = 0.5
# What `unseg train --method found` changes from TrainConfig's MOVE defaults (main_found_train.py and
# configs/found_DUTS-TR.yaml): batch 50, 224x224 inputs, AdamW lr 0.05 with torch's default betas (and weight
# decay 0.01). Its length, max_iter 500, is 501 steps (the loop stops after the step at n_iter == 500): --steps 501.
TRAIN_DEFAULTS: dict[str, Any] = {"batch_size": 50, "crop": 224, "lr": 0.05, "betas": (0.9, 0.999)}

_BACKBONE = (
    "DINO ViT whose last-block keys FOUND reads: a known name (get it with `unseg weights fetch NAME`), DINO's own "
    ".pth or a timm file. The official decoder was trained on the 300-epoch ViT-S/8 (dino-vits8-300ep), not on "
    "MOVE's dino-vits8."
)
_BACKBONE_CITE = "configs/found_DUTS-TR.yaml: vit_small, patch 8 (model.py: the 300ep file)"


@dataclass(frozen=True)
class FoundConfig:
    """Frozen DINO ViT (its last block's keys, CLS dropped) -> Conv2d(width, 1, 1x1) -> one logit per patch."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # ViT-S/8 (model.py get_vit_encoder)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoundConfig:
        kw = checked_fields(cls, data)
        if "backbone" in kw:
            kw["backbone"] = BackboneConfig(**checked_fields(BackboneConfig, kw["backbone"]))
        return cls(**kw)


_MODE = (
    "FOUND: multi = the soft mask, every component (the official default evaluation mode); single = the largest "
    "4-connected component of the > 0.5 mask, as a binary mask (evaluation/saliency.py 'single')."
)


@dataclass(frozen=True)
class FoundOptions:
    mode: Mode = option("multi", _MODE, cite="main_found_evaluate.py --evaluation-mode multi")
    decoder: str = option(
        DECODER,
        "FOUND: the 1x1 decoder, a known name (`unseg weights fetch found-decoder`) or a file in the official "
        "format ({'decoder': Conv2d state dict}).",
        cite="official data/weights/decoder_weights.pt",
        metavar=WEIGHTS_METAVAR,
    )
    backbone: str = option(
        BACKBONE, _BACKBONE, cite="configs/found_DUTS-TR.yaml: vit_small, patch 8", metavar=WEIGHTS_METAVAR
    )


@dataclass(frozen=True)
class FoundBkgOptions:
    bkg_threshold: float = option(
        0.3,
        "FOUND background discovery: patches whose (head-weighted) key cosine with the background seed is above "
        "this are background.",
        min=-1.0,
        max=1.0,
        cite="configs/found_DUTS-TR.yaml found.bkg_th 0.3",
    )
    backbone: str = option(
        BACKBONE, _BACKBONE, cite="configs/found_DUTS-TR.yaml: vit_small, patch 8", metavar=WEIGHTS_METAVAR
    )


@dataclass(frozen=True)
class FoundTrainOptions:
    """main_found_train.py: loss = w_bs · BCE(logits, BS(own mask)), + w_bkg · BCE(logits, BS(background
    discovery)) for the first bkg_steps steps, then + w_self · BCE(logits, own mask). With --from-masks (the
    distillation objective) the targets are the given masks instead and only BCE is used."""

    w_bs: float = option(1.5, "FOUND: weight of the self-training term refined by the bilateral solver.", min=0.0,
                         cite="configs/found_DUTS-TR.yaml training.w_bs_loss 1.5")  # fmt: skip
    w_bkg: float = option(1.0, "FOUND: weight of the background-discovery term (first --bkg-steps steps).", min=0.0,
                          cite="main_found_train.py: BCE on the background pseudo-labels, weight 1")  # fmt: skip
    w_self: float = option(4.0, "FOUND: weight of the plain self-training term (after --bkg-steps).", min=0.0,
                           cite="configs/found_DUTS-TR.yaml training.w_self_loss 4.0")  # fmt: skip
    bkg_steps: int = option(100, "FOUND: steps trained on the background discovery before plain self-training.",
                            min=0, cite="configs/found_DUTS-TR.yaml training.stop_bkg_loss 100")  # fmt: skip
    bkg_threshold: float = option(0.3, "FOUND: the background discovery's cosine threshold.", min=-1.0, max=1.0,
                                  cite="configs/found_DUTS-TR.yaml found.bkg_th 0.3")  # fmt: skip
    bilateral: Literal["fixed", "official"] = option(
        "fixed",
        "FOUND: how the solver's mask is binarised for the pseudo-labels (all components): fixed = holes filled, all "
        "foreground; official = every label but the largest, which drops the object when it is larger than the "
        "background (bilateral_solver.py binary_solver, get_all_cc=True).",
        cite="main_found_train.py: batch_apply_bilateral_solver(get_all_cc=True)",
    )
    lr_step: int = option(50, "FOUND: the learning rate is multiplied by --lr-gamma every this many steps.", min=1,
                          cite="main_found_train.py StepLR(step_size=50), stepped every iteration")  # fmt: skip
    lr_gamma: float = option(0.95, "FOUND: the step decay of the learning rate.", min=0.0, max=1.0, min_open=True,
                             cite="main_found_train.py StepLR(gamma=0.95)")  # fmt: skip
    weight_decay: float = option(0.01, "FOUND: AdamW weight decay.", min=0.0,
                                 cite="main_found_train.py AdamW(lr=...): torch's default 0.01")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoundTrainOptions:
        return cls(**checked_fields(cls, data))
