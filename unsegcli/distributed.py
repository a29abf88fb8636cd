"""Rank, world size and shard selection shared by every command.

Two ways to split work: under torchrun (WORLD_SIZE / RANK / LOCAL_RANK set, a process group for
gathering totals and results) or ``--shard i/N`` (independent processes, e.g. Slurm array tasks,
whose part files `unseg merge` combines). Either way a process takes every N-th item of the sorted
input list, starting at its rank: deterministic, balanced, and independent of what already exists,
so a re-run of any shard resumes that same shard.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

from .errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1
    torchrun: bool = False  # a process group exists: totals and results can be gathered

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def reports(self) -> bool:
        """Whether this process shows progress and a summary: every --shard process, torchrun's rank 0."""
        return self.is_main or not self.torchrun

    def take(self, items: Sequence[T]) -> list[T]:
        return list(items[self.rank::self.world])

    def indices(self, n: int) -> range:
        return range(self.rank, n, self.world)


def parse_shard(spec: str) -> Shard:
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like i/N (e.g. 3/16), not '{spec}'") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {spec}: need 0 <= i < N")
    return Shard(i, n)


def current_shard(spec: str | None = None) -> Shard:
    """--shard wins; else torchrun's environment (initialising the process group); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if spec is not None:
        if world > 1:
            raise UsageError("--shard and torchrun split the work twice; use one of them")
        return parse_shard(spec)
    if world <= 1:
        return Shard()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and os.environ.get("UNSEG_DIST_BACKEND", "") != "gloo"
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_nccl else "gloo")
    return Shard(dist.get_rank(), dist.get_world_size(), torchrun=True)


def local_device(spec: str, shard: Shard) -> str:
    """Under torchrun each rank binds its own GPU (LOCAL_RANK)."""
    if shard.torchrun and spec in ("auto", "cuda", "cuda:0"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return spec


def sum_across(shard: Shard, values: list[int]) -> list[int]:
    """Totals over all ranks (the process group's CPU-capable all_reduce via gather_object)."""
    if not shard.torchrun:
        return values
    import torch.distributed as dist

    gathered: list = [None] * shard.world
    dist.all_gather_object(gathered, values)
    return [sum(col) for col in zip(*gathered)]


def gather_to_main(shard: Shard, obj):
    """Rank 0 receives every rank's object (in rank order); other ranks receive None."""
    if not shard.torchrun:
        return [obj]
    import torch.distributed as dist

    out = [None] * shard.world if shard.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def finish(shard: Shard) -> None:
    if shard.torchrun:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
