"""`unseg weights`: list known weights, fetch them (online), import the official MOVE release, inspect
and export checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from ..config import PreprocessConfig, interval
from .options import UnsegCommand, range_callback

# a server silent for a day is gone; the socket itself overflows past ~9.2e9 s (int64 nanoseconds), and 0 or less
# is no wait at all (urllib: non-blocking, or ValueError)
_TIMEOUT = {"min": 0, "min_open": True, "max": 24 * 3600}

weights_app = typer.Typer(no_args_is_help=True, help="List, fetch, import and inspect weights.")

LIST_EXAMPLES = """
[bold]Examples[/bold]

  unseg weights list

  unseg weights list --json | jq '.[] | select(.present)'
"""
FETCH_EXAMPLES = """
[bold]Examples[/bold]

  unseg weights fetch dino-vits8

  unseg weights fetch dino-vits8-300ep found-decoder          # several at once

  unseg weights fetch mae-vitl16-gan --out /data/weights/mae.pth
"""
IMPORT_EXAMPLES = """
[bold]Examples[/bold]

  unseg weights import-move checkpoint-80.pth --backbone dino_deitsmall8_pretrain.pth --out weights/move-dino-vits8.pt

  unseg weights import-move checkpoint-80.pth --args checkpoint-80.args --backbone model.safetensors --out move.pt
"""
INFO_EXAMPLES = """
[bold]Examples[/bold]

  unseg weights info demo-synth

  unseg weights info runs/move1/last.pt | jq .model_config
"""
EXPORT_EXAMPLES = """
[bold]Examples[/bold]

  unseg weights export runs/move1/last.pt --out weights/my-move.pt --note 'DUTS-TR, 80 epochs'
"""


def _print_json(data: Any) -> None:
    """Data on stdout, through the writer that names a full disk and lets a closed pipe stop quietly."""
    from ..io.files import write_output

    write_output("-", (json.dumps(data, indent=2) + "\n").encode())


@weights_app.command("list", epilog=LIST_EXAMPLES, cls=UnsegCommand)
def list_(
    as_json: Annotated[
        bool, typer.Option("--json", metavar="", help="Print JSON on stdout instead of a table.")
    ] = False,
) -> None:
    """Show known weights: name, kind, licence, file, present or not, source and checksum."""
    from rich.table import Table

    from ..model.registry import KNOWN, path_of
    from .console import console

    if as_json:
        rows = [
            {
                "name": w.name,
                "kind": w.kind,
                "file": str(path_of(w.name)),
                "present": path_of(w.name).exists(),
                "url": w.url,
                "source": w.source,
                "sha256": w.sha256,
                "licence": w.licence,
                "how": w.how,
                "description": w.description,
            }
            for w in KNOWN.values()
        ]
        _print_json(rows)
        return
    table = Table(title="known weights")
    for col in ("name", "kind", "present", "licence", "file"):
        table.add_column(col, overflow="fold")
    for w in KNOWN.values():
        present = Text("yes", "green") if path_of(w.name).exists() else Text("no", "red")
        table.add_row(w.name, w.kind, present, w.licence.split(" (")[0].split(":")[0], os.path.relpath(path_of(w.name)))
    console.print(table)
    for w in KNOWN.values():
        how = w.url or w.source or ""
        if w.how:
            how += ("\n    then: " if how else "") + w.how
        console.print(
            Text.assemble(
                (w.name, "bold"),
                f": {w.description}\n    {how}\n    sha256: "
                f"{w.sha256 or 'not published by the source'}\n    licence: {w.licence}",
            ),
            soft_wrap=True,
        )


def _check_out(out: Path) -> None:
    """A checkpoint is one binary file: refuse '-' and unusable locations before any work (exit 2)."""
    from ..errors import UsageError
    from ..io.files import check_output_file, is_special_file

    if str(out) == "-" or is_special_file(out):
        raise UsageError(f"--out {out}: a checkpoint is written to a regular file")
    check_output_file(out, "--out")


@weights_app.command(epilog=FETCH_EXAMPLES, cls=UnsegCommand)
def fetch(
    names: Annotated[
        list[str],
        typer.Argument(metavar="NAME", help="Known names with a download URL (see `unseg weights list`)."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            show_default="its file in the weights folder (`unseg weights list`)",
            help="Destination (one NAME only).",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            callback=range_callback("timeout", _TIMEOUT),
            help=f"Seconds to wait for the server; range {interval(_TIMEOUT)}.",
        ),
    ] = 20.0,
) -> None:
    """Download known weights with a progress bar and checksum (needs internet). Every name is checked before
    the first download."""
    from rich.progress import DownloadColumn, Progress, TaskID, TransferSpeedColumn

    from ..errors import UsageError
    from ..model.download import download
    from ..model.registry import KNOWN, path_of
    from .console import console

    if out is not None and len(names) > 1:
        raise UsageError("--out names one file: give one NAME with it")
    for name in names:
        if name not in KNOWN:
            raise UsageError(f"unknown weights '{name}'", f"known: {', '.join(KNOWN)}")
        w = KNOWN[name]
        if not w.url:
            raise UsageError(f"'{name}' has no direct download", f"create it with `{w.how}`" if w.how else w.source)
        _check_out(out or path_of(name))
    for name in dict.fromkeys(names):
        w, dest = KNOWN[name], out or path_of(name)
        with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console) as p:
            task = p.add_task(dest.name, total=None)

            def advance(n: int, total: int | None, bar: Progress = p, task: TaskID = task) -> None:
                bar.update(task, advance=n, total=total)

            download(str(w.url), dest, sha256=w.sha256, timeout=timeout, on_progress=advance)
        console.print(f"saved {dest}")


@weights_app.command("import-move", epilog=IMPORT_EXAMPLES, cls=UnsegCommand)
def import_move(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Official MOVE checkpoint-N.pth.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Our checkpoint file to write.")],
    backbone: Annotated[
        Path | None,
        typer.Option(
            "--backbone",
            exists=True,
            dir_okay=False,
            help="DINO weights: dino_deitsmall8_pretrain.pth, a timm state dict or model.safetensors.",
        ),
    ] = None,
    args: Annotated[
        Path | None,
        typer.Option(
            "--args",
            exists=True,
            dir_okay=False,
            show_default="beside the checkpoint, else its own args",
            help="checkpoint-N.args.",
        ),
    ] = None,
    size: Annotated[
        int, typer.Option("--size", min=8, help="Inference shorter side stored with the weights (official: 448).")
    ] = PreprocessConfig.size,
    max_size: Annotated[
        int | None, typer.Option("--max-size", min=8, help="Inference longer-side cap stored with the weights.")
    ] = PreprocessConfig.max_size,
) -> None:
    """Convert the official MOVE release + DINO weights into unseg's safe checkpoint format."""
    import warnings

    from ..methods.move.official_import import import_official_move
    from ..model.checkpoint import checkpoint_dict, save_checkpoint
    from .console import console

    _check_out(out)

    def show_warning(
        message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        # shown as raised, so the trust warning comes BEFORE the unpickling it warns about
        console.print(Text.assemble(("warning", "yellow"), f" {message}"), soft_wrap=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show_warning
        model, meta = import_official_move(checkpoint, backbone, args)
    save_checkpoint(out, checkpoint_dict(model, PreprocessConfig(size=size, max_size=max_size), meta))
    console.print(
        f"wrote {out} ({model.cfg.backbone.timm_name or 'custom ViT'}, head widths "
        f"{list(model.cfg.head.widths)}, pos-embed rule {model.cfg.backbone.pos_embed})"
    )


@weights_app.command(epilog=INFO_EXAMPLES, cls=UnsegCommand)
def info(path: Annotated[str, typer.Argument(help="Checkpoint path or known name.")]) -> None:
    """Print a checkpoint's model config, preprocessing and provenance as JSON on stdout."""
    from ..model.checkpoint import read_checkpoint
    from ..model.registry import resolve_weights, sha256_of

    p = resolve_weights(path, env_var=None)
    ckpt = read_checkpoint(p)
    n = sum(v.numel() for v in ckpt["state_dict"].values())
    _print_json(
        {
            "file": str(p),
            "sha256": sha256_of(p),
            "parameters": n,
            "model_config": ckpt["model_config"],
            "preprocess": ckpt["preprocess"],
            "meta": ckpt.get("meta", {}),
        }
    )


@weights_app.command(epilog=EXPORT_EXAMPLES, cls=UnsegCommand)
def export(
    checkpoint: Annotated[str, typer.Argument(help="A training checkpoint (e.g. runs/x/last.pt).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Inference-only checkpoint to write.")],
    note: Annotated[str | None, typer.Option("--note", help="Free text stored in the checkpoint's meta.")] = None,
) -> None:
    """Drop optimiser and discriminator state: a small checkpoint for `unseg predict`."""
    from ..model.checkpoint import read_checkpoint, save_checkpoint
    from ..model.registry import resolve_weights
    from .console import console

    _check_out(out)
    ckpt = read_checkpoint(resolve_weights(checkpoint, env_var=None))
    ckpt.pop("train_state", None)
    if note:
        ckpt["meta"] = {**ckpt.get("meta", {}), "note": note}
    save_checkpoint(out, ckpt)
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
