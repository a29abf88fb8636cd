"""`unseg train`: MOVE or Sempart on unlabelled images, or self-training on pseudo-masks."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..config import DEFAULT_WORKERS, PreprocessConfig
from ..engine.config import TrainConfig
from ..methods import load, objectives
from .console import Failures, console, notice, progress_bar
from .options import ArchOpt, DeviceOpt, PrecisionOpt, QuietOpt, SeedOpt, WorkersOpt, declared_flags

EXAMPLES = """
[bold]Examples[/bold]

  unseg train /data/my_images --out runs/move1 --inpainter-weights mae_visualize_vit_large_ganloss.pth --backbone-weights dino_deitsmall8_pretrain.pth --disc-weights tf_efficientnet_lite0.safetensors --epochs 80

  unseg train /data/my_images --out runs/move1 ... --resume

  unseg train /data/DUTS-TR/images --method sempart --backbone-weights dino_deitsmall8_pretrain.pth --out runs/sp1 --epochs 20

  unseg train /data/my_images --from-masks masks/ --out runs/round2 --init runs/move1/last.pt --steps 5000

  torchrun --nproc-per-node 8 -m unsegcli train /data/my_images --out runs/move8 ... --epochs 80

  unseg train demo_data/images --from-masks demo_data/masks --out runs/demo --arch demo --random-init --train-backbone --crop 96 --steps 200
"""  # noqa: E501 - one command per line, as typed


def _known_method(value: str | None) -> str | None:
    """Checks --method against the method table's objectives (methods.objectives)."""
    if value is not None and value not in objectives():
        raise typer.BadParameter(f"'{value}' is not one of {', '.join(objectives())}")
    return value


def _recipes(name: str) -> str:
    """--help's default of TrainConfig field ``name``: MOVE's, and each objective's recipe that differs."""
    shown = {"move": getattr(TrainConfig, name)}
    for objective, entry in objectives().items():
        recipe = load(entry.recipe) if entry.recipe else {}
        if name in recipe:
            shown[objective] = recipe[name]
    return ", ".join(f"{v} ({k})" for k, v in shown.items())


# objective -> its options class (the method table); their fields become this command's flags, one panel each
_OPTIONS = {name: load(entry.options) for name, entry in objectives().items() if entry.options}


@declared_flags(_OPTIONS)
def train(
    images: Annotated[
        list[str], typer.Argument(metavar="IMAGES...", help="Training images: files, folders (recursive) or '-'.")
    ],
    out: Annotated[
        str, typer.Option("--out", "-o", metavar="DIR", help="Run folder: last.pt, step_*.pt, metrics.jsonl, images/.")
    ],
    from_masks: Annotated[
        str | None,
        typer.Option(
            "--from-masks",
            "--masks",
            metavar="DIR",
            help="Pseudo-masks to train on (same relative paths as the images, .png; soft or instance PNGs): "
            "self-training (--method self, implied), or with --method found FOUND's head distilled from them "
            "(found-distil). --masks is the same option.",
        ),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            metavar="|".join(objectives()),
            callback=_known_method,
            show_default="self with --from-masks, else move",
            help="Training objective.",
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Steps to train.")] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Epochs to train (MOVE: 80 on DUTS-TR).")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            "-b",
            min=1,
            show_default=_recipes("batch_size"),
            help="Images per batch.",
        ),
    ] = None,
    crop: Annotated[
        int | None,
        typer.Option(
            "--crop",
            min=16,
            show_default=_recipes("crop"),
            help="Training input size (random resized crops); Sempart also predicts at this square size.",
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            min=0.0,
            show_default=_recipes("lr"),
            help="Learning rate of the segmenter (MOVE: also the discriminator's).",
        ),
    ] = None,
    arch: ArchOpt = "vits8",
    backbone_weights: Annotated[
        str | None,
        typer.Option(
            "--backbone-weights",
            metavar="FILE",
            help="DINO weights: dino_deitsmall8_pretrain.pth, a timm state dict, "
            "model.safetensors, or timm:NAME (online).",
        ),
    ] = None,
    inpainter_weights: Annotated[
        str | None, typer.Option("--inpainter-weights", metavar="FILE", help="mae_visualize_vit_large_ganloss.pth.")
    ] = None,
    disc_weights: Annotated[
        str | None,
        typer.Option(
            "--disc-weights",
            metavar="FILE",
            help="tf_efficientnet_lite0 weights for the projected discriminator: a "
            "file, or timm:tf_efficientnet_lite0 (online).",
        ),
    ] = None,
    init: Annotated[
        str | None, typer.Option("--init", metavar="CKPT", help="Start the segmenter from an unseg checkpoint.")
    ] = None,
    random_init: Annotated[
        bool,
        typer.Option("--random-init", metavar="", help="Allow random frozen networks (tests and pipeline demos only)."),
    ] = False,
    train_backbone: Annotated[
        bool,
        typer.Option(
            "--train-backbone", metavar="", help="Also train the ViT (self-training without a pretrained backbone)."
        ),
    ] = False,
    infer_size: Annotated[
        int, typer.Option("--infer-size", min=8, help="Shorter side stored for `unseg predict` (official: 448).")
    ] = PreprocessConfig.size,
    save_every: Annotated[
        int, typer.Option("--save-every", min=0, help="Checkpoint every N steps (and at the end).")
    ] = TrainConfig.save_every,
    log_every: Annotated[
        int, typer.Option("--log-every", min=1, help="Metrics line every N steps.")
    ] = TrainConfig.log_every,
    log_images_every: Annotated[
        int, typer.Option("--log-images-every", min=0, help="Image grid every N steps (0: never).")
    ] = TrainConfig.log_images_every,
    seed: SeedOpt = TrainConfig.seed,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = TrainConfig.precision,
    workers: WorkersOpt = DEFAULT_WORKERS,
    resume: Annotated[
        bool, typer.Option("--resume", metavar="", help="Continue from OUT/last.pt (models, optimisers, step, RNG).")
    ] = False,
    quiet: QuietOpt = False,
    **options: Any,
) -> None:
    """Train MOVE or Sempart on unlabelled images, or self-train on pseudo-masks."""
    from ..engine.config import WeightSources
    from ..pipelines.train import config_for_method, format_losses, start_training
    from ..runtime import close_shard

    given: dict[str, Any] = {"steps": steps, "epochs": epochs, "batch_size": batch_size, "crop": crop, "lr": lr}
    given |= {"seed": seed, "save_every": save_every, "log_every": log_every, "log_images_every": log_images_every}
    given |= {"workers": workers, "device": device, "precision": precision, "train_backbone": train_backbone}
    given |= {"infer_size": infer_size}
    cfg = config_for_method(method, given, masks=from_masks is not None, arch=arch, options=options)
    sources = WeightSources(backbone_weights, inpainter_weights, disc_weights, init, random_init)
    run = start_training(images, out, cfg, sources, from_masks, resume)
    trainer, report = run.trainer, run.shard.shows_progress  # under torchrun, rank 0 alone speaks
    if report:
        failed = Failures()
        for message in run.unreadable:
            failed(message + " (left out of training)")
    if report and run.missing_masks:
        notice(f"{len(run.missing_masks)} images have no mask under {from_masks} and are left out")
    if report and precision != "fp32" and trainer.device.type == "cpu":
        notice(f"--precision {precision} applies on GPU only; CPU runs fp32")
    if report and run.resumed_from:
        console.print(f"resumed from {run.resumed_from} at step {trainer.step}")
    if report:
        console.print(
            f"training {cfg.objective} · {run.images} images · {trainer.total} steps · device {trainer.device}"
        )
    with progress_bar(trainer.total - trainer.step, "train", quiet or not report) as advance:
        path = trainer.run(lambda step, total, metrics: advance(1, format_losses(metrics)))
    close_shard(run.shard)
    if report:
        console.print(f"wrote {path} (predict with: unseg predict IMAGES --out MASKS --weights {path})")
    if run.unreadable:  # every rank saw the same files: all exit 1
        raise typer.Exit(1)
