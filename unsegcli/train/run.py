"""Starting a training run from files: guard the run folder, find the images (and pair their pseudo-masks),
pick the device and rank, build the objective and the loop, and resume when asked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from ..config import PreprocessConfig, PresetName
from ..errors import InputError, UsageError
from ..io.files import check_output_dir
from ..io.images import check_image, list_inputs, scan_inputs
from ..runtime import Shard, init_shard, local_device, resolve_device
from ..sempart.config import SempartLossConfig
from .config import TrainConfig, WeightSources
from .data import pair_masks
from .loop import Trainer
from .registry import METHOD_DEFAULTS, objective_class

# TrainConfig fields that follow from the method, the preset, the loss options, lr and infer_size
_DERIVED = ("objective", "lr_d", "sempart_loss", "preprocess", "model", "mae", "disc_resolution")
# Sempart's loss options (SempartLossConfig fields) that `config_for_method` takes next to TrainConfig's
SEMPART_LOSS_OPTIONS = ("tau", "lambda_sr", "lambda_gtv_coarse", "lambda_gtv_fine", "reduction_sr", "reduction_gtv")


class RunFolderError(UsageError):
    """The run folder does not fit the request: it holds a run and ``resume`` is off, or it holds none and
    ``resume`` is on (``exists`` says which)."""

    def __init__(self, message: str, last: Path, exists: bool, hint: str | None = None):
        super().__init__(message, hint)
        self.last, self.exists = last, exists


def config_for_method(
    method: str | None,
    given: dict[str, Any],
    *,
    masks: bool = False,
    arch: PresetName = "vits8",
    spell: Callable[[str], str] = str,
) -> TrainConfig:
    """The TrainConfig of objective ``method`` (None: "self" when training on pseudo-``masks``, else "move").

    ``given``: TrainConfig fields, Sempart's loss options (``SEMPART_LOSS_OPTIONS``) and ``infer_size`` (the
    shorter side stored for prediction); None means not given. What is not given comes from the method's
    recipe (``METHOD_DEFAULTS`` over MOVE's TrainConfig defaults), so ``sempart`` trains with Sempart's
    published batch size, crop, learning rate and betas; the discriminator's lr follows the segmenter's.
    Exactly one of ``steps`` and ``epochs``. ``arch``: the model preset. ``spell`` names parameters in errors."""
    given = {k: v for k, v in given.items() if v is not None}
    if ("steps" in given) == ("epochs" in given):
        raise UsageError(f"give exactly one of {spell('steps')} or {spell('epochs')}")
    method = method or ("self" if masks else "move")
    if objective_class(method).needs_masks != masks:
        m = spell("method")
        raise UsageError(
            f"{m} {method} needs {spell('masks')}"
            if not masks
            else f"{m} {method} does not train on masks: drop {spell('masks')}"
        )
    loss = {k: given.pop(k) for k in SEMPART_LOSS_OPTIONS if k in given}
    if loss and method != "sempart":
        raise UsageError(f"the Sempart loss options apply to {spell('method')} sempart only")
    recipe: dict[str, Any] = {"batch_size": TrainConfig.batch_size, "crop": TrainConfig.crop, "lr": TrainConfig.lr}
    recipe |= {"betas": TrainConfig.betas, **METHOD_DEFAULTS.get(method, {})}
    recipe |= {k: given.pop(k) for k in tuple(recipe) if k in given}
    preprocess = PreprocessConfig(size=given.pop("infer_size", PreprocessConfig.size))
    unknown = sorted(set(given) - {f.name for f in fields(TrainConfig)} | set(given) & set(_DERIVED))
    if unknown:
        raise UsageError(f"not training parameters: {', '.join(unknown)}", "the method, arch and lr set the others")
    cfg = TrainConfig(
        objective=method,
        **recipe,
        lr_d=recipe["lr"],
        sempart_loss=SempartLossConfig.from_dict(loss),
        preprocess=preprocess,
        **given,
    )
    return cfg.with_preset(arch)


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
    unreadable: list[str] = field(default_factory=list)  # one message per image left out as unreadable


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
    bad = _unreadable([p for p, _ in found])  # named up front: a bad file must not stop a run hours in
    found = [(p, rel) for p, rel in found if p not in bad]
    if masks is not None:
        paths, mask_paths, missing = pair_masks(found, masks)
    else:
        paths, mask_paths, missing = [p for p, _ in found], None, []
    if not paths:
        raise UsageError("no training images found" + (f" ({len(bad)} unreadable)" if bad else ""))
    device = resolve_device(cfg.device)
    shard = init_shard()
    device = torch.device(local_device(str(device), shard))
    cfg = replace(cfg, batch_size=min(cfg.batch_size, len(paths)), device=str(device))
    torch.manual_seed(cfg.seed)  # the networks' random initialisation
    objective = cls.create(cfg, sources, device)
    trainer = Trainer(objective, cls.dataset(cfg, paths, mask_paths), cfg, out, shard, device)
    if last is not None:
        trainer.resume(last)
    return TrainingRun(trainer, shard, len(paths), missing, last, list(bad.values()))


def _unreadable(paths: list[str]) -> dict[str, str]:
    """path -> the reason, for the images whose files cannot be read (``io.images.check_image``)."""
    bad = {}
    for path in paths:
        try:
            check_image(path)
        except InputError as e:
            bad[path] = e.message
    return bad


def format_losses(metrics: dict[str, float]) -> str:
    """The step's headline losses for a progress line: "loss" and "loss_X" with X a single word (MOVE:
    d, s, adv), shown as "X value"; the weighted terms of a sum (loss_min_max, ...) stay in metrics.jsonl."""
    shown = {k: v for k, v in metrics.items() if k == "loss" or (k.startswith("loss_") and k.count("_") == 1)}
    return " ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in shown.items())
