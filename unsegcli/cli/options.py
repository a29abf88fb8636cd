"""Options shared by several commands, declared once as ``Annotated`` aliases.

A command writes ``workers: WorkersOpt = DEFAULT_WORKERS``: the alias carries the flag names, the help
and the validation (ranges, and ``Literal`` choices that Click checks and ``--help`` lists); the
default comes from the library's constant or dataclass field, so it is never copied here. Typer shows
it as ``[default: ...]``. Options whose default is decided later (by a checkpoint, say) default to
``None`` and say what happens in ``show_default``.

Flags use ``metavar=""`` so that ``--help`` shows them as flags, not as ``<bool>`` values.
Help text is Rich markup: write ``\\[`` for a literal bracket.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer
from typer.core import TyperCommand

from ..config import Engine, Precision, PresetName, check_option, interval
from ..errors import UnsegError, UsageError
from ..evaluation.inputs import Missing, Pick
from ..io.datasets import DatasetName
from ..labels.components import Connectivity

# --- common to most commands -----------------------------------------------------------------------
WorkersOpt = Annotated[
    int, typer.Option("--workers", "-j", min=0, help="Worker processes (0 = do the work in the main process).")
]
# where label files go (`unseg boxes`, `unseg merge`)
LabelOutOpt = Annotated[
    str,
    typer.Option(
        "--out",
        "-o",
        metavar="PATH",
        help="Output file, or '-' for stdout; a folder for --format yolo, yolo-seg and voc.",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="No progress bar or summary.")]
JsonOpt = Annotated[
    str | None,
    typer.Option("--json", metavar="FILE", help="Also write the result as JSON to FILE, or '-' for stdout."),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite", metavar="", help="Recompute outputs that already exist (default: skip them, so re-runs resume)."
    ),
]
OutFileOpt = Annotated[str, typer.Option("--out", "-o", metavar="FILE", help="Output file, or '-' for stdout.")]
OutDirOpt = Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder.")]
# how file arguments and '-' lists are named in the outputs (io.images.relative_name)
RootOpt = Annotated[
    str | None,
    typer.Option(
        "--root",
        metavar="DIR",
        show_default="the current folder",
        help="Name outputs by the inputs' paths relative to DIR (files, folders and '-' lists).",
    ),
]
NullOpt = Annotated[
    bool,
    typer.Option("--null", "-0", metavar="", help="Paths on stdin ('-') are NUL-separated, as find -print0 writes."),
]


# --- scale-out and hardware ------------------------------------------------------------------------
def _check_shard(spec: str | None) -> str | None:
    """I/N with 0 <= I < N, checked while parsing so that a bad value is a usage error naming the flag."""
    if spec is None:
        return None
    i, _, n = spec.partition("/")
    if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise typer.BadParameter(f"'{spec}' is not I/N with 0 <= I < N (e.g. 3/16)")
    return spec


ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        callback=_check_shard,
        help="Process only shard I of N (0-based) of the sorted inputs; under torchrun the ranks shard automatically.",
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", metavar="auto|cpu|cuda|cuda:N", help="Compute device (auto: CUDA when available).")
]
PrecisionOpt = Annotated[
    Precision, typer.Option("--precision", help="Autocast precision on GPU; CPU always runs fp32.")
]
InferencePrecisionOpt = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="fp32 (the reference), or autocast bf16/fp16 on GPU; bf16 also on a CPU with native bf16 (AVX-512 "
        "BF16 or AMX), refused on other CPUs. bf16 moves soft masks by ~1e-4 and ViT features by ~1%: a cut on a "
        "tie can change (docs/performance.md).",
    ),
]
EngineOpt = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="What runs the model's forward: torch, or openvino (CPU; ~2x faster at equal fp32 outputs, needs "
        "pip install 'unseg[openvino]'; exported once per input shape, cached under ~/.cache/unseg/openvino).",
    ),
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.")]
MaxPixelsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        min=1,
        show_default="Pillow's decompression-bomb limit, 89,478,485",
        help="Largest image (pixels) to decode; raise it for trusted very large images.",
    ),
]

# --- masks and boxes -------------------------------------------------------------------------------
ThresholdOpt = Annotated[
    float, typer.Option("--threshold", min=0.0, max=1.0, help="Foreground where the mask (in \\[0, 1]) > threshold.")
]
ConnectivityOpt = Annotated[Connectivity, typer.Option("--connectivity", help="Pixel connectivity of components.")]
MinAreaOpt = Annotated[
    float, typer.Option("--min-area", min=0.0, max=1.0, help="Drop boxes under this fraction of the image (MOVE: 1%).")
]

# --- evaluation ------------------------------------------------------------------------------------
DatasetArg = Annotated[
    DatasetName,
    typer.Argument(help="A known benchmark, or 'voc' (any VOC-style folder) / 'coco' (any instances JSON)."),
]
PickOpt = Annotated[
    Pick,
    typer.Option(
        "--pick",
        help="From box files: the 'largest' box or the highest 'score' (auto: score for "
        "detector results, largest for `unseg boxes` files).",
    ),
]
MissingOpt = Annotated[
    Missing, typer.Option("--missing", help="A GT mask without prediction: scored as 'empty', or 'skip'ped.")
]

# --- models and training ---------------------------------------------------------------------------
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        "-w",
        show_default="$UNSEG_WEIGHTS, then the demo checkpoint 'demo-synth'",
        help="Checkpoint path or known name (see `unseg weights list`).",
    ),
]
ArchOpt = Annotated[PresetName, typer.Option("--arch", help="Segmenter shape (config.PRESETS) when not from --init.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Same seed, same result.")]


# --- commands and their generated options ----------------------------------------------------------
class UnsegCommand(TyperCommand):
    """A command whose library errors say parameters (``errors.param``) as this command's own flags, and whose
    number options refuse nan and inf: no count, size, weight or time of unseg is infinite, and typer's ranges
    let inf through (nan fails every comparison, so a bare float option lets both through)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        for p in self.params:
            value = ctx.params.get(str(p.name))
            if any(
                isinstance(v, float) and not math.isfinite(v)
                for v in (value if isinstance(value, list | tuple) else [value])
            ):
                raise typer.BadParameter(
                    f"{value} is not a finite number", ctx, param_hint=f"'{self.flag(str(p.name))}'"
                )
        return rest

    def invoke(self, ctx: Any) -> Any:  # a click Context (Typer's vendored click)
        try:
            return super().invoke(ctx)
        except UnsegError as e:
            e.spell = self.flag  # type: ignore[attr-defined]  # read by cli.app's error mapping
            raise

    def flag(self, name: str) -> str:
        for p in self.params:
            if p.name == name:
                if p.param_type_name == "argument":
                    return str(p.name).upper()
                return next((o for o in p.opts if o.startswith("--")), p.opts[0])
        return "--" + name.replace("_", "-")


def _declared(classes: Sequence[type]) -> dict[str, list[tuple[type, Any, Any]]]:
    """Option name -> (class, field, type) of each class that declares it with ``config.option``."""
    out: dict[str, list[tuple[type, Any, Any]]] = {}
    for cls in classes:
        hints = get_type_hints(cls)
        for f in fields(cls):
            if "help" in f.metadata:
                out.setdefault(f.name, []).append((cls, f, hints[f.name]))
    return out


def _shown_default(entries: list[tuple[type, Any, Any]], labels: dict[type, str]) -> str:
    """One default, or each default with the methods that have it."""
    by_value: dict[object, list[str]] = {}
    for cls, f, _ in entries:
        by_value.setdefault(f.default, []).append(labels[cls])
    if len(by_value) == 1:
        return str(next(iter(by_value)))
    return "; ".join(f"{', '.join(ms)}: {v}" for v, ms in by_value.items())


def _shown_help(entries: list[tuple[type, Any, Any]], labels: dict[type, str]) -> str:
    """One help text, or each text after the methods it is about (a flag several methods declare differently),
    unless it starts with them already ("MaskCut: ...")."""
    by_text: dict[str, list[str]] = {}
    for cls, f, _ in entries:
        by_text.setdefault(f.metadata["help"], []).append(labels[cls])
    if len(by_text) == 1:
        return next(iter(by_text))
    named = {text: ", ".join(ms) + ": " for text, ms in by_text.items()}
    return " ".join(text if text.lower().startswith(n.lower()) else n + text for text, n in named.items())


def range_callback(name: str, meta: Any) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            check_option(name, value, meta)
        except UsageError:
            raise typer.BadParameter(f"{value} is not in {interval(meta)}") from None
        return value

    return check


def declared_flags(
    classes: dict[str, type], panel: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command taking ``**options`` one flag per option field of ``classes`` (label -> options class):
    the flag, help, range and choices come from the field's ``config.option`` metadata, the default is None
    ("the method's own default", each shown in ``--help``), and a field several classes declare is one flag.
    ``panel``: the help panel of them all; None = one panel per label ("--method LABEL")."""
    labels = {cls: label for label, cls in classes.items()}
    declared = _declared(list(classes.values()))

    def add(func: Callable[..., Any]) -> Callable[..., Any]:
        base = inspect.signature(func, eval_str=True)
        params = [p for p in base.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        for name, entries in declared.items():
            _, f, hint = entries[0]
            meta = f.metadata
            extra: dict[str, Any] = {"metavar": meta["metavar"]} if meta.get("metavar") else {}
            if meta.get("min") is not None or meta.get("max") is not None:
                extra["callback"] = range_callback(name, meta)
            help_text = _shown_help(entries, labels) + (f" Range: {interval(meta)}." if "callback" in extra else "")
            aliases = sorted({a for e in entries for a in e[1].metadata.get("aliases", ())})
            opt = typer.Option(
                meta.get("flag") or "--" + name.replace("_", "-"),
                *aliases,
                help=help_text.replace("[", "\\["),
                show_default=_shown_default(entries, labels),
                rich_help_panel=panel or f"--method {', '.join(labels[e[0]] for e in entries)}",
                **extra,
            )
            annotation = Annotated[hint | None, opt]  # type: ignore[valid-type]
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
            func.__annotations__[name] = annotation
        func.__signature__ = base.replace(parameters=params)  # type: ignore[attr-defined]
        return func

    return add
