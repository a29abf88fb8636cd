"""The training contract. The loop (`engine.train.Trainer`) owns sampling, the step counter, checkpoints, resume,
metrics, image grids, gradient sync and precision; an objective owns its networks, optimisers, data and
one optimisation step, and the loop never asks which objective it runs.

Adding an objective: write a class with the members of `Objective` below in the method's folder, and name it
in the method's entry of the table (``unsegcli.methods.METHODS``); `unseg train --method name` then offers it.

Contract, in the order the loop uses it:
- ``cls.create(cfg, sources, device)`` builds the networks, moves them to ``device``
  and makes the optimisers. ``torch.manual_seed(cfg.seed)`` has been called just before.
- ``cls.dataset(cfg, images, masks)`` is the data the objective reads (the loop makes batches of
  ``cfg.batch_size`` from it). ``masks`` is given exactly when ``cls.needs_masks``.
- ``step(batches, step, ctx)`` runs one optimisation step on ``batches_per_step`` batches (already on the
  device; ``step`` = steps done before this one, 0-based) and returns `StepOutput`. Precision and gradient
  sync go through ``ctx`` only, naming the optimiser by its key in ``optimizers()``:

      opt.zero_grad(set_to_none=True)
      with ctx.autocast():
          loss = ...
      ctx.backward(loss, "segmenter")   # scaled under fp16; a NaN/inf loss is flagged here...
      ctx.step("segmenter")             # ...and stops the run here, before the optimiser moves; else
                                        # averages gradients over ranks, unscales, steps

- ``modules()`` / ``optimizers()`` are all the state the checkpoint keeps, by key; ``export(meta)`` is the
  checkpoint dict of the model `unseg predict` loads (our format, top-level "state_dict" =
  ``modules()["segmenter"].state_dict()``); the loop adds "train_state" to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from .config import TrainConfig, WeightSources


@dataclass
class StepOutput:
    # logged to metrics.jsonl; "loss" and one-word "loss_X" keys are also shown in the progress bar
    metrics: dict[str, float]
    # rows of the image grid, top to bottom: (B, 3, H, W) ImageNet-normalised images or (B, 1, H, W) in [0, 1]
    images: dict[str, torch.Tensor] = field(default_factory=dict)


class StepContext(Protocol):
    device: torch.device
    # the run's own random stream (CPU), saved in every checkpoint: draw the objective's randomness from it
    generator: torch.Generator

    def autocast(self) -> AbstractContextManager[Any]:
        """The run's precision for forward passes (fp32: a no-op)."""

    def backward(self, loss: torch.Tensor, optimizer: str) -> None:
        """loss.backward(), scaled under fp16 for ``optimizer``; a non-finite loss stops the run."""

    def step(self, optimizer: str) -> None:
        """Average the optimiser's gradients over ranks, unscale them, step (skipped on fp16 overflow)."""


class TrainData(Protocol):
    """A map-style dataset whose augmentation depends on (seed, epoch, index); the loop sets ``epoch``."""

    epoch: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


@runtime_checkable
class Objective(Protocol):
    name: ClassVar[
        str
    ]  # its `unseg train --method` name in the method table; stored in train_state and checked on resume
    needs_masks: ClassVar[bool]  # trains on (image, pseudo-mask) pairs
    batches_per_step: int

    @classmethod
    def create(cls, cfg: TrainConfig, sources: WeightSources, device: torch.device) -> Objective: ...

    @classmethod
    def dataset(cls, cfg: TrainConfig, images: list[str], masks: list[str] | None) -> TrainData: ...

    def modules(self) -> dict[str, torch.nn.Module]: ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    def export(self, meta: dict[str, Any]) -> dict[str, Any]: ...

    def step(self, batches: Sequence[Any], step: int, ctx: StepContext) -> StepOutput: ...
