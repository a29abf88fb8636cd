"""`unseg predict`, `unseg refine` and `unseg boxes` on WebDataset shards: one output shard (of masks, of label
rows) per input shard.

Each input shard is streamed into a local staging folder (``io.shards.extract_shard``), run through the folder
path itself (``engine.predict.predict_files``, ``refine.runner.refine_files``, ``labels.runner``: the same
decoding, naming, collision and error rules, the same PNG bytes and labels), and the staged outputs are packed
into the output shard (``io.shards.write_shard``), which appears whole or not at all. A shard is the unit of
resume: a re-run skips every output shard that exists.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError, UsageError, param
from ..io.files import check_output_file, dumps_json, remove_stale_temps, staging_folder
from ..io.images import IMAGE_EXTENSIONS, TOO_LARGE, InputListing, scan_inputs
from ..io.masks import read_tag, settings_tag
from ..io.remote import expand_inputs, is_url, url_exists
from ..io.shards import (
    extract_shard,
    is_shard,
    sample_key,
    shard_number,
    shard_stem,
    shard_tag,
    staged_named,
    write_shard,
)
from ..labels.rows import ROW_SUFFIX, failed_row, labels_to_row
from ..labels.runner import BoxOptions, LabelCounts, labelled, plan_tasks
from ..parallel import Failed
from ..refine import RefineOptions
from ..refine.runner import plan_refine, refine_files
from ..runtime import Shard, close_shard, init_shard, sum_across

if TYPE_CHECKING:  # torch: imported where a prediction runs, so that `unseg boxes` and `refine` on shards need none
    from ..engine.predictor import DeferredPredictor, MaskPredictor
    from .predict import PredictionPlan, PredictRequest

PLACEHOLDERS = ("{shard}", "{name}")


def names_shards(out: str) -> bool:
    """Whether ``out`` names output shards: a name with ``{shard}`` or ``{name}``, or one ending in .tar."""
    return is_shard(out) or any(p in out for p in PLACEHOLDERS)


def shard_inputs(inputs: Sequence[str]) -> bool:
    """Whether ``inputs`` are shards (``io.shards.is_shard``); a mix of shards and other inputs is a UsageError."""
    specs = [s for s in expand_inputs(list(inputs)) if s != "-"]
    shards = [s for s in specs if is_shard(s) and (is_url(s) or not os.path.isdir(s))]
    if shards and (len(shards) != len(specs) or "-" in inputs):
        raise UsageError(
            "give either WebDataset shards (.tar) or images, folders and lists, not both in one run",
            f"shards write shards ({param('out')} masks-{{shard}}.tar); run the images separately",
        )
    return bool(shards)


@dataclass(frozen=True)
class ShardJob:
    source: str  # the input shard (path or URL)
    target: str  # its output shard


def output_shards(sources: Sequence[str], out: str) -> list[ShardJob]:
    """Each input shard's output shard: ``out`` with ``{shard}`` (the input's number: ``train-000123.tar`` ->
    ``000123``) and ``{name}`` (its name without .tar) filled in; ``out`` ending in .tar for one input shard;
    else a folder (path or URL) in which each output shard takes its input's file name. Two inputs that would
    write one output shard are a UsageError."""
    if any(p in out for p in PLACEHOLDERS):
        targets = [out.replace("{shard}", shard_number(s)).replace("{name}", shard_stem(s)) for s in sources]
    elif is_shard(out):
        if len(sources) > 1:
            raise UsageError(
                f"{param('out')} {out} is one shard for {len(sources)} input shards",
                f"name each output shard after its input: {param('out')} {out[: -len('.tar')]}-{{shard}}.tar, "
                "or give a folder",
            )
        targets = [out]
    else:
        sep = "/" if is_url(out) else os.sep
        targets = [out.rstrip("/" + os.sep) + sep + shard_stem(s) + ".tar" for s in sources]
    seen: dict[str, str] = {}
    for source, target in zip(sources, targets, strict=True):
        if target in seen:
            raise UsageError(
                f"{seen[target]} and {source} would both write {target}",
                "use {name} in the output pattern (the input's whole name) instead of {shard} (its number)",
            )
        same = target == source if is_url(source) else os.path.abspath(target) == os.path.abspath(source)
        if same:
            raise UsageError(f"{param('out')} {target} is the input shard {source}")
        seen[target] = source
    return [ShardJob(s, t) for s, t in zip(sources, targets, strict=True)]


def _exists(target: str) -> bool:
    return url_exists(target) if is_url(target) else os.path.exists(target)


@dataclass
class ShardPlan:
    prediction: PredictionPlan  # the request, settings tag, shard of the work and device (no listing)
    jobs: list[ShardJob]  # every input shard, in argument order (this process takes its share)


def _jobs(inputs: Sequence[str], out: str) -> list[ShardJob]:
    """The input shards (brace lists expanded; a local one must exist) and their checked output shards."""
    sources = expand_inputs(list(inputs))
    for s in sources:
        if not is_url(s) and not os.path.isfile(s):
            raise UsageError(f"input not found: {s}")
    jobs = output_shards(sources, out)
    for job in jobs:
        if not is_url(job.target):
            check_output_file(job.target, param("out"))
    return jobs


def _same_settings(
    jobs: Sequence[ShardJob], tag: str, which: str = "weights, size, binary, threshold or method options"
) -> None:
    """Refuse (exit 2) to resume into output shards made with other settings (``io.shards.shard_tag``)."""
    for job in jobs:
        found = shard_tag(job.target) if _exists(job.target) else None
        if found is not None and found != tag:
            raise UsageError(
                f"{job.target} was made with other settings ({which})",
                f"pass {param('overwrite')} to recompute every shard with these settings, or choose another "
                f"{param('out')}",
            )


def plan_shards(req: PredictRequest, inputs: Sequence[str], out: str, shard: str | None = None) -> ShardPlan:
    """Check ``req`` and the output shards of the input shards ``inputs`` (paths, URLs, brace lists) before any
    work; refuse to resume when an existing output shard was made with other settings (unless ``overwrite``)."""
    from .predict import check_prediction, start_prediction

    check_prediction(req)
    jobs = _jobs(inputs, out)
    same = functools.partial(_same_settings, jobs)
    return ShardPlan(start_prediction(req, InputListing([], [], {}), same, shard), jobs)


@dataclass
class ShardSummary:
    """Counts of one ``predict_shards`` run, summed over all ranks under torchrun."""

    shards: int = 0  # input shards this run was responsible for
    written_shards: int = 0
    skipped_shards: int = 0  # output shards that existed already
    failed_shards: int = 0  # input shards that could not be read to their end (no output shard)
    images: int = 0
    written: int = 0
    failed: int = 0  # images (members) that failed, and members named as problems
    too_large: int = 0
    seconds: float = 0.0
    ignored: dict[str, int] = field(default_factory=dict)  # members of other extensions (this process's)

    @property
    def rate(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def predict_shards(
    plan: ShardPlan,
    predictor: MaskPredictor | DeferredPredictor,
    *,
    batch_size: int = 1,
    workers: int = 0,
    max_pixels: int | None = None,
    on_error: Callable[[str], None] = lambda message: None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ShardSummary:
    """Predict this process's share of ``plan.jobs``: each input shard -> one output shard of masks named
    ``<key>.png`` (the member's name with .png for its extension), written atomically. Existing output shards
    are skipped unless ``overwrite``. A member that fails is named (``shard.tar:member: reason``) and left out,
    the rest of its shard is written; a shard that cannot be read to its end is named and gets no output, so a
    re-run retries it. ``on_progress(n, total)`` as ``predict_files`` calls it, ``total`` growing per shard."""
    from ..engine.predict import predict_files

    req = plan.prediction.request

    def predict(job: ShardJob, staged: str, out: str, run: _ShardRun) -> tuple[int, int]:
        listing = scan_inputs([staged], key=sample_key)
        for problem in listing.problems:  # two images in one sample
            run.failed(problem)
        run.ignore(listing.ignored)
        result = predict_files(
            predictor,
            listing.items,
            out,
            binary=req.binary,
            threshold=req.threshold,
            overwrite=True,
            batch_size=batch_size,
            workers=workers,
            max_pixels=max_pixels,
            refine=req.refine_options(),
            tag=plan.prediction.tag,
            on_error=run.failed,
            on_progress=functools.partial(_progress, on_progress, run.before) if on_progress else None,
        )
        return result.images, result.written

    return run_shards(plan.jobs, plan.prediction.shard, req.overwrite, IMAGE_EXTENSIONS, predict, on_error)


@dataclass
class _ShardRun:
    """One run over shards, as its per-shard work sees it: report a failure (staged paths renamed to
    ``shard.tar:member``), count ignored members, stage further shards (images), the images done before."""

    summary: ShardSummary
    on_error: Callable[[str], None]
    tmp: str = ""
    names: dict[str, str] = field(default_factory=dict)  # staged folder -> the shard it holds
    before: int = 0

    def name(self, message: str) -> str:
        for folder, spec in self.names.items():
            message = staged_named(message, folder, f"{spec}:")
        return message

    def failed(self, message: str) -> None:
        self.summary.failed += 1
        self.summary.too_large += TOO_LARGE in message
        self.on_error(self.name(message))

    def ignore(self, ignored: dict[str, int]) -> None:
        for ext, n in ignored.items():
            self.summary.ignored[ext] = self.summary.ignored.get(ext, 0) + n

    def stage(self, spec: str, exts: tuple[str, ...], folder: str) -> str:
        """Stage the shard ``spec`` into ``tmp/folder`` (named in messages); InputError when it cannot be read
        to its end."""
        target = os.path.join(self.tmp, folder)
        os.mkdir(target)
        contents = extract_shard(spec, target, exts)
        if contents.damaged:
            raise InputError(contents.damaged)
        self.names[target] = spec
        self.ignore(contents.ignored)
        for problem in contents.problems:
            self.failed(problem)
        return target


def run_shards(
    jobs: Sequence[ShardJob],
    sh: Shard,
    overwrite: bool,
    exts: tuple[str, ...],
    work: Callable[[ShardJob, str, str, _ShardRun], tuple[int, int]],
    on_error: Callable[[str], None],
    settings: str | None = None,
) -> ShardSummary:
    """This process's share of ``jobs``: skip the output shards that exist (unless ``overwrite``), stage each
    input shard's members with one of ``exts``, ``work(job, staged, out, run) -> (inputs, written)`` writes
    the folder ``out``, which becomes the output shard (``settings``: its settings header, for outputs whose
    members hold no tag). Counts summed over torchrun's ranks."""
    summary = ShardSummary()
    mine = sh.take(jobs)
    summary.shards = len(mine)
    for folder in {os.path.dirname(os.path.abspath(j.target)) for j in mine if not is_url(j.target)}:
        remove_stale_temps(folder)  # what a run killed while packing a shard left
    run = _ShardRun(summary, on_error)
    start = time.perf_counter()
    for job in mine:
        if not overwrite and _exists(job.target):
            summary.skipped_shards += 1
            continue
        with staging_folder() as tmp:
            run.tmp, run.names = tmp, {}
            out = os.path.join(tmp, "out")
            os.mkdir(out)
            try:
                staged = run.stage(job.source, exts, "in")
                inputs, written = work(job, staged, out, run)
            except InputError as e:
                summary.failed_shards += 1
                on_error(f"{run.name(e.message)}; no output shard written (a re-run retries it)")
                continue
            run.before += inputs
            summary.images += inputs
            summary.written += written
            write_shard(out, job.target, settings)
            summary.written_shards += 1
    summary.seconds = time.perf_counter() - start
    counted = [f.name for f in fields(summary) if f.type == "int"]
    for name, total in zip(counted, sum_across(sh, [getattr(summary, n) for n in counted]), strict=True):
        setattr(summary, name, total)
    return summary


def _progress(report: Callable[[int, int], None], before: int, n: int, total: int) -> None:
    """One shard's progress as the run's: ``total`` counts the images of the shards done before it too."""
    report(n, before + total)


def _image_specs(jobs: Sequence[ShardJob], images: str) -> dict[str, str]:
    """Each mask shard's images: ``images`` (a folder, a shard) with ``{shard}`` and ``{name}`` filled in from the
    mask shard's name (``shards/train-{shard}.tar``); one that is not there is a UsageError."""
    specs = {
        job.source: images.replace("{shard}", shard_number(job.source)).replace("{name}", shard_stem(job.source))
        for job in jobs
    }
    for spec in specs.values():
        if not is_url(spec) and not os.path.exists(spec):
            raise UsageError(f"{param('images')} not found: {spec}")
    return specs


def _images_root(run: _ShardRun, spec: str) -> str:
    """The local folder of a mask shard's images: a shard staged beside it, a folder as it is."""
    return run.stage(spec, IMAGE_EXTENSIONS, "images") if is_shard(spec) and not os.path.isdir(spec) else spec


def refine_shards(
    masks: Sequence[str],
    images: str,
    out: str,
    options: RefineOptions,
    *,
    workers: int = 0,
    overwrite: bool = False,
    max_pixels: int | None = None,
    shard: str | None = None,
    on_start: Callable[[Shard], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_error: Callable[[str], None] = lambda message: None,
    on_notice: Callable[[str], None] | None = None,
) -> ShardSummary:
    """`unseg refine` on shards of masks: one output shard of refined masks per mask shard, as
    ``pipelines.refine.refine_masks`` refines a folder (``refine.runner``: pairing, settings tag, errors).
    ``images``: a folder, a shard, or a pattern naming each mask shard's image shard with ``{shard}`` or
    ``{name}`` (``shards/train-{shard}.tar``), staged with each mask shard."""
    if options.method == "crf":
        from ..refine.crf import require_crf

        require_crf()
    jobs = _jobs(masks, out)
    image_specs = _image_specs(jobs, images)
    tag = settings_tag(dataclasses.asdict(options))
    if not overwrite:
        _same_settings(jobs, tag, "refine method or options")
    sh = init_shard(shard)
    try:
        if on_start is not None:
            on_start(sh)

        def refine(job: ShardJob, staged: str, out_dir: str, run: _ShardRun) -> tuple[int, int]:
            result = refine_files(
                plan_refine([staged], _images_root(run, image_specs[job.source]), out_dir, tag=tag),
                options,
                workers=workers,
                overwrite=True,
                max_pixels=max_pixels,
                on_progress=functools.partial(_progress, on_progress, run.before) if on_progress else None,
                on_error=run.failed,
                on_notice=on_notice,
            )
            return result.masks, result.written

        return run_shards(jobs, sh, overwrite, (".png",), refine, on_error)
    finally:
        close_shard(sh)


def label_shards(
    masks: Sequence[str],
    out: str,
    options: BoxOptions,
    *,
    images: str | None = None,
    workers: int = 0,
    overwrite: bool = False,
    shard: str | None = None,
    on_start: Callable[[Shard], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_error: Callable[[str], None] = lambda message: None,
) -> tuple[ShardSummary, LabelCounts]:
    """`unseg boxes` from mask shards to label shards: one shard per mask shard whose member ``<key>.json`` is that
    mask's row (``labels.rows``; the labels of ``labels.runner`` with their RLEs, the mask's settings tag). An
    image that fails keeps its row, with its ``error``, and is reported. ``images``: as ``refine_shards`` takes
    them (then file names and sizes come from the images). A label shard's settings header names the box options
    (and whether images were given), so a re-run refuses (exit 2) to resume into shards of other options unless
    ``overwrite``. Returns the shards' counts and the labels' (boxes, images without any), summed over torchrun's
    ranks."""
    if not shard_inputs(masks):
        raise UsageError(
            f"{param('out')} {out} names label shards, which are made from shards of masks (.tar)",
            f"give the mask shards (masks-{{000000..000009}}.tar), or write one label file: {param('out')} pseudo.json",
        )
    jobs = _jobs(masks, out)
    image_specs = _image_specs(jobs, images) if images is not None else {}
    tag = settings_tag({"boxes": dataclasses.asdict(options), "images": images is not None})
    if not overwrite:
        _same_settings(jobs, tag, f"box options, or {param('images')}")
    counts = LabelCounts()
    sh = init_shard(shard)
    try:
        if on_start is not None:
            on_start(sh)

        def label(job: ShardJob, staged: str, out_dir: str, run: _ShardRun) -> tuple[int, int]:
            if not os.listdir(staged):  # a shard without masks: a label shard without rows
                return 0, 0
            plan = plan_tasks([staged], _images_root(run, image_specs[job.source]) if images is not None else None)
            rows = [
                (rel, failed_row(rel, run.name(message), read_tag(os.path.join(staged, rel)) or ""))
                for rel, message in plan.unpaired
            ]
            for message in plan.errors:
                run.failed(message)
            total = run.before + len(plan.unpaired) + len(plan.tasks)

            def tick(n: int) -> None:
                if on_progress is not None:
                    on_progress(n, total)

            tick(len(plan.unpaired))
            for task, result in labelled(plan.tasks, options, workers, rle=True):
                tag = read_tag(task.mask_path) or ""
                rel = Path(task.mask_path).relative_to(staged).as_posix()
                if isinstance(result, Failed):
                    run.failed(result.message)
                    rows.append((rel, failed_row(task.file_name, run.name(result.message), tag)))
                else:
                    rows.append((rel, labels_to_row(result, tag)))
                    counts.boxes += len(result.boxes)
                    counts.empty += not result.boxes
                tick(1)
            for rel, row in rows:
                target = os.path.join(out_dir, sample_key(rel) + ROW_SUFFIX)
                if os.path.exists(target):
                    run.failed(f"{os.path.join(staged, rel)}: a second mask of sample {sample_key(rel)}; left out")
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(dumps_json(row))
            return len(rows), sum(not row["error"] for _, row in rows)

        summary = run_shards(jobs, sh, overwrite, (".png",), label, on_error, settings=tag)
        counts.boxes, counts.empty = sum_across(sh, [counts.boxes, counts.empty])
    finally:
        close_shard(sh)
    counts.images, counts.failed = summary.written, summary.failed
    return summary, counts
