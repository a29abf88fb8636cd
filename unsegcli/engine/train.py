"""The training loop, the same for every objective: deterministic sampling, the step counter, checkpoints
in our format with exact resume, JSONL metrics, image grids, precision (autocast, fp16 loss scaling), and
data-parallel training under torchrun (gradients averaged across ranks). What a step computes is the
objective's (`objectives.Objective`)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, UnsegError, UsageError
from ..model.checkpoint import read_checkpoint, save_checkpoint
from ..model.state_dict import load_strict
from ..parallel import loader_workers
from ..runtime import AUTOCAST_DTYPES, Shard, effective_precision
from .config import TrainConfig
from .objective import Objective, TrainData
from .visualize import write_grid


class TrainingDiverged(UnsegError):
    """A loss became NaN or infinite: the run stops (as the official trainer does) and keeps its last good
    checkpoint, since every later step would train on garbage."""


class _NonFiniteLoss(Exception):
    def __init__(self, optimizer: str):
        super().__init__(optimizer)
        self.optimizer = optimizer


def average_gradients(params: list[torch.nn.Parameter], world: int, extra: torch.Tensor) -> torch.Tensor:
    """Average the gradients (and ``extra``, a 1-element tensor) over ranks in place, with one all_reduce of
    one flat buffer; returns the averaged ``extra``.

    Not DDP: DDP reduces during backward for one wrapped module per forward, but MOVE runs two optimisers on
    two networks in one step, backpropagates the segmenter's loss through the frozen discriminator, and
    toggles requires_grad between the two halves; averaging after backward, per optimiser, is one code path
    for every objective and gives the numbers one process would get on the global batch. The cost is no
    overlap of communication with backward, small for MOVE's trainable networks (the head and the
    discriminator's heads)."""
    if world <= 1:
        return extra
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads] + [extra.reshape(-1).to(dtype=torch.float32)])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    return flat[-1:]


class RunContext:
    """What `Objective.step` uses for precision and gradient sync (`objectives.StepContext`).

    fp16 gets one GradScaler per optimiser (the official trainer scales the loss too): fp16 gradients
    through the MAE and the EfficientNet can underflow to zero without it. A non-finite loss is flagged at
    backward and checked, across all ranks, before the optimiser steps, so no NaN reaches the weights."""

    def __init__(
        self,
        device: torch.device,
        generator: torch.Generator,
        precision: str,
        optimizers: dict[str, torch.optim.Optimizer],
        world: int = 1,
    ):
        self.device, self.generator, self.world = device, generator, world
        self.optimizers = optimizers
        self.dtype = AUTOCAST_DTYPES[precision]
        self.scalers = {k: torch.amp.GradScaler(device.type) for k in optimizers} if precision == "fp16" else {}
        self._bad: dict[str, torch.Tensor] = {}

    def autocast(self) -> AbstractContextManager[Any]:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor, optimizer: str) -> None:
        self._bad[optimizer] = (~torch.isfinite(loss.detach().float())).float().reshape(1)
        scaler = self.scalers.get(optimizer)
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def step(self, optimizer: str) -> None:
        opt = self.optimizers[optimizer]
        params = [p for group in opt.param_groups for p in group["params"]]
        bad = average_gradients(params, self.world, self._bad.pop(optimizer))
        if bad.item() > 0:  # some rank's loss was NaN/inf: every rank stops here, before stepping
            raise _NonFiniteLoss(optimizer)
        scaler = self.scalers.get(optimizer)
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)  # skipped when the unscaled gradients overflowed; the scale then shrinks
            scaler.update()


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class Trainer:
    """Runs an objective on its data for ``cfg.steps`` steps (or ``cfg.epochs`` epochs), writing to ``out``:
    last.pt, step_*.pt, metrics.jsonl, images/."""

    def __init__(
        self,
        objective: Objective,
        data: TrainData,
        cfg: TrainConfig,
        out: str | Path,
        shard: Shard | None = None,
        device: torch.device | None = None,
    ):
        if (cfg.steps is None) == (cfg.epochs is None):
            raise UsageError("give exactly one of steps or epochs")
        self.objective, self.data, self.cfg, self.out = objective, data, cfg, Path(out)
        self.shard = shard or Shard()
        self.device = device or torch.device("cpu")
        per_rank = math.ceil(len(data) / self.shard.world)
        self.batches_per_epoch = max(per_rank // cfg.batch_size, 1)
        self.total = (
            cfg.steps
            if cfg.steps is not None
            else max(int(cfg.epochs or 0) * self.batches_per_epoch // objective.batches_per_step, 1)
        )
        self.step = 0
        self.saved_step: int | None = None  # the step of OUT/last.pt, when this run wrote or resumed it
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.shard.rank)
        self.ctx = RunContext(
            self.device,
            self.gen,
            effective_precision(self.device, cfg.precision),
            objective.optimizers(),
            self.shard.world,
        )

    # ------------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """The objective's exported model + train_state: every module and optimiser by key, the loss
        scalers, the RNG states and the step, which is all an exact resume needs."""
        name = self.objective.name
        ckpt = self.objective.export({"source": f"unseg train ({name})", "step": self.step})
        ckpt["train_state"] = {
            "objective": name,
            "step": self.step,
            "config": self.cfg.to_dict(),
            # the segmenter's weights are the checkpoint's own state_dict: not stored twice
            "modules": {k: m.state_dict() for k, m in self.objective.modules().items() if k != "segmenter"},
            "optimizers": {k: o.state_dict() for k, o in self.objective.optimizers().items()},
            "scalers": {k: s.state_dict() for k, s in self.ctx.scalers.items()},
            "rng": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        return ckpt

    def save(self, name: str) -> Path:
        path = self.out / name
        if self.shard.is_main:
            save_checkpoint(path, self.checkpoint())
        if name == "last.pt":
            self.saved_step = self.step
        return path

    def resume(self, path: str | Path) -> None:
        ckpt = read_checkpoint(path)
        st = ckpt.get("train_state")
        if not st:
            raise UsageError(f"{path} has no training state to resume from")
        if "objective" not in st:
            raise CheckpointError(
                f"{path} was written by an older unseg train; its training state cannot be resumed",
                "start a new run from it with init",
            )
        if st["objective"] != self.objective.name:
            raise UsageError(f"{path} was trained with objective '{st['objective']}', not '{self.objective.name}'")
        modules, optimizers = self.objective.modules(), self.objective.optimizers()
        if set(st["modules"]) != set(modules) - {"segmenter"} or set(st["optimizers"]) != set(optimizers):
            raise CheckpointError(f"{path}: its training state does not match the objective's networks")
        load_strict(modules["segmenter"], ckpt["state_dict"], str(path))
        for k, sd in st["modules"].items():
            load_strict(modules[k], sd, f"{path} ({k})")
        for k, sd in st["optimizers"].items():
            optimizers[k].load_state_dict(sd)
        for k, scaler in self.ctx.scalers.items():
            if k in st.get("scalers", {}):  # absent when the run so far was not fp16: start scaling afresh
                scaler.load_state_dict(st["scalers"][k])
        self.gen.set_state(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        self.step = self.saved_step = int(st["step"])

    # ------------------------------------------------------------------------ data
    def batches(self) -> Generator[Any, None, None]:
        """Deterministic epochs: a permutation from (seed, epoch), each rank its own slice; a resumed
        run starts at the batch the interrupted one would have read next."""
        cfg, rank, world = self.cfg, self.shard.rank, self.shard.world
        epoch, skip = divmod(self.step * self.objective.batches_per_step, self.batches_per_epoch)
        while True:
            self.data.epoch = epoch
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(self.data))[rank::world]
            order = order[skip * cfg.batch_size : self.batches_per_epoch * cfg.batch_size]
            sampler = [order[i : i + cfg.batch_size].tolist() for i in range(0, len(order), cfg.batch_size)]
            sampler = [b for b in sampler if len(b) == cfg.batch_size] or sampler
            dataset: torch.utils.data.Dataset[Any] = self.data  # type: ignore[assignment] # map-style, by protocol
            loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=sampler, num_workers=cfg.workers, pin_memory=self.device.type == "cuda"
            )
            with loader_workers(loader) as fetched:  # workers signal-safe, stopped when the run stops
                yield from fetched
            epoch, skip = epoch + 1, 0

    # ------------------------------------------------------------------------ run
    def run(self, on_step: Callable[[int, int, dict[str, float]], None] | None = None) -> Path:
        """Train up to ``total`` steps; returns last.pt. A non-finite loss raises `TrainingDiverged`
        before anything is saved, so last.pt stays the last good checkpoint."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        modules = self.objective.modules()
        for module in modules.values():
            module.train()
        metrics = open(self.out / "metrics.jsonl", "a") if self.shard.is_main else None
        start = time.perf_counter()
        batches = self.batches()
        try:
            # never fetch past the last step: a new DataLoader iterator draws from the global RNG,
            # which the checkpoint saves, so an extra fetch would make a resumed run diverge
            while self.step < self.total:
                fetched = [_to_device(next(batches), self.device) for _ in range(self.objective.batches_per_step)]
                try:
                    result = self.objective.step(fetched, self.step, self.ctx)
                except _NonFiniteLoss as e:
                    raise self._diverged(e.optimizer) from None
                self.step += 1
                m = {**result.metrics, "step": self.step, "seconds": round(time.perf_counter() - start, 3)}
                if metrics and (self.step % cfg.log_every == 0 or self.step == self.total):
                    metrics.write(json.dumps(m) + "\n")
                    metrics.flush()
                if self.shard.is_main and cfg.log_images_every and self.step % cfg.log_images_every == 0:
                    write_grid(self.out / "images" / f"step_{self.step:07d}.png", list(result.images.values()))
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < self.total:
                    self.save(f"step_{self.step:07d}.pt")
                    self.save("last.pt")
                if on_step:
                    on_step(self.step, self.total, m)
        finally:
            batches.close()  # stops the data workers now (a signal may be unwinding to exit)
            if metrics:
                metrics.close()
        for module in modules.values():
            module.eval()
        return self.save("last.pt")

    def _diverged(self, optimizer: str) -> TrainingDiverged:
        last = self.out / "last.pt"
        kept = (
            f"{last} (step {self.saved_step}) is kept"
            if self.saved_step is not None and last.exists()
            else "no checkpoint was written"
        )
        return TrainingDiverged(
            f"training stopped at step {self.step + 1}: the {optimizer} loss is not finite (NaN or inf); {kept}",
            "lower the learning rate, or train in fp32/bf16 (fp16 overflows more easily)",
        )
