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

from pathlib import Path
from typing import Annotated

import typer

from ..config import Precision, PresetName
from ..evaluation.inputs import Missing, Pick
from ..io.datasets import DatasetName
from ..labels.components import Connectivity
from ..labels.formats import LabelFormat
from ..train.config import InpainterName

# --- common to most commands -----------------------------------------------------------------------
WorkersOpt = Annotated[
    int, typer.Option("--workers", "-j", min=0, help="Worker processes (0 = do the work in the main process).")
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
LabelFormatOpt = Annotated[LabelFormat, typer.Option("--format", "-f", help="Pseudo-label file format.")]

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
InpainterOpt = Annotated[
    InpainterName, typer.Option("--inpainter", help="mae (MOVE) or blur (non-learned, no weights needed).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Same seed, same result.")]
