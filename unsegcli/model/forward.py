"""How an inference forward runs: one callable per model, whatever computes it.

Predictors never call their module directly; they ask ``inference_forward(module, device, precision, engine)``
for a callable ``x -> outputs`` (a tensor, or a tuple of them, always float32 on the CPU or the device):

- ``torch`` (the default and the parity reference): the module itself, under ``torch.autocast`` for bf16/fp16
  (on CPU, bf16 only on a CPU with native bf16: ``runtime.effective_precision``), ``torch.compile``d if asked;
- ``openvino`` (CPU; the ``openvino`` extra): the module exported once per input shape with ``torch.export``
  and ``openvino.convert_model``, from our own modules, and cached on disk (``export_dir``) by a hash of its
  weights, its structure, the input shape and the versions of the code that made it, so a later run, or
  another process, compiles the stored export instead of exporting again. fp32 runs with
  ``INFERENCE_PRECISION_HINT=f32`` (OpenVINO picks bf16 by itself on AMX CPUs: the hint keeps fp32 fp32),
  bf16 with ``bf16``. Measured against torch fp32 (tests/model/test_forward.py, docs/performance.md): outputs
  within 1e-5 relative in fp32.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import torch
import torch.nn as nn

from ..config import Engine
from ..errors import UsageError, param
from ..runtime import AUTOCAST_DTYPES

ENGINES: tuple[Engine, ...] = get_args(Engine)
INSTALL_HINT = "pip install 'unseg[openvino]'"
# compiled OpenVINO models kept in memory per predictor: each holds its own copy of the weights, and MOVE's
# aspect-keeping resize gives a dataset several input shapes
MAX_COMPILED = 4

Forward = Callable[[torch.Tensor], Any]


def require_openvino() -> Any:
    """The openvino module, or a UsageError naming the install command."""
    try:
        import openvino
    except ImportError:
        raise UsageError(
            f"{param('engine')} openvino needs the optional package openvino, which is not installed", INSTALL_HINT
        ) from None
    return openvino


@functools.cache
def openvino_core() -> Any:
    """This process's one ``openvino.Core``, which every compile goes through. A Core per compile (per input shape)
    crashed the process with SIGSEGV after a few dozen compiles (seen in our test workers on OpenVINO 2026.4;
    ultralytics/ultralytics#25864 and openvinotoolkit/openvino#35338 report the same with several Cores)."""
    return require_openvino().Core()


def openvino_installed() -> bool:
    """Whether the openvino extra is importable (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def check_engine(engine: str, device: torch.device, compile: bool = False) -> None:
    """Usage errors of an engine choice, before any model is loaded."""
    if engine not in ENGINES:
        raise UsageError(f"unknown {param('engine')} '{engine}'", f"use one of {', '.join(ENGINES)}")
    if engine == "openvino":
        if device.type != "cpu":
            raise UsageError(f"{param('engine')} openvino runs on CPU, not on {device}", "use --engine torch on a GPU")
        if compile:
            raise UsageError(f"{param('compile')} is torch's compiler; {param('engine')} openvino compiles by itself")
        require_openvino()


def inference_forward(
    module: nn.Module,
    device: torch.device,
    precision: str = "fp32",
    engine: str = "torch",
    compile: bool = False,
) -> Forward:
    """``module``'s forward (eval mode, on ``device``) as ``engine`` runs it at ``precision`` (module docstring).
    ``precision`` is the one that runs (``runtime.effective_precision``), not the one asked."""
    if precision not in AUTOCAST_DTYPES:
        raise UsageError(f"unknown precision '{precision}'", f"use one of {', '.join(AUTOCAST_DTYPES)}")
    check_engine(engine, device, compile)
    module = module.eval()
    if engine == "openvino":
        if precision == "fp16":
            raise UsageError(f"{param('engine')} openvino runs fp32 or bf16, not fp16")
        return OpenVinoForward(module, precision)
    return TorchForward(module.to(device), device, precision, compile)


def as_float32(out: Any) -> Any:
    """Floating tensors of an output (a tensor or a tuple/list of them) in float32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(as_float32(o) for o in out)
    return out


class TorchForward:
    """The module under autocast (fp32: none), compiled per input shape if asked."""

    def __init__(self, module: nn.Module, device: torch.device, precision: str, compile: bool):
        self.module, self.device = module, device
        self.dtype = AUTOCAST_DTYPES[precision]
        # torch.compile specialises per input shape; predict's buckets keep the number of shapes small
        self.fn: Callable[..., Any] = torch.compile(module, dynamic=False) if compile else module

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> Any:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            return as_float32(self.fn(x.to(self.device, non_blocking=True)))


def export_dir() -> Path:
    """Where OpenVINO exports are cached: ``$XDG_CACHE_HOME/unseg/openvino`` (``~/.cache/unseg/openvino``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "unseg" / "openvino"


@functools.cache
def _code_identity() -> str:
    """The code an export depends on: this package's sources and the versions of torch, timm and OpenVINO."""
    import openvino
    import timm

    h = hashlib.sha256(f"{torch.__version__} {timm.__version__} {openvino.__version__}".encode())
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def module_key(module: nn.Module) -> str:
    """A hash of what ``module`` computes: its weights and buffers, its structure (every submodule's class, its
    repr and whether its attention is fused) and ``_code_identity``. Hashing a ViT-S's weights takes a fraction
    of a second: ``OpenVinoForward`` does it once, not once per input shape."""
    h = hashlib.sha256(_code_identity().encode())
    for name, sub in module.named_modules():
        h.update(f"{name} {type(sub).__qualname__} {sub.extra_repr()} {getattr(sub, 'fused_attn', None)}".encode())
    for name, t in module.state_dict().items():
        h.update(f"{name} {t.dtype} {tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def export_key(module: nn.Module | str, shape: tuple[int, ...]) -> str:
    """The cache key of ``module``'s export at input ``shape`` (``module`` may be its ``module_key``)."""
    base = module if isinstance(module, str) else module_key(module)
    return hashlib.sha256(f"{base} {shape}".encode()).hexdigest()[:32]


def _exact_resampling() -> dict[Any, Any]:
    """Decompositions applied before conversion: bicubic resampling with a scale factor, which DINO's position
    rule uses (``model.backbone.dino_pos_embed``: (g + 0.1) / sqrt(N)); OpenVINO's own bicubic maps coordinates
    by the output size instead, 0.36 off on a resized position table, the decomposed ops within 3e-6."""
    from torch._decomp import get_decompositions

    ops = torch.ops.aten.upsample_bicubic2d
    return get_decompositions([ops.vec, ops.default])


def export_openvino(module: nn.Module, example: torch.Tensor, folder: Path) -> Path:
    """``module`` at ``example``'s shape -> ``folder/model.xml`` (+ ``.bin``), written once: an export is made in
    a temporary folder beside it and renamed into place, so concurrent runs never read half a file."""
    xml = folder / "model.xml"
    if xml.is_file():
        return xml
    ov = require_openvino()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with torch.no_grad():
            exported = torch.export.export(module, (example,)).run_decompositions(_exact_resampling())
            # weights stay float32 (save_model's default compresses them to fp16)
            ov.save_model(ov.convert_model(exported), tmp / "model.xml", compress_to_fp16=False)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process stored the same export first: keep theirs
            if not xml.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml


class OpenVinoForward:
    """The module exported for OpenVINO's CPU plugin per input shape (``export_openvino``), compiled at
    ``precision`` on first use of a shape; the last ``MAX_COMPILED`` shapes stay compiled."""

    def __init__(self, module: nn.Module, precision: str):
        self.module = module.cpu()
        self.hint = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        self.compiled: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.key: str | None = None  # module_key, on first use

    def compiled_for(self, x: torch.Tensor) -> Any:
        shape = tuple(x.shape)
        if shape in self.compiled:
            self.compiled.move_to_end(shape)
            return self.compiled[shape]
        self.key = self.key or module_key(self.module)
        xml = export_openvino(self.module, x, export_dir() / export_key(self.key, shape))
        self.compiled[shape] = openvino_core().compile_model(str(xml), "CPU", self.hint)
        if len(self.compiled) > MAX_COMPILED:
            self.compiled.popitem(last=False)
        return self.compiled[shape]

    def __call__(self, x: torch.Tensor) -> Any:
        x = x.detach().cpu().float().contiguous()
        compiled = self.compiled_for(x)
        results = compiled(x.numpy())
        outs = tuple(torch.from_numpy(results[o].copy()) for o in compiled.outputs)
        return outs[0] if len(outs) == 1 else outs
