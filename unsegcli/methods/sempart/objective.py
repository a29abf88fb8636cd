"""Sempart's training objective (`engine.objective.Objective`): one batch per step, one Adam optimiser on the
encoder and both branches, the loss of eq. 9. No discriminator, no inpainter [P = arXiv 2309.10972 §4.1].

Recipe [P §4.1]: DUTS-TR, 3x320x320 inputs, Adam lr 1e-4 (β 0.9, 0.999: Adam's defaults, the paper names no
others), batch 8, 20 epochs, constant learning rate (none stated). Augmentation is not stated: the project's
random resized crop (scale (0.9, 1), ratio (3/4, 4/3)) to 320 + horizontal flip, the pipeline MOVE trains with;
no colour jitter, which would change L_GTV-fine's colour weights (our choice S#11, README).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ...config import PreprocessConfig
from ...engine.config import TrainConfig, WeightSources
from ...engine.data import CropDataset
from ...engine.objective import StepContext, StepOutput
from ...errors import CheckpointError, UsageError, WeightsNotFoundError
from ...model.checkpoint import DEFAULT_FAMILY, checkpoint_dict, read_checkpoint
from ...model.state_dict import load_strict, read_backbone_state
from .config import SempartConfig, SempartLossConfig
from .losses import sempart_loss
from .model import SempartModel

FAMILY = "sempart"


def build_sempart(model_cfg: SempartConfig, sources: WeightSources) -> SempartModel:
    """From an unseg Sempart checkpoint (``sources.init``, its own shape), else ``model_cfg`` with DINO weights."""
    if sources.init:
        ckpt = read_checkpoint(sources.init)
        family = str(ckpt.get("family", DEFAULT_FAMILY))
        if family != FAMILY:
            raise CheckpointError(f"{sources.init} holds a '{family}' model, not a Sempart one")
        model = SempartModel(SempartConfig.from_dict(ckpt["model_config"]))
        load_strict(model, ckpt["state_dict"], sources.init)
        return model
    model = SempartModel(model_cfg)
    path = sources.backbone
    hint = (
        "pass --backbone-weights dino_deitsmall8_pretrain.pth (`unseg weights fetch dino-vits8`), --init CKPT, "
        "or --random-init for a pipeline test"
    )
    if path is None:
        if not sources.random_init:
            raise WeightsNotFoundError("backbone (DINO ViT) weights are required", hint)
        return model
    if not path.startswith("timm:") and not os.path.exists(path):
        raise WeightsNotFoundError(f"backbone (DINO ViT) weights not found: {path}", hint)
    load_strict(model.backbone.vit, read_backbone_state(path), f"backbone weights {path}")
    return model


class SempartObjective:
    name: ClassVar[str] = "sempart"
    needs_masks: ClassVar[bool] = False
    batches_per_step = 1

    def __init__(self, cfg: TrainConfig, model: SempartModel, loss: SempartLossConfig):
        self.cfg, self.model, self.loss = cfg, model, loss
        self.opt = torch.optim.Adam(model.trainable_parameters(), lr=cfg.lr, betas=cfg.betas)

    @classmethod
    def create(cls, cfg: TrainConfig, sources: WeightSources, device: torch.device) -> SempartObjective:
        if cfg.train_backbone:
            raise UsageError(
                "train_backbone does not apply to Sempart: its DINO ViT stays frozen, the affinity graph "
                "is built from its features [P §4.1, App. C]"
            )
        model = build_sempart(SempartConfig.from_preset(cfg.model, cfg.crop), sources)
        if cfg.crop % model.patch_size:
            raise UsageError(f"crop {cfg.crop} must be a multiple of the patch size {model.patch_size}")
        return cls(cfg, model.to(device), cfg.options if cfg.options is not None else SempartLossConfig())

    @classmethod
    def dataset(cls, cfg: TrainConfig, images: list[str], masks: list[str] | None) -> CropDataset:
        return CropDataset(images, cfg.crop, cfg.seed)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"segmenter": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"segmenter": self.opt}

    def export(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Our checkpoint with family "sempart"; predict resizes to the model's square input size with the run's
        normalisation. The loss settings go into meta: they are part of how the weights were made."""
        prep = PreprocessConfig(
            size=self.model.cfg.input_size, mean=self.cfg.preprocess.mean, std=self.cfg.preprocess.std
        )
        return checkpoint_dict(self.model, prep, {**meta, "sempart_loss": self.loss.to_dict()}, family=FAMILY)

    def step(self, batches: Sequence[Any], step: int, ctx: StepContext) -> StepOutput:
        (x,) = batches
        with ctx.autocast():
            feats = self.model.backbone(x)
            coarse_logits, fine_logits = self.model.heads(x, feats, joint=self.loss.joint)
        coarse, fine = torch.sigmoid(coarse_logits.float()), torch.sigmoid(fine_logits.float())
        terms = sempart_loss(coarse, fine, feats.patches, x, self.loss)  # float32: W and the sums need it
        self.opt.zero_grad(set_to_none=True)
        ctx.backward(terms["total"], "segmenter")
        ctx.step("segmenter")
        metrics = {f"loss_{k}": v.item() for k, v in terms.items()}
        metrics.update(area_coarse=coarse.mean().item(), area_fine=fine.mean().item())
        # raw masks, before the polarity rule of predict (the loss does not fix which side is which)
        coarse_up = F.interpolate(coarse.detach(), size=x.shape[-2:], mode="nearest")
        return StepOutput(metrics, {"input": x, "coarse": coarse_up, "fine": fine.detach()})
