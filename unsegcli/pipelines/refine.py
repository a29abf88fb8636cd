"""`unseg refine` as one library call: check the request, pair masks with images, tag the settings, take this
process's shard, refine in workers, and sum the counts over the ranks."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError, param
from ..io.files import check_output_dir, remove_stale_temps
from ..io.masks import settings_tag
from ..io.outputs import check_outside_inputs, check_same_settings
from ..refine import RefineOptions
from ..refine.runner import RefineSummary, plan_refine, refine_files
from ..runtime import Shard, close_shard, init_shard, sum_across


@dataclass
class RefineRun:
    """What one ``refine_masks`` call did: this shard's summary, the counts summed over all ranks, its shard."""

    summary: RefineSummary
    masks: int
    written: int
    skipped: int
    failed: int
    seconds: float
    shard: Shard

    @property
    def rate(self) -> float:
        return self.summary.written / self.seconds if self.seconds > 0 else 0.0


def refine_masks(
    masks: Sequence[str],
    images: str,
    out: str | Path,
    options: RefineOptions,
    *,
    workers: int = 0,
    overwrite: bool = False,
    max_pixels: int | None = None,
    shard: str | Shard | None = None,
    root: str | None = None,
    null: bool = False,
    on_start: Callable[[Shard], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> RefineRun:
    """Refine the mask PNGs of ``masks`` (files, folders, '-') against their images under ``images`` into
    ``out`` (same relative paths). Every check that needs no work comes first (usage errors). A re-run skips
    finished outputs, and refuses to mix settings unless ``overwrite``. ``on_start(shard)`` is called once the
    shard is known (the CLI decides there whether this rank shows progress)."""
    check_output_dir(out, param("out"))
    check_outside_inputs([*masks, images], out)
    if root is not None and not Path(root).is_dir():
        raise UsageError(f"{param('root')} {root} is not a folder")
    if options.method == "crf":
        from ..refine.crf import require_crf

        require_crf()  # a missing extra is one usage error before the run, not one failure per mask
    tag = settings_tag(dataclasses.asdict(options))
    tasks = plan_refine(masks, images, str(out), root=root, null=null, tag=tag)
    if not overwrite:  # every output, this shard's or not: all shards of a run must agree
        check_same_settings((t.out_path for t in tasks if not isinstance(t, str)), tag)
    sh = init_shard(shard)
    try:
        for folder in sorted({os.path.dirname(t.out_path) for t in tasks if not isinstance(t, str)}):
            remove_stale_temps(folder)  # what a killed run (SIGKILL) left
        if on_start is not None:
            on_start(sh)
        start = time.perf_counter()
        summary = refine_files(
            tasks,
            options,
            workers=workers,
            overwrite=overwrite,
            shard=sh,
            max_pixels=max_pixels,
            on_progress=on_progress,
            on_error=on_error,
            on_notice=on_notice,
        )
        seconds = time.perf_counter() - start
        masks_n, written, skipped, failed = sum_across(
            sh, [summary.masks, summary.written, summary.skipped, len(summary.failed)]
        )
    finally:
        close_shard(sh)
    return RefineRun(summary, masks_n, written, skipped, failed, seconds, sh)
