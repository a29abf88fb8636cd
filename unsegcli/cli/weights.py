"""`unseg weights`: list known weights, fetch them (online), import the official MOVE release."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from .app import app
from .console import console

weights_app = typer.Typer(no_args_is_help=True, help="List, fetch, import and inspect weights.")
app.add_typer(weights_app, name="weights")

IMPORT_EXAMPLES = """
[bold]Examples[/bold]

  unseg weights import-move checkpoint-80.pth --backbone dino_deitsmall8_pretrain.pth --out weights/move-dino-vits8.pt

  unseg weights import-move checkpoint-80.pth --args checkpoint-80.args --backbone model.safetensors --out move.pt
"""


@weights_app.command("list", epilog="[bold]Examples[/bold]\n\n  unseg weights list\n\n  unseg weights list --json | jq '.[] | select(.present)'")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table.")) -> None:
    """Show known weights: name, kind, file, present or not, source and checksum."""
    from rich.table import Table

    from ..model.registry import KNOWN, path_of

    rows = [{"name": w.name, "kind": w.kind, "file": str(path_of(w.name)), "present": path_of(w.name).exists(),
             "url": w.url, "source": w.source, "sha256": w.sha256, "how": w.how, "description": w.description}
            for w in KNOWN.values()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="known weights")
    for col in ("name", "kind", "present", "file"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["kind"], "[green]yes[/green]" if r["present"] else "[red]no[/red]",
                      os.path.relpath(r["file"]))
    console.print(table)
    for r in rows:
        how = r["url"] or r["source"] or ""
        if r["how"]:
            how += ("\n    then: " if how else "") + r["how"]
        console.print(f"[bold]{r['name']}[/bold]: {r['description']}\n    {how}\n    sha256: "
                      f"{r['sha256'] or 'not published by the source'}", soft_wrap=True)


@weights_app.command(epilog="[bold]Examples[/bold]\n\n  unseg weights fetch dino-vits8\n\n  unseg weights fetch mae-vitl16-gan --out /data/weights/mae.pth")
def fetch(
    name: str = typer.Argument(..., help="A known name with a download URL (see `unseg weights list`)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Destination [default: the file in weights/]."),
    timeout: float = typer.Option(20.0, "--timeout", help="Seconds to wait for the server."),
) -> None:
    """Download known weights with a progress bar and checksum (needs internet)."""
    from ..errors import UsageError
    from ..model.download import download
    from ..model.registry import KNOWN, path_of

    if name not in KNOWN:
        raise UsageError(f"unknown weights '{name}'", f"known: {', '.join(KNOWN)}")
    w = KNOWN[name]
    if not w.url:
        raise UsageError(f"'{name}' has no direct download", f"create it with `{w.how}`" if w.how else w.source)
    dest = out or path_of(name)
    download(w.url, dest, sha256=w.sha256, timeout=timeout, console=console)
    console.print(f"saved {dest}")


@weights_app.command("import-move", epilog=IMPORT_EXAMPLES)
def import_move(
    checkpoint: Path = typer.Argument(..., exists=True, dir_okay=False, help="Official MOVE checkpoint-N.pth."),
    backbone: Optional[Path] = typer.Option(None, "--backbone", exists=True, dir_okay=False,
                                            help="DINO weights: dino_deitsmall8_pretrain.pth, a timm state dict or model.safetensors."),
    args: Optional[Path] = typer.Option(None, "--args", exists=True, dir_okay=False,
                                        help="checkpoint-N.args [default: beside the checkpoint, else its own args]."),
    out: Path = typer.Option(..., "--out", "-o", help="Our checkpoint file to write."),
    size: int = typer.Option(448, "--size", help="Inference shorter side stored with the weights (official: 448)."),
    max_size: Optional[int] = typer.Option(None, "--max-size", help="Inference longer-side cap stored with the weights."),
) -> None:
    """Convert the official MOVE release + DINO weights into unseg's safe checkpoint format."""
    import warnings

    from ..config import PreprocessConfig
    from ..model.checkpoint import checkpoint_dict, import_official_move, save_checkpoint

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, meta = import_official_move(checkpoint, backbone, args)
    for w in caught:
        console.print(f"[yellow]warning[/yellow] {w.message}")
    save_checkpoint(out, checkpoint_dict(model, PreprocessConfig(size=size, max_size=max_size), meta))
    console.print(f"wrote {out} ({model.cfg.backbone.timm_name or 'custom ViT'}, head widths "
                  f"{list(model.cfg.head.widths)}, pos-embed rule {model.cfg.backbone.pos_embed})")


@weights_app.command(epilog="[bold]Examples[/bold]\n\n  unseg weights info weights/unseg-demo-synth.pt")
def info(path: str = typer.Argument(..., help="Checkpoint path or known name.")) -> None:
    """Print a checkpoint's model config, preprocessing and provenance as JSON on stdout."""
    from ..model.checkpoint import read_checkpoint
    from ..model.registry import resolve_weights, sha256_of

    p = resolve_weights(path, env_var=None)
    ckpt = read_checkpoint(p)
    n = sum(v.numel() for v in ckpt["state_dict"].values())
    typer.echo(json.dumps({"file": str(p), "sha256": sha256_of(p), "parameters": n,
                           "model_config": ckpt["model_config"], "preprocess": ckpt["preprocess"],
                           "meta": ckpt.get("meta", {})}, indent=2))


@weights_app.command(epilog="[bold]Examples[/bold]\n\n  unseg weights export runs/move1/last.pt --out weights/my-move.pt --note 'DUTS-TR, 80 epochs'")
def export(
    checkpoint: str = typer.Argument(..., help="A training checkpoint (e.g. runs/x/last.pt)."),
    out: Path = typer.Option(..., "--out", "-o", help="Inference-only checkpoint to write."),
    note: Optional[str] = typer.Option(None, "--note", help="Free text stored in the checkpoint's meta."),
) -> None:
    """Drop optimiser and discriminator state: a small checkpoint for `unseg predict`."""
    from ..model.checkpoint import read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(checkpoint)
    ckpt.pop("train_state", None)
    if note:
        ckpt["meta"] = {**ckpt.get("meta", {}), "note": note}
    save_checkpoint(out, ckpt)
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
