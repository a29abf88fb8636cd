"""Checks a run makes on its outputs before it loads a model or reads its inputs: an output folder that is one
of the inputs, and existing outputs that were made with other settings; and what identifies a weights file
in a settings tag. Torch-free.

Messages name parameters (``errors.param``); ``name`` is the output's parameter as a message says it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import UsageError, param
from .masks import first_with_other_tag


def check_not_an_input(inputs: Sequence[str], out: str | os.PathLike, name: str = param("out")) -> None:
    """Writing into a folder that is an input would mix outputs with inputs (and find nothing new to read)."""
    out_real = os.path.realpath(out)
    for spec in inputs:
        if spec != "-" and os.path.isdir(spec) and os.path.realpath(spec) == out_real:
            raise UsageError(f"{name} {out} is the input folder {spec}", f"give {name} a folder of its own")


def check_outside_inputs(inputs: Iterable[str | None], out: str | os.PathLike, name: str = param("out")) -> None:
    """An output folder inside (or equal to) an input folder is read back as input by the next run over that
    folder: `boxes masks/` after `refine masks/ --out masks/refined/` or `show masks/ --out masks/review/`
    would take the refined masks or the overlays for masks. Refused for outputs that hold images or masks."""
    out_real = os.path.realpath(out)
    for spec in inputs:
        if spec is None or spec == "-" or not os.path.isdir(spec):
            continue
        root = os.path.realpath(spec)
        if out_real == root or out_real.startswith(root.rstrip(os.sep) + os.sep):
            raise UsageError(
                f"{name} {out} is inside the input folder {spec}",
                f"give {name} a folder outside the inputs: the next run over {spec} would read its files back",
            )


def check_same_settings(outputs: Iterable[str], tag: str, out: str = param("out")) -> None:
    """Refuse (exit 2) to resume into a folder whose existing outputs were made with other settings: their
    PNGs carry another settings tag (``io.masks``), and skipping them would silently mix two settings."""
    other = first_with_other_tag(outputs, tag)
    if other is not None:
        raise UsageError(
            f"{other} was made with other settings (weights, size, binary, threshold or method options); "
            "resuming would mix outputs of two settings in one folder",
            f"pass {param('overwrite')} to recompute every output with these settings, or choose another {out}",
        )


def weights_identity(path: str | Path, chunk: int = 1 << 20) -> str:
    """What identifies a checkpoint in a settings tag, wherever it lies (shards on several nodes may each
    read a local copy): its size and a hash of its first and last MiB, which every retraining changes."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(chunk))
        f.seek(max(0, size - chunk))
        h.update(f.read(chunk))
    return h.hexdigest()[:16]
