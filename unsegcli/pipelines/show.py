"""`unseg show` as one library call: read masks or a label file, score them against ground truth through the
one evaluation path (``evaluation/``, as `unseg corloc` does), draw the overlays and write the report."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import UsageError, param
from ..evaluation.inputs import Pick
from ..io.files import check_output_dir
from ..io.outputs import check_outside_inputs
from ..labels.components import Connectivity
from ..review import sources
from ..review.records import FlagRules
from ..review.report import ReportOptions, ReportSummary, write_report


def review_labels(
    labels: str,
    out: str | Path,
    options: ReportOptions,
    rules: FlagRules,
    *,
    images: str | None = None,
    gt: str | None = None,
    split: str = "trainval",
    pick: Pick = "auto",
    threshold: float = 0.5,
    connectivity: Connectivity = 8,
    min_area: float = 0.01,
    multi: bool = False,
    on_error: Callable[[str], None] = lambda message: None,
    on_reading: Callable[[int], Callable[[], None]] = lambda n: lambda: None,
    on_drawing: Callable[[int], Callable[[], None]] = lambda n: lambda: None,
) -> ReportSummary:
    """Write the review report of ``labels`` (a masks folder or a label file) into ``out``. Every input that
    fails is named through ``on_error`` and stays on the page; failures tied to no one image (a malformed
    annotation) are listed on the page too. ``on_reading(n)`` / ``on_drawing(n)`` announce how many masks will
    be read and images drawn (each may return a progress callback). ``options.source`` is filled in here."""
    check_output_dir(out, param("out"))
    check_outside_inputs([labels, images], out)  # overlays and thumbnails are images
    if images is not None and not os.path.isdir(images):
        raise UsageError(f"{param('images')} must be a folder: {images}")
    if not os.path.isdir(labels) and not os.path.isfile(labels):
        raise UsageError(f"{param('labels')} not found: {labels}", "pass a masks folder or a label file")
    problems: list[str] = []

    def problem(message: str) -> None:
        problems.append(message)
        on_error(message)

    gt_images = sources.load_gt(gt, split, problem) if gt is not None else None  # as `unseg corloc` reads it
    if os.path.isdir(labels):
        items = sources.from_masks(
            labels, images, threshold, connectivity, min_area, multi, options.workers, on_error, on_reading
        )
        if not items:
            raise UsageError(f"no mask PNGs under {labels}")
        fmt = "masks"
    else:
        fmt, items = sources.from_label_file(labels, images, on_error, gt_images)
    scored = None
    if gt_images is not None:
        scored = sources.score_against_gt(items, fmt, labels, gt_images, pick, threshold, connectivity, problem)
    source = (
        f"{labels} ({fmt}, {len(items)} images)"
        + (f" · images {images}" if images else "")
        + (f" · GT {gt}" if gt else "")
    )
    return write_report(
        items,
        Path(out),
        replace(options, source=source),
        rules,
        corloc=scored,
        problems=problems,
        on_error=on_error,
        on_start=on_drawing,
    )
