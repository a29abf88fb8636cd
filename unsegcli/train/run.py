"""Starting a training run from files: guard the run folder, find the images (and pair their pseudo-masks),
pick the device and rank, build the objective and the loop, and resume when asked."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..errors import UsageError
from ..io.files import check_output_dir
from ..io.images import list_inputs, scan_inputs
from ..runtime import Shard, init_shard, local_device, resolve_device
from .config import TrainConfig, WeightSources
from .data import pair_masks
from .loop import Trainer
from .registry import objective_class


class RunFolderError(UsageError):
    """The run folder does not fit the request: it holds a run and ``resume`` is off, or it holds none and
    ``resume`` is on (``exists`` says which)."""

    def __init__(self, message: str, last: Path, exists: bool, hint: str | None = None):
        super().__init__(message, hint)
        self.last, self.exists = last, exists


def setup_run(out: str | Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None for a fresh run); never lets a fresh run clobber an old one."""
    check_output_dir(out, "run folder")
    last = Path(out) / "last.pt"
    if resume and not last.exists():
        raise RunFolderError(f"nothing to resume: no {last}", last, exists=False)
    if not resume and last.exists():
        raise RunFolderError(
            f"{out} already holds a run ({last})", last, exists=True, hint="resume it, or choose another output folder"
        )
    return last if resume else None


@dataclass
class TrainingRun:
    trainer: Trainer
    shard: Shard
    images: int  # training images (of all ranks)
    missing_masks: list[str]  # images left out because they have no pseudo-mask
    resumed_from: Path | None


def start_training(
    inputs: list[str],
    out: str | Path,
    cfg: TrainConfig,
    sources: WeightSources,
    masks: str | None = None,
    resume: bool = False,
) -> TrainingRun:
    """Everything up to the first step. ``masks``: the folder of pseudo-masks (same relative paths as the
    images, .png), required exactly by objectives that train on masks. Under torchrun this starts the
    process group; close it with `runtime.close_shard(run.shard)` after `run.trainer.run()`."""
    cls = objective_class(cfg.objective)
    if cls.needs_masks and masks is None:
        raise UsageError(f"objective '{cfg.objective}' trains on pseudo-masks: give masks")
    if not cls.needs_masks and masks is not None:
        raise UsageError(f"objective '{cfg.objective}' does not use pseudo-masks")
    if (cfg.steps is None) == (cfg.epochs is None):
        raise UsageError("give exactly one of steps or epochs")
    last = setup_run(out, resume)
    if masks is None:  # images only: two files whose names differ only by extension are two images
        listing = scan_inputs(inputs, key=lambda rel: rel)
        if listing.problems:
            raise UsageError("; ".join(listing.problems))
        found = [(it.path, it.rel) for it in listing.items]
    else:  # a pseudo-mask a/b.png must pair with one image: a/b.jpg and a/b.png together are ambiguous
        found = [(it.path, it.rel) for it in list_inputs(inputs)]
    if masks is not None:
        paths, mask_paths, missing = pair_masks(found, masks)
    else:
        paths, mask_paths, missing = [p for p, _ in found], None, []
    if not paths:
        raise UsageError("no training images found")
    device = resolve_device(cfg.device)
    shard = init_shard()
    device = torch.device(local_device(str(device), shard))
    cfg = replace(cfg, batch_size=min(cfg.batch_size, len(paths)), device=str(device))
    torch.manual_seed(cfg.seed)  # the networks' random initialisation
    objective = cls.create(cfg, sources, device)
    trainer = Trainer(objective, cls.dataset(cfg, paths, mask_paths), cfg, out, shard, device)
    if last is not None:
        trainer.resume(last)
    return TrainingRun(trainer, shard, len(paths), missing, last)


def format_losses(metrics: dict[str, float]) -> str:
    """The step's headline losses for a progress line: "loss" and "loss_X" with X a single word (MOVE:
    d, s, adv), shown as "X value"; the weighted terms of a sum (loss_min_max, ...) stay in metrics.jsonl."""
    shown = {k: v for k, v in metrics.items() if k == "loss" or (k.startswith("loss_") and k.count("_") == 1)}
    return " ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in shown.items())
