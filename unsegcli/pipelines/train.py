"""Starting a training run from files: guard the run folder, find the images (and pair their pseudo-masks),
pick the device and rank, build the objective and the loop, and resume when asked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from ..config import PRESETS, PreprocessConfig, PresetName, validate
from ..engine.config import TrainConfig, WeightSources
from ..engine.data import pair_masks
from ..engine.train import Trainer
from ..errors import InputError, UsageError, param
from ..io.files import atomic_write_bytes, check_output_dir
from ..io.images import check_image, list_inputs, scan_inputs
from ..io.outputs import check_outside_inputs
from ..methods import load, objective_class, training
from ..runtime import Shard, init_shard, local_device, resolve_device

# TrainConfig fields that follow from the method, the preset and infer_size
_DERIVED = ("objective", "options", "preprocess", "model")


def config_for_method(
    method: str | None,
    given: dict[str, Any],
    *,
    masks: bool = False,
    arch: PresetName = "vits8",
    options: dict[str, Any] | None = None,
) -> TrainConfig:
    """The TrainConfig of objective ``method`` (None: "self" when training on pseudo-``masks``, else "move"; with
    ``masks``, an objective's ``with_masks`` entry replaces it).

    ``given``: TrainConfig fields and ``infer_size`` (the shorter side stored for prediction); ``options``: the
    objective's own options (fields of its options class in the method table); None means not given. What is
    not given comes from the objective's recipe over MOVE's TrainConfig defaults, so ``sempart`` trains with
    Sempart's published batch size, crop, learning rate and betas. Exactly one of ``steps`` and ``epochs``.
    ``arch``: the segmenter preset."""
    given = {k: v for k, v in given.items() if v is not None}
    chosen = {k: v for k, v in (options or {}).items() if v is not None}
    if ("steps" in given) == ("epochs" in given):
        raise UsageError(f"give exactly one of {param('steps')} or {param('epochs')}")
    method = method or ("self" if masks else "move")
    entry = training(method)
    if masks and entry.with_masks:  # the method's objective for given masks (FOUND: distillation)
        method, entry = entry.with_masks, training(entry.with_masks)
    if load(entry.objective).needs_masks != masks:
        m = param("method")
        raise UsageError(
            f"{m} {method} needs {param('from_masks')}"
            if not masks
            else f"{m} {method} does not train on masks: drop {param('from_masks')}"
        )
    opts_cls = load(entry.options) if entry.options else None
    names = {f.name for f in fields(opts_cls)} if opts_cls else set()
    foreign = sorted(set(chosen) - names)
    if foreign:
        raise UsageError(f"{', '.join(param(n) for n in foreign)}: not an option of {param('method')} {method}")
    opts = None
    if opts_cls is not None:
        base = opts_cls.for_arch(arch) if hasattr(opts_cls, "for_arch") else opts_cls()
        opts = replace(base, **chosen)
        validate(opts)
    recipe: dict[str, Any] = {k: getattr(TrainConfig, k) for k in ("batch_size", "crop", "lr", "betas")}
    recipe |= {k: v for k, v in (load(entry.recipe) if entry.recipe else {}).items() if k in recipe}
    recipe |= {k: given.pop(k) for k in tuple(recipe) if k in given}
    preprocess = PreprocessConfig(size=given.pop("infer_size", PreprocessConfig.size))
    unknown = sorted(set(given) - {f.name for f in fields(TrainConfig)} | set(given) & set(_DERIVED))
    if unknown:
        raise UsageError(f"not training parameters: {', '.join(unknown)}", "the method, arch and lr set the others")
    return TrainConfig(objective=method, **recipe, model=PRESETS[arch], preprocess=preprocess, options=opts, **given)


def setup_run(out: str | Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None for a fresh run); never lets a fresh run clobber an old one."""
    check_output_dir(out, param("out"))
    last = Path(out) / "last.pt"
    if resume and not last.exists():
        raise UsageError(f"{param('resume')}: no {last}")
    if not resume and last.exists():
        raise UsageError(
            f"{out} already holds a run ({last})",
            f"add {param('resume')} to continue it, or choose another {param('out')}",
        )
    return last if resume else None


def write_config(out: str | Path, cfg: TrainConfig) -> Path:
    """The run's effective configuration, beside its checkpoints (as dinov2 writes config.yaml): what every
    default resolved to, readable without loading a checkpoint."""
    path = Path(out) / "config.json"
    atomic_write_bytes(path, (json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n").encode())
    return path


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
    from_masks: str | None = None,
    resume: bool = False,
) -> TrainingRun:
    """Everything up to the first step; writes the effective ``config.json`` into ``out``. ``from_masks``: the
    folder of pseudo-masks (same relative paths as the images, .png), required exactly by objectives that train
    on masks. Under torchrun this starts the process group; close it with `runtime.close_shard(run.shard)` after
    `run.trainer.run()`."""
    masks = from_masks
    cls = objective_class(cfg.objective)
    if cls.needs_masks and masks is None:
        raise UsageError(f"objective '{cfg.objective}' trains on pseudo-masks: give {param('from_masks')}")
    if not cls.needs_masks and masks is not None:
        raise UsageError(f"objective '{cfg.objective}' does not use pseudo-masks")
    if (cfg.steps is None) == (cfg.epochs is None):
        raise UsageError(f"give exactly one of {param('steps')} or {param('epochs')}")
    # a run folder inside the training images would feed its own image grids back in as training images
    check_outside_inputs([*inputs, masks], out, param("out"))
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
    if shard.is_main:
        write_config(out, cfg)
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
