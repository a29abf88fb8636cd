"""`unseg synth`: generated images with known masks (and a VOC tree), fixtures for every command."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import QuietOpt, SeedOpt

EXAMPLES = """
[bold]Examples[/bold]

  unseg synth demo_data --n 2000 --size 96 --seed 0 --voc

  unseg synth heldout --n 500 --size 96 --seed 1

  unseg synth data --n 8 --size 64 --benchmarks && unseg bench --data data --weights demo=demo-synth --out bench/
"""


def synth(
    out: Annotated[str, typer.Argument(help="Output folder: OUT/images, OUT/masks (0/255, also saliency GT).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images.")] = 100,
    size: Annotated[int, typer.Option("--size", min=16, help="Image height; width is 3/4, 1 or 4/3 of it.")] = 96,
    seed: SeedOpt = 0,
    voc: Annotated[
        bool,
        typer.Option("--voc", metavar="", help="Also write VOCdevkit/VOC2007 (JPEGImages, Annotations, ImageSets)."),
    ] = False,
    benchmarks: Annotated[
        bool,
        typer.Option(
            "--benchmarks",
            metavar="",
            help="Also write the same images in every layout `unseg bench --data OUT` finds: VOCdevkit/VOC2007 and "
            "VOC2012, COCO/ (train2014 + LOST's 20k list, val2017 with RLE masks), ECSSD/, DUTS-TE/, DUT-OMRON/.",
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Generate images with known masks (and a VOC tree) for testing."""
    from ..io.files import check_output_dir
    from ..synth import write_dataset
    from .console import console, progress_bar

    check_output_dir(out, "OUT")

    with progress_bar(n, "synth", quiet) as advance:
        removed = write_dataset(out, n, size, seed, voc, on_progress=advance, benchmarks=benchmarks)
    console.print(
        f"wrote {n} images to {out}/images, masks to {out}/masks"
        + (f", VOC tree to {out}/VOCdevkit/VOC2007" if voc and not benchmarks else "")
        + (f", the seven benchmarks' layouts under {out}" if benchmarks else "")
        + (f"; removed {removed} files of an earlier run there" if removed else "")
    )
