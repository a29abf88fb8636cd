"""`unseg predict`: images -> 8-bit soft (or binary) mask PNGs at the original image size."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from .app import app
from .console import Failures, console, notice, progress_bar

EXAMPLES = """
[bold]Examples[/bold]

  unseg predict images/ --out masks/

  unseg predict photo.jpg scans/ --out masks/ --binary --threshold 0.5

  find photos -name '*.jpg' | unseg predict - --out masks/ --device cuda --batch-size 32 --precision bf16

  unseg predict images/ --out masks/ --weights weights/move-dino-vits8.pt --max-size 1024

  unseg predict /data/imgs --out masks/ --shard 3/16          # one Slurm array task of 16

  torchrun --nproc-per-node 8 -m unsegcli predict /data/coco/train2017 --out masks/ --precision bf16
"""


def output_path(out_dir: str, rel: str) -> str:
    return os.path.join(out_dir, os.path.splitext(rel)[0] + ".png")


@app.command(epilog=EXAMPLES)
def predict(
    inputs: List[str] = typer.Argument(..., help="Image files, folders (recursive) or '-' for paths on stdin."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; masks keep the inputs' relative paths, as .png."),
    weights: Optional[str] = typer.Option(None, "--weights", "-w",
                                          help="Checkpoint path or known name; default $UNSEG_WEIGHTS, then weights/unseg-demo-synth.pt."),
    binary: bool = typer.Option(False, "--binary", help="Write 0/255 masks at --threshold instead of soft masks."),
    threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0, help="Binarisation threshold for --binary."),
    size: Optional[int] = typer.Option(None, "--size", min=8, help="Shorter side fed to the model [default: the checkpoint's, 448 for MOVE]."),
    max_size: Optional[int] = typer.Option(None, "--max-size", min=8, help="Cap on the longer side after resizing."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N (auto: CUDA when available)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 | fp16 autocast (GPU only; CPU runs fp32)."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", min=1, help="Images per forward pass, bucketed by shape."),
    workers: int = typer.Option(min(4, os.cpu_count() or 1), "--workers", "-j", min=0,
                                help="Decoding processes (0 = decode in the main process)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Recompute masks that already exist (default: skip them, so re-runs resume)."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help="Largest image (pixels) to decode "
                                             "[default: Pillow's decompression-bomb limit, 89,478,485]."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model (GPU; pays off on large runs)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Process only shard i of N (i/N, 0-based) of the sorted inputs; "
                                        "under torchrun the ranks shard automatically."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Run the MOVE segmenter on images and write mask PNGs."""
    import dataclasses
    import time

    from ..distributed import current_shard, finish, local_device, sum_across
    from ..errors import UsageError
    from ..inference import AUTOCAST_DTYPES, Predictor, resolve_device, run_prediction
    from ..io.images import list_inputs
    from ..io.masks import binary_to_uint8, soft_to_uint8, write_mask
    from ..model.checkpoint import load_segmenter
    from ..model.registry import resolve_weights
    from .writer import BackgroundWriter

    if precision not in AUTOCAST_DTYPES:
        raise UsageError(f"--precision must be one of {', '.join(AUTOCAST_DTYPES)}, not '{precision}'")
    if max_pixels is not None:  # decode workers are forked after this, so they inherit it
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = max_pixels
    sh = current_shard(shard)
    quiet = quiet or not sh.reports  # under torchrun, one progress bar and summary: rank 0's
    out_dir = os.path.realpath(out)
    # an output folder inside an input folder must not feed its own masks back in on a re-run
    all_items = [it for it in list_inputs(inputs)
                 if not os.path.realpath(it.path).startswith(out_dir + os.sep)]
    if not all_items:
        raise UsageError("no images found in the inputs", "accepted extensions: jpg jpeg png bmp webp tif tiff")
    items = sh.take(all_items)
    weights_path = resolve_weights(weights)
    dev = resolve_device(local_device(device, sh))
    if device == "auto" and dev.type == "cpu" and not quiet:
        notice("no CUDA device found; running on CPU")
    if dev.type == "cpu" and precision != "fp32":
        if not quiet:
            notice(f"--precision {precision} applies on GPU only; CPU runs fp32")
        precision = "fp32"
    model, prep, _meta = load_segmenter(weights_path)
    changes = {k: v for k, v in (("size", size), ("max_size", max_size)) if v is not None}
    prep = dataclasses.replace(prep, **changes)
    predictor = Predictor(model, prep, dev, precision, compile=compile)

    outputs = [output_path(str(out), it.rel) for it in items]
    todo = [i for i, o in enumerate(outputs) if overwrite or not os.path.exists(o)]
    skipped = len(items) - len(todo)
    failed = Failures()
    written = 0
    start = time.perf_counter()

    def encode(mask):
        return binary_to_uint8(mask, threshold) if binary else soft_to_uint8(mask)

    with BackgroundWriter() as writer, progress_bar(len(todo), "predict", quiet) as advance:
        def on_mask(j: int, mask) -> None:
            nonlocal written
            writer.submit(write_mask, outputs[todo[j]], encode(mask))
            written += 1

        run_prediction(predictor, [items[i].path for i in todo], on_mask, lambda j, message: failed(message),
                       batch_size=batch_size, workers=workers if len(todo) > 1 else 0, on_progress=advance)
    written -= len(writer.errors)
    for message in writer.errors:
        failed(message)
    seconds = time.perf_counter() - start
    n_items, written, skipped, n_failed = sum_across(sh, [len(items), written, skipped, len(failed)])
    if not quiet:
        rate = written / seconds if seconds > 0 else 0.0
        console.print(f"images {n_items} · written {written} · skipped {skipped} (existing) · "
                      f"failed {n_failed} · {rate:.2f} images/s · device {dev}"
                      + (f" {predictor.precision}" if dev.type == "cuda" else "")
                      + (f" · {sh.world} processes" if sh.world > 1 else ""))
    finish(sh)
    if n_failed:
        raise typer.Exit(1)
