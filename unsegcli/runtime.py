"""Where and how a run computes: device and precision resolution, and the shard (rank) lifecycle.

Two ways to split work: under torchrun (WORLD_SIZE / RANK / LOCAL_RANK set, a process group for
gathering totals and results) or a shard spec ``i/N`` (independent processes, e.g. Slurm array tasks,
whose part files are merged afterwards). Either way a process takes every N-th item of the sorted
input list, starting at its rank: deterministic, balanced, and independent of what already exists,
so a re-run of any shard resumes that same shard.

Lifecycle: ``shard = init_shard(spec)`` at the start (starts the process group under torchrun),
``close_shard(shard)`` at the end (barrier, then destroys it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args

from .config import Precision
from .errors import UsageError, param

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

PRECISIONS: tuple[Precision, ...] = get_args(Precision)


def __getattr__(name: str) -> Any:
    """``AUTOCAST_DTYPES``: torch.autocast dtype per precision name (None = no autocast, fp32). Built on
    first use so that importing this module (every command's shard handling) does not import torch."""
    if name == "AUTOCAST_DTYPES":
        import torch

        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_device(spec: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a device that exists here (auto: CUDA when available)."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device '{spec}'", "use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device '{spec}' requested but CUDA is not available", "use cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"device '{spec}' does not exist: {torch.cuda.device_count()} CUDA devices")
    return dev


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively: AVX-512 BF16 or AMX (the ``avx512_bf16`` / ``amx_bf16`` flags of
    /proc/cpuinfo; False where there is none, e.g. off Linux). Without them bf16 is emulated, slower than fp32."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def effective_precision(device: torch.device, precision: str, cpu_bf16: bool = False) -> str:
    """The precision that runs. On GPU, the one asked. On CPU, fp32 whatever was asked, unless ``cpu_bf16``
    (inference): then bf16 runs on a CPU with native bf16, and bf16 elsewhere or fp16 are usage errors."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'", f"use one of {', '.join(PRECISIONS)}")
    if device.type == "cuda" or precision == "fp32":
        return precision
    if not cpu_bf16:
        return "fp32"
    if precision == "fp16":
        raise UsageError(f"{param('precision')} fp16 runs on GPU only", "on CPU use fp32, or bf16 where it is native")
    if not cpu_native_bf16():
        raise UsageError(
            f"{param('precision')} bf16: this CPU has no native bf16 (neither AVX-512 BF16 nor AMX), where it is "
            "slower than fp32",
            "use fp32 here",
        )
    return precision


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1
    torchrun: bool = False  # a process group exists: totals and results can be gathered

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shows_progress(self) -> bool:
        """Whether this process shows progress and a summary: every sharded process, torchrun's rank 0."""
        return self.is_main or not self.torchrun

    def take(self, items: Sequence[T]) -> list[T]:
        return list(items[self.rank :: self.world])


def parse_shard(spec: str) -> Shard:
    """'i/N' -> shard i of N (0-based)."""
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise UsageError(f"shard must look like i/N (e.g. 3/16), not '{spec}'") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"shard {spec}: need 0 <= i < N")
    return Shard(i, n)


def init_shard(spec: str | Shard | None = None) -> Shard:
    """An explicit ``spec`` wins (a Shard is taken as it is: a caller that splits the work itself); else
    torchrun's environment (starting the process group); else one process."""
    if isinstance(spec, Shard):
        return spec
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if spec is not None:
        if world > 1:
            raise UsageError("a shard spec and torchrun split the work twice; use one of them")
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


def launched_shard() -> tuple[Shard, str] | None:
    """torchrun's rank and world size read from its environment, without starting a process group, and an id
    of this launch (the same on every rank, another on the next launch): for work that splits itself and
    meets through files (``pipelines.bench``). None outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    env = ("MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT")
    launch = "-".join(os.environ.get(k, "") for k in env)
    return Shard(int(os.environ.get("RANK", "0")), world), launch


def close_shard(shard: Shard) -> None:
    """Wait for every rank, then destroy the process group (no-op outside torchrun)."""
    if shard.torchrun:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def local_device(spec: str, shard: Shard) -> str:
    """Under torchrun each rank binds its own GPU (LOCAL_RANK)."""
    import torch

    if shard.torchrun and spec in ("auto", "cuda", "cuda:0") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return spec


def sum_across(shard: Shard, values: list[int]) -> list[int]:
    """Totals over all ranks (all_gather_object works on CPU-only process groups too)."""
    if not shard.torchrun:
        return values
    import torch.distributed as dist

    gathered: list[Any] = [None] * shard.world
    dist.all_gather_object(gathered, values)
    return [sum(col) for col in zip(*gathered, strict=True)]


def gather_to_main(shard: Shard, obj: T) -> list[T] | None:
    """Rank 0 receives every rank's object (in rank order); other ranks receive None."""
    if not shard.torchrun:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * shard.world if shard.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out
