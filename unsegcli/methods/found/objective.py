"""FOUND's training (main_found_train.py, configs/found_DUTS-TR.yaml at valeoai/FOUND 1ad22ba) as objectives
of the one loop (``engine.objective.Objective``): only the 1x1 decoder trains, the DINO ViT stays frozen.

``FoundObjective`` (``unseg train --method found``), per step on a batch of 224x224 inputs, all on patch logits:
- ``w_bs`` · BCE(logits, BS(own > 0.5 mask)): the own patch mask resized bilinearly (cv2) to the input, the
  bilateral solver on the input image (all components), kept if IoU > 0.5 with its input, back to the patch grid
  by bilinear interpolation and ``.bool()``; else the own mask;
- for the first ``bkg_steps`` steps, + ``w_bkg`` · BCE(logits, BS(background discovery's object mask));
- after them, + ``w_self`` · BCE(logits, own > 0.5 mask).
AdamW (weight decay 0.01, torch's default), lr ``cfg.lr`` · gamma^⌊step / lr_step⌋ (StepLR stepped every
iteration; computed from the step, so a resumed run continues the schedule).

Data (datasets.py 'random_scale'): shorter side to the crop size (bilinear), a random rescale by U(0.1, 3.0), then
both sides to the crop size (aspect discarded), then a 23-px Gaussian blur with σ ~ U(0.1, 2.0) half of the time
(datasets/utils.py GaussianBlur: its 0.5 is hard-coded); no crop, no flip.

``FoundDistillation`` (``--from-masks``): the same head trained on given masks (any method's soft or instance
PNGs; random resized crops and flips as MOVE's self-training), BCE against each patch's mean mask value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ...config import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig
from ...engine.config import TrainConfig, WeightSources
from ...engine.data import CropDataset
from ...engine.objective import StepContext, StepOutput
from ...errors import CheckpointError, UsageError, WeightsNotFoundError
from ...model.checkpoint import DEFAULT_FAMILY, checkpoint_dict, read_checkpoint
from ...model.state_dict import load_strict
from .config import THRESHOLD, FoundConfig, FoundTrainOptions
from .core import background, solve_binary, solver_agrees
from .model import FoundModel

FAMILY = "found"
BLUR_KERNEL = 23  # datasets.py: int(0.1 * 224 // 2 * 2) + 1
BLUR_SIGMA = (0.1, 2.0)  # datasets/utils.py GaussianBlur(min=0.1, max=2.0)
SCALE_RANGE = (0.1, 3.0)  # configs/found_DUTS-TR.yaml dataset.scale_range


def build_found(cfg: TrainConfig, sources: WeightSources) -> FoundModel:
    """From an unseg FOUND checkpoint (``sources.init``), else a DINO file with a fresh decoder (torch's default
    Conv2d init under the run's seed, as the official set_seed(0) before building the model)."""
    from ...model.dino_keys import backbone_config_from_state
    from ...model.state_dict import read_backbone_state

    if sources.init:
        ckpt = read_checkpoint(sources.init)
        family = str(ckpt.get("family", DEFAULT_FAMILY))
        if family != FAMILY:
            raise CheckpointError(f"{sources.init} holds a '{family}' model, not a FOUND one")
        model = FoundModel(FoundConfig.from_dict(ckpt["model_config"]))
        load_strict(model, ckpt["state_dict"], sources.init)
        return model
    if sources.backbone is None:
        if not sources.random_init:
            raise WeightsNotFoundError(
                "backbone (DINO ViT) weights are required",
                "pass --backbone-weights dino-vits8-300ep (`unseg weights fetch dino-vits8-300ep`), --init CKPT, "
                "or --random-init for a pipeline test",
            )
        return FoundModel(FoundConfig(backbone=cfg.model.backbone))
    from ...model.registry import resolve_weights

    path = resolve_weights(sources.backbone, env_var=None, default=None)
    sd = read_backbone_state(path)
    model = FoundModel(FoundConfig(backbone=backbone_config_from_state(sd)))
    load_strict(model.vit, {k: v.float() for k, v in sd.items()}, f"backbone weights {path}")
    return model


def unnormalise(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) ImageNet-normalised -> (B, H, W, 3) uint8: the solver's reference image."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device)[:, None, None]
    pixels = ((x.float() * std + mean) * 255).round().clamp(0, 255)
    return pixels.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()


def solver_targets(images: np.ndarray, masks: torch.Tensor, rule: str) -> torch.Tensor:
    """FOUND's training pseudo-labels (misc.py batch_apply_bilateral_solver, all components): (B, h, w) bool patch
    masks -> (B, 1, h, w) float {0, 1}. A patch is 1 where the bilinear resample of the solver's mask is non-zero."""
    from ...refine import match_size

    out = []
    h, w = masks.shape[-2:]
    for image, mask in zip(images, masks.cpu().numpy(), strict=True):
        soft = match_size(mask.astype(np.float32), image.shape[:2])  # cv2.resize, bilinear
        result = solve_binary(image, soft, rule, all_components=True)
        if solver_agrees(soft > 0.5, result):
            t = torch.from_numpy(result.astype(np.float32))[None, None]
            out.append(F.interpolate(t, (h, w), mode="bilinear", align_corners=False)[0] > 0)
        else:
            out.append(torch.from_numpy(mask)[None])
    return torch.stack(out).float().to(masks.device)


class FoundData(torch.utils.data.Dataset):
    """Images -> (3, S, S) normalised inputs, FOUND's 'random_scale' augmentation (module docstring), each
    sample's randomness from (seed, epoch, index)."""

    def __init__(self, images: list[str], size: int, seed: int):
        self.images, self.size, self.seed = images, size, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        import cv2
        from PIL import Image

        from ...io.images import decode_image

        rng = np.random.default_rng([self.seed, self.epoch, i])
        pil = Image.fromarray(decode_image(self.images[i]))
        w, h = pil.size
        s = self.size / min(w, h)  # compute_size: the shorter side to the crop, the longer truncated
        pil = pil.resize((max(1, int(w * s)), max(1, int(h * s))), Image.Resampling.BILINEAR)
        scale = rng.uniform(*SCALE_RANGE)
        pil = pil.resize((max(1, int(pil.width * scale)), max(1, int(pil.height * scale))), Image.Resampling.BILINEAR)
        pixels = np.asarray(pil.resize((self.size, self.size), Image.Resampling.BILINEAR))
        if rng.random() < 0.5:
            pixels = cv2.GaussianBlur(pixels, (BLUR_KERNEL, BLUR_KERNEL), rng.uniform(*BLUR_SIGMA))
        x = (pixels.astype(np.float32) / 255.0 - np.array(IMAGENET_MEAN, np.float32)) / np.array(
            IMAGENET_STD, np.float32
        )
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCEWithLogitsLoss(), mean over every patch of the batch (main_found_train.py)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


class FoundObjective:
    name: ClassVar[str] = "found"
    needs_masks: ClassVar[bool] = False
    batches_per_step = 1

    def __init__(self, cfg: TrainConfig, model: FoundModel, options: FoundTrainOptions):
        self.cfg, self.model, self.options = cfg, model, options
        self.opt = torch.optim.AdamW(
            model.trainable_parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=options.weight_decay
        )

    @classmethod
    def create(cls, cfg: TrainConfig, sources: WeightSources, device: torch.device) -> Any:
        if cfg.train_backbone:
            raise UsageError("train_backbone does not apply to FOUND: only its 1x1 decoder trains (model.py)")
        model = build_found(cfg, sources)
        if cfg.crop % model.patch_size:
            raise UsageError(f"crop {cfg.crop} must be a multiple of the patch size {model.patch_size}")
        return cls(cfg, model.to(device), cfg.options if cfg.options is not None else FoundTrainOptions())

    @classmethod
    def dataset(cls, cfg: TrainConfig, images: list[str], masks: list[str] | None) -> Any:
        return FoundData(images, cfg.crop, cfg.seed)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"segmenter": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"segmenter": self.opt}

    def export(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Our checkpoint, family "found" (predict runs FOUND's own full-resolution geometry; the stored
        preprocessing only records the normalisation)."""
        prep = PreprocessConfig(mean=self.cfg.preprocess.mean, std=self.cfg.preprocess.std)
        return checkpoint_dict(self.model, prep, {**meta, "found_train": asdict(self.options)}, family=FAMILY)

    def learning_rate(self, step: int) -> float:
        return self.cfg.lr * self.options.lr_gamma ** (step // self.options.lr_step)

    def unpack(self, batches: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The step's inputs and given masks (None: FOUND trains on its own pseudo-labels)."""
        (x,) = batches
        return x, None

    def targets(
        self, x: torch.Tensor, logits: torch.Tensor, keys: torch.Tensor, att: torch.Tensor, step: int, given: Any
    ) -> dict[str, tuple[torch.Tensor, float]]:
        """The loss terms of this step: name -> (patch target, weight) (module docstring)."""
        o = self.options
        own = (torch.sigmoid(logits.detach().float()) > THRESHOLD)[:, 0]
        images = unnormalise(x)
        terms = {"bs": (solver_targets(images, own, o.bilateral), o.w_bs)}
        if step < o.bkg_steps:
            objects = ~background(keys, att, o.bkg_threshold)
            terms["bkg"] = (solver_targets(images, objects, o.bilateral), o.w_bkg)
        else:
            terms["self"] = (own[:, None].float(), o.w_self)
        return terms

    def step(self, batches: Sequence[Any], step: int, ctx: StepContext) -> StepOutput:
        x, given = self.unpack(batches)
        for group in self.opt.param_groups:
            group["lr"] = self.learning_rate(step)
        with ctx.autocast():
            logits, keys, att = self.model(x)
        terms = self.targets(x, logits, keys, att, step, given)
        losses = {k: w * bce(logits, t) for k, (t, w) in terms.items()}
        total = torch.stack(list(losses.values())).sum()
        self.opt.zero_grad(set_to_none=True)
        ctx.backward(total, "segmenter")
        ctx.step("segmenter")
        probs = torch.sigmoid(logits.detach().float())
        metrics = {"loss": total.item(), **{f"loss_{k}": v.item() for k, v in losses.items()}}
        metrics |= {"area": probs.mean().item(), "lr": self.opt.param_groups[0]["lr"]}
        return StepOutput(metrics, {"input": x, "mask": F.interpolate(probs, size=x.shape[-2:], mode="nearest")})


class FoundDistillation(FoundObjective):
    """FOUND's head trained on given masks: BCE(patch logits, mean of the mask over each patch)."""

    name: ClassVar[str] = "found-distil"
    needs_masks: ClassVar[bool] = True

    @classmethod
    def dataset(cls, cfg: TrainConfig, images: list[str], masks: list[str] | None) -> Any:
        return CropDataset(images, cfg.crop, cfg.seed, masks)

    def unpack(self, batches: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        ((x, masks),) = batches
        return x, masks

    def targets(
        self, x: torch.Tensor, logits: torch.Tensor, keys: torch.Tensor, att: torch.Tensor, step: int, given: Any
    ) -> dict[str, tuple[torch.Tensor, float]]:
        return {"distil": (F.avg_pool2d(given.float(), self.model.patch_size), 1.0)}
