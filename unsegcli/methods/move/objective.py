"""MOVE (sec. 2-3) and self-training on pseudo-masks as objectives of the one training loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ...engine.config import TrainConfig, WeightSources
from ...engine.data import CropDataset
from ...engine.objective import Objective, StepContext, StepOutput
from ...model.checkpoint import checkpoint_dict
from . import compose, losses
from .build import build_discriminator, build_inpainter, build_segmenter
from .config import MoveOptions
from .discriminator import ProjectedDiscriminator
from .inpainters import BlurInpainter, MAEInpainter
from .segmenter import Segmenter

# The image-grid rows of a MOVE step, top to bottom (MOVE Fig. 2).
MOVE_ROWS = ("input", "mask", "background", "composed", "composed_noshift", "copy_paste")


class MoveObjective:
    """MOVE (sec. 2-3): a segmenter trained adversarially against a projected discriminator on shifted
    composites. Each step takes a discriminator batch then a segmenter batch (official engine.py)."""

    name: ClassVar[str] = "move"
    needs_masks: ClassVar[bool] = False
    batches_per_step = 2

    def __init__(
        self,
        cfg: TrainConfig,
        segmenter: Segmenter,
        inpainter: MAEInpainter | BlurInpainter,
        discriminator: ProjectedDiscriminator,
    ):
        self.cfg, self.segmenter, self.inpainter, self.discriminator = cfg, segmenter, inpainter, discriminator
        self.options: MoveOptions = cfg.options if cfg.options is not None else MoveOptions()
        o = self.options
        self.opt_s = torch.optim.AdamW(
            [p for p in segmenter.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas, weight_decay=0.0
        )
        self.opt_d = torch.optim.AdamW(
            [p for p in discriminator.parameters() if p.requires_grad],
            lr=cfg.lr if o.lr_d is None else o.lr_d,
            betas=o.betas_d,
            weight_decay=o.weight_decay_d,
        )

    @classmethod
    def create(cls, cfg: TrainConfig, sources: WeightSources, device: torch.device) -> MoveObjective:
        # build order = the order random initialisations draw from the seeded global RNG
        segmenter = build_segmenter(cfg, sources).to(device)
        segmenter.backbone.set_train_vit(cfg.train_backbone)
        return cls(
            cfg,
            segmenter,
            build_inpainter(cfg, sources).to(device),
            build_discriminator(cfg, sources).to(device),
        )

    @classmethod
    def dataset(cls, cfg: TrainConfig, images: list[str], masks: list[str] | None) -> CropDataset:
        return CropDataset(images, cfg.crop, cfg.seed)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"segmenter": self.segmenter, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"segmenter": self.opt_s, "discriminator": self.opt_d}

    def export(self, meta: dict[str, Any]) -> dict[str, Any]:
        return checkpoint_dict(self.segmenter, self.cfg.preprocess, meta)

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Segmenter + shift + inpainting + composites (MOVE Fig. 2); gradient flows from the mask."""
        mask = torch.sigmoid(self.segmenter(x).float())
        shifts = compose.sample_shifts(x.shape[0], x.shape[2], x.shape[3], self.options.shift_range, generator)
        shifted = compose.shift(torch.cat([x, mask], 1), shifts)
        x_shift, mask_shift = shifted[:, :3], shifted[:, 3:]
        region = compose.inpaint_region(mask, mask_shift, self.inpainter.tile)
        background = self.inpainter(x, region)
        if self.inpainter.autoencodes:
            with torch.no_grad():
                x_ae, x_ae_shift = self.inpainter(x, None), self.inpainter(x_shift, None)
        else:
            x_ae, x_ae_shift = x, x_shift
        out = compose.composites(x_ae, x_ae_shift, background, mask, mask_shift)
        out.update(mask=mask, mask_shifted=mask_shift, background=background, input=x)
        return out

    def discriminator_step(self, out: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        """Eq. 5: real {x̌, x̂_0}, fake {x̂_δ, x̃_δ}, all detached: the segmenter gets nothing here."""
        disc = self.discriminator
        disc.requires_grad_(True)
        disc.projector.requires_grad_(False)
        with ctx.autocast():
            loss = losses.d_hinge_loss(
                [disc(out["real_ae"].detach()), disc(out["composed_noshift"].detach())],
                [disc(out["composed"].detach()), disc(out["copy_paste"].detach())],
            )
        self.opt_d.zero_grad(set_to_none=True)
        ctx.backward(loss, "discriminator")
        ctx.step("discriminator")
        return loss

    def segmenter_step(
        self, out: dict[str, torch.Tensor], step: int, ctx: StepContext
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 6 through x̂_δ only, with D frozen, plus the mask losses on the shifted mask."""
        self.discriminator.requires_grad_(False)
        with ctx.autocast():
            adv = losses.s_adversarial_loss(self.discriminator(out["composed"]))
            terms = losses.mask_losses(out["mask_shifted"], step)
            loss = adv + sum(terms.values())
        self.opt_s.zero_grad(set_to_none=True)
        ctx.backward(loss, "segmenter")
        ctx.step("segmenter")
        return loss, adv, terms

    def step(self, batches: Sequence[Any], step: int, ctx: StepContext) -> StepOutput:
        """One discriminator batch (composites under no_grad), then one segmenter batch."""
        d_batch, s_batch = batches
        with torch.no_grad(), ctx.autocast():
            d_out = self.forward(d_batch, ctx.generator)
        d_loss = self.discriminator_step(d_out, ctx)
        with ctx.autocast():
            out = self.forward(s_batch, ctx.generator)
        s_loss, adv, terms = self.segmenter_step(out, step, ctx)
        metrics = {
            "loss_d": d_loss.item(),
            "loss_s": s_loss.item(),
            "loss_adv": adv.item(),
            **{f"loss_{k}": v.item() for k, v in terms.items()},
            "mask_area": out["mask"].mean().item(),
        }
        return StepOutput(metrics, {k: out[k] for k in MOVE_ROWS})


class SelfTraining:
    """Self-training on pseudo-masks (MOVE sec. 3, "segmenter self-training"): one batch per step."""

    name: ClassVar[str] = "self"
    needs_masks: ClassVar[bool] = True
    batches_per_step = 1

    def __init__(self, cfg: TrainConfig, segmenter: Segmenter):
        self.cfg, self.segmenter = cfg, segmenter
        self.opt_s = torch.optim.AdamW(
            [p for p in segmenter.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas, weight_decay=0.0
        )

    @classmethod
    def create(cls, cfg: TrainConfig, sources: WeightSources, device: torch.device) -> SelfTraining:
        segmenter = build_segmenter(cfg, sources).to(device)
        segmenter.backbone.set_train_vit(cfg.train_backbone)
        return cls(cfg, segmenter)

    @classmethod
    def dataset(cls, cfg: TrainConfig, images: list[str], masks: list[str] | None) -> CropDataset:
        return CropDataset(images, cfg.crop, cfg.seed, masks)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"segmenter": self.segmenter}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"segmenter": self.opt_s}

    def export(self, meta: dict[str, Any]) -> dict[str, Any]:
        return checkpoint_dict(self.segmenter, self.cfg.preprocess, meta)

    def step(self, batches: Sequence[Any], step: int, ctx: StepContext) -> StepOutput:
        ((x, target),) = batches
        with ctx.autocast():
            logits = self.segmenter(x).float()
        loss = losses.self_training_loss(logits, target)
        self.opt_s.zero_grad(set_to_none=True)
        ctx.backward(loss, "segmenter")
        ctx.step("segmenter")
        mask = torch.sigmoid(logits.detach())
        return StepOutput(
            {"loss": loss.item(), "mask_area": mask.mean().item()}, {"input": x, "mask": mask, "target": target}
        )


if TYPE_CHECKING:  # mypy checks here that each class implements the protocol
    _IMPLEMENTATIONS: tuple[type[Objective], ...] = (MoveObjective, SelfTraining)
