"""The training loop: the MOVE objective (alternating discriminator and segmenter steps) or
self-training on pseudo-masks; checkpoints in our format, exact resume, JSONL metrics, image grids,
and data-parallel training under torchrun (gradients averaged across ranks)."""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import ModelConfig, PreprocessConfig
from ..distributed import current_shard, local_device
from ..errors import UsageError, WeightsNotFoundError
from ..model.checkpoint import checkpoint_dict, load_strict, read_backbone_state, read_checkpoint, save_checkpoint
from ..model.segmenter import Segmenter
from . import compose, losses

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    out: str
    objective: str = "move"  # move | self
    steps: int | None = None  # segmenter steps; or
    epochs: int | None = None
    batch_size: int = 32  # MOVE sec. 3
    crop: int = 224  # random resized crops of 224 (MOVE sec. 3)
    lr: float = 2e-4  # both optimisers (MOVE sec. 3)
    betas: tuple[float, float] = (0.9, 0.95)  # segmenter
    lr_d: float = 2e-4
    betas_d: tuple[float, float] = (0.0, 0.99)  # discriminator
    weight_decay_d: float = 0.01  # official: torch AdamW's default for the discriminator
    shift_range: float = 0.125  # Δ = 1/8 (MOVE sec. 3)
    save_every: int = 1000
    log_every: int = 10
    log_images_every: int = 500
    seed: int = 0
    workers: int = 2
    device: str = "cpu"
    precision: str = "fp32"
    train_backbone: bool = False
    inpainter: str = "mae"  # mae | blur
    model: dict = field(default_factory=lambda: ModelConfig().to_dict())
    preprocess: dict = field(default_factory=lambda: PreprocessConfig().to_dict())


@dataclass
class Pretrained:
    """Where frozen weights come from. ``random_init`` is for tests and pipeline demos only."""

    backbone: str | None = None  # DINO file / timm state dict / safetensors
    inpainter: str | None = None  # MAE checkpoint
    disc_backbone: str | None = None  # tf_efficientnet_lite0 weights
    init: str | None = None  # an unseg checkpoint to start the segmenter from
    random_init: bool = False


def _require(path: str | None, what: str, hint: str, random_init: bool) -> str | None:
    if path is None and not random_init:
        raise WeightsNotFoundError(f"{what} weights are required", hint)
    if path is not None and not path.startswith("timm:") and not os.path.exists(path):
        raise WeightsNotFoundError(f"{what} weights not found: {path}", hint)
    return path


def build_segmenter(cfg: TrainConfig, pre: Pretrained) -> Segmenter:
    if pre.init:
        ckpt = read_checkpoint(pre.init)
        model = Segmenter(ModelConfig.from_dict(ckpt["model_config"]))
        load_strict(model, ckpt["state_dict"], pre.init)
        return model
    model = Segmenter(ModelConfig.from_dict(cfg.model))
    path = _require(pre.backbone, "backbone (DINO ViT)", "pass --backbone-weights dino_deitsmall8_pretrain.pth "
                    "(`unseg weights fetch dino-vits8`), --init CKPT, or --random-init for a pipeline test",
                    pre.random_init)
    if path:
        load_strict(model.backbone.vit, read_backbone_state(path), f"backbone weights {path}")
    return model


def build_inpainter(cfg: TrainConfig, pre: Pretrained):
    from .inpainters import BlurInpainter, MAEConfig, MAEInpainter, load_mae

    if cfg.inpainter == "blur":
        return BlurInpainter()
    path = _require(pre.inpainter, "inpainter (MAE)", "pass --inpainter-weights mae_visualize_vit_large_ganloss.pth "
                    "(`unseg weights fetch mae-vitl16-gan`) or use --inpainter blur", pre.random_init)
    if path:
        return load_mae(path)
    # random MAE of a small shape: exercises the code path only
    return MAEInpainter(MAEConfig(img_size=cfg.crop - cfg.crop % 16, embed_dim=64, depth=2, num_heads=2,
                                  decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2))


def build_discriminator(cfg: TrainConfig, pre: Pretrained):
    from .discriminator import ProjectedDiscriminator, Projector

    path = _require(pre.disc_backbone, "discriminator feature network (tf_efficientnet_lite0)",
                    "pass --disc-weights with timm's tf_efficientnet_lite0 weights (pytorch_model.bin or "
                    "model.safetensors), or --random-init for a pipeline test", pre.random_init)
    resolution = 224 if not pre.random_init else min(224, max(64, cfg.crop))
    return ProjectedDiscriminator(Projector(path, random_init=path is None), resolution)


def _average_gradients(params, world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world


def _grid(rows: list[torch.Tensor]) -> np.ndarray:
    """Rows of (B, C, H, W) normalised images or masks -> one uint8 RGB grid."""
    from ..config import IMAGENET_MEAN, IMAGENET_STD

    out = []
    for r in rows:
        r = r.detach().float().cpu()[:8]
        if r.shape[1] == 1:
            r = r.expand(-1, 3, -1, -1)
        else:
            r = r * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        out.append(torch.cat(list(r.clamp(0, 1)), dim=2))
    img = torch.cat(out, dim=1).permute(1, 2, 0).numpy()
    return (img * 255).astype(np.uint8)


class Trainer:
    """Owns the models, optimisers, data and step counter of one run."""

    def __init__(self, cfg: TrainConfig, images: list[str], pre: Pretrained, masks: list[str] | None = None):
        from .data import CropDataset

        if cfg.objective not in ("move", "self"):
            raise UsageError(f"unknown objective {cfg.objective}")
        if (cfg.steps is None) == (cfg.epochs is None):
            raise UsageError("give exactly one of --steps or --epochs")
        self.cfg, self.pre = cfg, pre
        shard = current_shard()
        self.rank, self.world = shard.rank, shard.world
        self.device = torch.device(local_device(cfg.device, shard))
        torch.manual_seed(cfg.seed)
        self.out = Path(cfg.out)
        self.seg = build_segmenter(cfg, pre).to(self.device)
        self.seg.backbone.set_train_vit(cfg.train_backbone)
        self.seg_params = [p for p in self.seg.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.seg_params, lr=cfg.lr, betas=cfg.betas, weight_decay=0.0)
        self.disc = self.inpainter = self.opt_d = None
        if cfg.objective == "move":
            self.inpainter = build_inpainter(cfg, pre).to(self.device)
            if cfg.crop % self.inpainter.tile:
                raise UsageError(f"--crop must be a multiple of the inpainter's tile ({self.inpainter.tile})")
            self.disc = build_discriminator(cfg, pre).to(self.device)
            self.d_params = [p for p in self.disc.parameters() if p.requires_grad]
            self.opt_d = torch.optim.AdamW(self.d_params, lr=cfg.lr_d, betas=cfg.betas_d,
                                           weight_decay=cfg.weight_decay_d)
        self.data = CropDataset(images, cfg.crop, cfg.seed, masks)
        per_rank = math.ceil(len(images) / self.world)
        self.batches_per_epoch = max(per_rank // cfg.batch_size, 1)
        # MOVE alternates batches: one trains the discriminator, the next the segmenter (official
        # engine.py), so a segmenter step consumes two batches; self-training uses one.
        self.batches_per_step = 2 if cfg.objective == "move" else 1
        self.total = cfg.steps if cfg.steps is not None else \
            max(cfg.epochs * self.batches_per_epoch // self.batches_per_step, 1)
        self.step = 0
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision) \
            if self.device.type == "cuda" else None

    # ------------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict:
        prep = PreprocessConfig.from_dict(self.cfg.preprocess)
        ckpt = checkpoint_dict(self.seg, prep, {"source": f"unseg train ({self.cfg.objective})", "step": self.step})
        ckpt["train_state"] = {
            "step": self.step, "config": json.loads(json.dumps(asdict(self.cfg))),
            "optimizer": self.opt.state_dict(), "rng": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "discriminator": self.disc.state_dict() if self.disc is not None else None,
            "optimizer_d": self.opt_d.state_dict() if self.opt_d is not None else None,
        }
        return ckpt

    def save(self, name: str) -> Path:
        path = self.out / name
        if self.rank == 0:
            save_checkpoint(path, self.checkpoint())
        return path

    def resume(self, path: str | Path) -> None:
        ckpt = read_checkpoint(path)
        st = ckpt.get("train_state")
        if not st:
            raise UsageError(f"{path} has no training state to resume from")
        if st["config"]["objective"] != self.cfg.objective:
            raise UsageError(f"{path} was trained with objective '{st['config']['objective']}'")
        load_strict(self.seg, ckpt["state_dict"], str(path))
        self.opt.load_state_dict(st["optimizer"])
        if self.disc is not None:
            self.disc.load_state_dict(st["discriminator"])
            self.opt_d.load_state_dict(st["optimizer_d"])
        self.gen.set_state(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        self.step = int(st["step"])

    # ------------------------------------------------------------------------ steps
    def _batches(self):
        """Deterministic epochs: a permutation from (seed, epoch), each rank its own slice; a resumed
        run starts at the batch the interrupted one would have read next."""
        done = self.step * self.batches_per_step
        epoch, skip = divmod(done, self.batches_per_epoch)
        while True:
            self.data.epoch = epoch
            order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.data))[self.rank::self.world]
            order = order[skip * self.cfg.batch_size: self.batches_per_epoch * self.cfg.batch_size]
            sampler = [order[i: i + self.cfg.batch_size].tolist() for i in range(0, len(order), self.cfg.batch_size)]
            sampler = [b for b in sampler if len(b) == self.cfg.batch_size] or sampler
            loader = torch.utils.data.DataLoader(self.data, batch_sampler=sampler, num_workers=self.cfg.workers,
                                                 pin_memory=self.device.type == "cuda")
            yield from loader
            epoch, skip = epoch + 1, 0

    def move_forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Segmenter + shift + inpainting + composites (MOVE Fig. 2); gradient flows from the mask."""
        mask = torch.sigmoid(self.seg(x).float())
        shifts = compose.sample_shifts(x.shape[0], x.shape[2], x.shape[3], self.cfg.shift_range, self.gen)
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

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None)

    def d_step(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 5: real {x̌, x̂_0}, fake {x̂_δ, x̃_δ}, all detached: the segmenter gets nothing here."""
        self.disc.requires_grad_(True)
        self.disc.projector.requires_grad_(False)
        with self._autocast():
            loss = losses.d_hinge_loss(
                [self.disc(out["real_ae"].detach()), self.disc(out["composed_noshift"].detach())],
                [self.disc(out["composed"].detach()), self.disc(out["copy_paste"].detach())])
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        _average_gradients(self.d_params, self.world)
        self.opt_d.step()
        return loss

    def s_step(self, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Eq. 6 through x̂_δ only, with D frozen, plus the mask losses on the shifted mask."""
        self.disc.requires_grad_(False)
        with self._autocast():
            adv = losses.s_adversarial_loss(self.disc(out["composed"]))
            terms = losses.mask_losses(out["mask_shifted"], self.step)
            loss = adv + sum(terms.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        _average_gradients(self.seg_params, self.world)
        self.opt.step()
        return loss, adv, terms

    def move_step(self, d_batch: torch.Tensor, s_batch: torch.Tensor) -> dict[str, float]:
        """One discriminator batch (composites under no_grad), then one segmenter batch."""
        with torch.no_grad(), self._autocast():
            d_out = self.move_forward(d_batch)
        d_loss = self.d_step(d_out)
        with self._autocast():
            out = self.move_forward(s_batch)
        s_loss, adv, terms = self.s_step(out)
        self._last = out
        return {"loss_d": d_loss.item(), "loss_s": s_loss.item(), "loss_adv": adv.item(),
                **{f"loss_{k}": v.item() for k, v in terms.items()}, "mask_area": out["mask"].mean().item()}

    def self_step(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        with self._autocast():
            logits = self.seg(x).float()
        loss = losses.self_training_loss(logits, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        _average_gradients(self.seg_params, self.world)
        self.opt.step()
        self._last = {"input": x, "mask": torch.sigmoid(logits), "target": target}
        return {"loss": loss.item(), "mask_area": self._last["mask"].mean().item()}

    def log_images(self) -> None:
        from ..io.files import atomic_write_bytes
        from ..io.masks import encode_png

        keys = ["input", "mask", "target"] if self.cfg.objective == "self" else \
            ["input", "mask", "background", "composed", "composed_noshift", "copy_paste"]
        grid = _grid([self._last[k] for k in keys])
        atomic_write_bytes(self.out / "images" / f"step_{self.step:07d}.png", encode_png(grid[:, :, ::-1]))

    def run(self, on_step: Callable[[int, int, dict], None] | None = None) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        self.seg.train()
        metrics = open(self.out / "metrics.jsonl", "a") if self.rank == 0 else None
        start = time.perf_counter()
        batches = self._batches()
        try:
            # never fetch past the last step: a new DataLoader iterator draws from the global RNG,
            # which the checkpoint saves, so an extra fetch would make a resumed run diverge
            while self.step < self.total:
                if self.cfg.objective == "move":
                    m = self.move_step(next(batches).to(self.device, non_blocking=True),
                                       next(batches).to(self.device, non_blocking=True))
                else:
                    x, t = next(batches)
                    m = self.self_step(x.to(self.device, non_blocking=True), t.to(self.device, non_blocking=True))
                self.step += 1
                m["step"] = self.step
                m["seconds"] = round(time.perf_counter() - start, 3)
                if metrics and (self.step % self.cfg.log_every == 0 or self.step == self.total):
                    metrics.write(json.dumps(m) + "\n")
                    metrics.flush()
                if self.rank == 0 and self.cfg.log_images_every and self.step % self.cfg.log_images_every == 0:
                    self.log_images()
                if self.cfg.save_every and self.step % self.cfg.save_every == 0 and self.step < self.total:
                    self.save(f"step_{self.step:07d}.pt")
                    self.save("last.pt")
                if on_step:
                    on_step(self.step, self.total, m)
        finally:
            if metrics:
                metrics.close()
        self.seg.eval()
        return self.save("last.pt")


def find_training_images(inputs: list[str]) -> list[tuple[str, str]]:
    from ..io.images import list_inputs

    return [(it.path, it.rel) for it in list_inputs(inputs)]


