"""Networks for training, built from a `TrainConfig` and the weight sources. Shapes come from the config
(the preset), never from whether weights are random; ``random_init`` only allows missing weight files."""

from __future__ import annotations

import os

from ...config import ModelConfig
from ...engine.config import TrainConfig, WeightSources
from ...errors import UsageError, WeightsNotFoundError
from ...model.checkpoint import read_checkpoint
from ...model.state_dict import load_strict, read_backbone_state
from .config import MoveOptions
from .discriminator import ProjectedDiscriminator, Projector
from .inpainters import BlurInpainter, MAEInpainter, load_mae
from .segmenter import Segmenter


def _require(path: str | None, what: str, hint: str, random_init: bool) -> str | None:
    if path is None and not random_init:
        raise WeightsNotFoundError(f"{what} weights are required", hint)
    if path is not None and not path.startswith("timm:") and not os.path.exists(path):
        raise WeightsNotFoundError(f"{what} weights not found: {path}", hint)
    return path


def _options(cfg: TrainConfig) -> MoveOptions:
    return cfg.options if cfg.options is not None else MoveOptions()


def build_segmenter(cfg: TrainConfig, sources: WeightSources) -> Segmenter:
    """From an unseg checkpoint (``sources.init``, its own shape), else ``cfg.model`` with DINO weights."""
    if sources.init:
        ckpt = read_checkpoint(sources.init)
        model = Segmenter(ModelConfig.from_dict(ckpt["model_config"]))
        load_strict(model, ckpt["state_dict"], sources.init)
        return model
    model = Segmenter(cfg.model)
    path = _require(
        sources.backbone,
        "backbone (DINO ViT)",
        "pass --backbone-weights dino_deitsmall8_pretrain.pth "
        "(`unseg weights fetch dino-vits8`), --init CKPT, or --random-init for a pipeline test",
        sources.random_init,
    )
    if path:
        load_strict(model.backbone.vit, read_backbone_state(path), f"backbone weights {path}")
    return model


def build_inpainter(cfg: TrainConfig, sources: WeightSources) -> MAEInpainter | BlurInpainter:
    inpainter: MAEInpainter | BlurInpainter
    opts = _options(cfg)
    if opts.inpainter == "blur":
        inpainter = BlurInpainter()
    else:
        path = _require(
            sources.inpainter,
            "inpainter (MAE)",
            "pass --inpainter-weights "
            "mae_visualize_vit_large_ganloss.pth (`unseg weights fetch mae-vitl16-gan`) or use "
            "--inpainter blur",
            sources.random_init,
        )
        inpainter = load_mae(path, opts.mae) if path else MAEInpainter(opts.mae)
    if cfg.crop % inpainter.tile:
        raise UsageError(f"crop {cfg.crop} must be a multiple of the inpainter's tile ({inpainter.tile})")
    return inpainter


def build_discriminator(cfg: TrainConfig, sources: WeightSources) -> ProjectedDiscriminator:
    opts = _options(cfg)
    path = _require(
        sources.disc_backbone,
        f"discriminator feature network ({opts.disc_net})",
        f"pass --disc-weights with timm's {opts.disc_net} weights (pytorch_model.bin or "
        "model.safetensors), or --random-init for a pipeline test",
        sources.random_init,
    )
    return ProjectedDiscriminator(
        Projector(path, random_init=path is None, net_name=opts.disc_net), opts.disc_resolution
    )
