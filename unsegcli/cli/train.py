"""`unseg train` and `unseg synth`."""
from __future__ import annotations

import os
from typing import List, Optional

import typer

from .app import app
from .console import console, progress_bar

TRAIN_EXAMPLES = """
[bold]Examples[/bold]

  unseg train /data/my_images --out runs/move1 --inpainter-weights mae_visualize_vit_large_ganloss.pth --backbone-weights dino_deitsmall8_pretrain.pth --disc-weights tf_efficientnet_lite0.safetensors --epochs 80

  unseg train /data/my_images --out runs/move1 ... --resume

  unseg train /data/my_images --from-masks masks/ --out runs/round2 --init runs/move1/last.pt --steps 5000

  unseg train demo_data/images --from-masks demo_data/masks --out runs/demo --arch demo --random-init --train-backbone --crop 96 --steps 200
"""

ARCHS = ("vits8", "demo", "tiny")


def arch_config(name: str):
    from ..config import ModelConfig

    if name == "vits8":
        return ModelConfig()  # DINO ViT-S/8 + conv_minc128
    if name == "demo":  # the embedded demo checkpoint's shape: small ViT/8 + the MOVE head, < 20 MB
        return ModelConfig.tiny(embed_dim=128, depth=4, num_heads=4, min_channels=16, img_size=96)
    return ModelConfig.tiny()


@app.command(epilog=TRAIN_EXAMPLES)
def train(
    images: List[str] = typer.Argument(..., help="Training images: files, folders (recursive) or '-'."),
    out: str = typer.Option(..., "--out", "-o", help="Run folder: last.pt, step_*.pt, metrics.jsonl, images/."),
    from_masks: Optional[str] = typer.Option(None, "--from-masks", help="Self-training on these pseudo-masks (same relative "
                                             "paths as the images, .png) instead of the MOVE objective."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Segmenter steps to train."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs to train (MOVE: 80 on DUTS-TR)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Images per step (MOVE: 32)."),
    crop: int = typer.Option(224, "--crop", min=16, help="Random resized crop size (MOVE: 224)."),
    lr: float = typer.Option(2e-4, "--lr", help="AdamW learning rate of the segmenter (and the discriminator)."),
    arch: str = typer.Option("vits8", "--arch", help="Segmenter shape when not from --init: vits8 (DINO ViT-S/8 + "
                             "conv_minc128) | demo | tiny."),
    backbone_weights: Optional[str] = typer.Option(None, "--backbone-weights", help="DINO weights: dino_deitsmall8_pretrain.pth, "
                                                   "a timm state dict, model.safetensors, or timm:NAME (online)."),
    inpainter: str = typer.Option("mae", "--inpainter", help="mae (MOVE) | blur (non-learned, no weights needed)."),
    inpainter_weights: Optional[str] = typer.Option(None, "--inpainter-weights", help="mae_visualize_vit_large_ganloss.pth."),
    disc_weights: Optional[str] = typer.Option(None, "--disc-weights", help="tf_efficientnet_lite0 weights for the projected "
                                               "discriminator: a file, or timm:tf_efficientnet_lite0 (online)."),
    init: Optional[str] = typer.Option(None, "--init", help="Start the segmenter from an unseg checkpoint."),
    random_init: bool = typer.Option(False, "--random-init", help="Allow random frozen networks (tests and pipeline demos only)."),
    train_backbone: bool = typer.Option(False, "--train-backbone", help="Also train the ViT (self-training without a pretrained backbone)."),
    infer_size: int = typer.Option(448, "--infer-size", help="Shorter side stored for `unseg predict` (official: 448)."),
    save_every: int = typer.Option(1000, "--save-every", min=0, help="Checkpoint every N steps (and at the end)."),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Metrics line every N steps."),
    log_images_every: int = typer.Option(500, "--log-images-every", min=0, help="Image grid every N steps (0: never)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data order, crops, shifts and initialisation."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 | fp16 autocast (GPU only)."),
    workers: int = typer.Option(min(4, os.cpu_count() or 1), "--workers", "-j", min=0, help="Data-loading processes."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt (models, optimisers, step, RNG)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train MOVE on unlabelled images, or self-train on pseudo-masks."""
    from ..config import PreprocessConfig
    from ..errors import UsageError
    from ..inference import resolve_device
    from ..train.data import pair_masks
    from ..train.loop import Pretrained, TrainConfig, Trainer, find_training_images

    if arch not in ARCHS:
        raise UsageError(f"--arch must be one of {', '.join(ARCHS)}")
    if inpainter not in ("mae", "blur"):
        raise UsageError("--inpainter must be 'mae' or 'blur'")
    if (steps is None) == (epochs is None):
        raise UsageError("give exactly one of --steps or --epochs")
    found = find_training_images(images)
    if from_masks:
        paths, masks, missing = pair_masks(found, from_masks)
        if missing:
            console.print(f"[yellow]note[/yellow] {len(missing)} images have no mask under {from_masks} and are left out")
    else:
        paths, masks = [p for p, _ in found], None
    if not paths:
        raise UsageError("no training images found")
    dev = resolve_device(device)
    cfg = TrainConfig(out=out, objective="self" if from_masks else "move", steps=steps, epochs=epochs,
                      batch_size=min(batch_size, len(paths)), crop=crop, lr=lr, lr_d=lr, save_every=save_every,
                      log_every=log_every, log_images_every=log_images_every, seed=seed, workers=workers,
                      device=str(dev), precision=precision, train_backbone=train_backbone, inpainter=inpainter,
                      model=arch_config(arch).to_dict(), preprocess=PreprocessConfig(size=infer_size).to_dict())
    pre = Pretrained(backbone_weights, inpainter_weights, disc_weights, init, random_init)
    last = os.path.join(out, "last.pt")
    if resume and not os.path.exists(last):
        raise UsageError(f"--resume: no {last}")
    if not resume and os.path.exists(last):
        raise UsageError(f"{out} already holds a run ({last})", "add --resume to continue it, or choose another --out")
    trainer = Trainer(cfg, paths, pre, masks)
    if resume:
        trainer.resume(last)
        console.print(f"resumed from {last} at step {trainer.step}")
    console.print(f"training {cfg.objective} · {len(paths)} images · {trainer.total} steps · device {dev}")
    with progress_bar(trainer.total - trainer.step, "train", quiet) as advance:
        def show(step, total, metrics):
            losses = " ".join(f"{k[5:] if k.startswith('loss_') else k} {v:.3f}" for k, v in metrics.items()
                              if k.startswith("loss") and k.count("_") <= 1)
            advance(1, losses)

        path = trainer.run(show)
    console.print(f"wrote {path} (predict with: unseg predict IMAGES --out MASKS --weights {path})")


@app.command(epilog="[bold]Examples[/bold]\n\n  unseg synth demo_data --n 2000 --size 96 --seed 0 --voc\n\n"
             "  unseg synth heldout --n 500 --size 96 --seed 1")
def synth(
    out: str = typer.Argument(..., help="Output folder."),
    n: int = typer.Option(100, "--n", min=1, help="Number of images."),
    size: int = typer.Option(96, "--size", min=16, help="Image height; width is 3/4, 1 or 4/3 of it."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same images."),
    voc: bool = typer.Option(False, "--voc", help="Also write VOCdevkit/VOC2007 (JPEGImages, Annotations, ImageSets)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate images with known masks (and a VOC tree) for testing."""
    # OUT/images, OUT/masks (0/255: also the saliency GT), and with --voc OUT/VOCdevkit/VOC2007.
    from ..train.synth import write_dataset

    with progress_bar(n, "synth", quiet) as advance:
        write_dataset(out, n, size, seed, voc, on_progress=advance)
    console.print(f"wrote {n} images to {out}/images, masks to {out}/masks"
                  + (f", VOC tree to {out}/VOCdevkit/VOC2007" if voc else ""))
