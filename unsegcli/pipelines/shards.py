"""`unseg predict` on WebDataset shards: one output shard of masks per input shard.

Each input shard is streamed into a local staging folder (``io.shards.extract_shard``), predicted by the
folder path itself (``engine.predict.predict_files``: the same decoding, naming, collision and error rules,
the same PNG bytes), and the staged masks are packed into the output shard (``io.shards.write_shard``), which
appears whole or not at all. A shard is the unit of resume: a re-run skips every output shard that exists.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

from ..engine.predict import predict_files
from ..engine.predictor import MaskPredictor
from ..errors import InputError, UsageError, param
from ..io.files import check_output_file, remove_stale_temps
from ..io.images import IMAGE_EXTENSIONS, TOO_LARGE, InputListing, scan_inputs
from ..io.remote import expand_inputs, is_url, url_exists
from ..io.shards import extract_shard, is_shard, sample_key, shard_number, shard_stem, shard_tag, write_shard
from ..runtime import sum_across
from .predict import PredictionPlan, PredictRequest, check_prediction, start_prediction

PLACEHOLDERS = ("{shard}", "{name}")


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
                f"name each output shard after its input: {param('out')} masks-{{shard}}.tar, or give a folder",
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


def plan_shards(req: PredictRequest, inputs: Sequence[str], out: str, shard: str | None = None) -> ShardPlan:
    """Check ``req`` and the output shards of the input shards ``inputs`` (paths, URLs, brace lists) before any
    work; refuse to resume when an existing output shard was made with other settings (unless ``overwrite``)."""
    check_prediction(req)
    sources = expand_inputs(list(inputs))
    for s in sources:
        if not is_url(s) and not os.path.isfile(s):
            raise UsageError(f"input not found: {s}")
    jobs = output_shards(sources, out)
    for job in jobs:
        if not is_url(job.target):
            check_output_file(job.target, param("out"))

    def same_settings(tag: str) -> None:
        for job in jobs:
            found = shard_tag(job.target) if _exists(job.target) else None
            if found is not None and found != tag:
                raise UsageError(
                    f"{job.target} was made with other settings (weights, size, binary, threshold or method options)",
                    f"pass {param('overwrite')} to recompute every shard with these settings, or choose another "
                    f"{param('out')}",
                )

    return ShardPlan(start_prediction(req, InputListing([], [], {}), same_settings, shard), jobs)


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
    predictor: MaskPredictor,
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
    req, sh = plan.prediction.request, plan.prediction.shard
    summary = ShardSummary()
    mine = sh.take(plan.jobs)
    summary.shards = len(mine)
    for folder in {os.path.dirname(os.path.abspath(j.target)) for j in mine if not is_url(j.target)}:
        remove_stale_temps(folder)  # what a run killed while packing a shard left
    known = 0  # images of the shards before this one
    start = time.perf_counter()
    for job in mine:
        if not req.overwrite and _exists(job.target):
            summary.skipped_shards += 1
            continue
        with tempfile.TemporaryDirectory(prefix="unseg-shard-") as tmp:
            staged, masks = os.path.join(tmp, "in"), os.path.join(tmp, "out")
            os.mkdir(staged)
            os.mkdir(masks)

            def named(message: str, staged: str = staged, source: str = job.source) -> str:
                return message.replace(staged + os.sep, f"{source}:")

            def failed(message: str) -> None:
                summary.failed += 1
                summary.too_large += TOO_LARGE in message
                on_error(named(message))

            try:
                contents = extract_shard(job.source, staged, IMAGE_EXTENSIONS)
                if contents.damaged:
                    raise InputError(contents.damaged)
            except InputError as e:
                summary.failed_shards += 1
                on_error(f"{e.message}; no output shard written (a re-run retries it)")
                continue
            for ext, n in contents.ignored.items():
                summary.ignored[ext] = summary.ignored.get(ext, 0) + n
            for problem in contents.problems:
                failed(problem)
            listing = scan_inputs([staged], key=sample_key)
            for problem in listing.problems:  # two images in one sample
                failed(problem)
            for ext, n in listing.ignored.items():
                summary.ignored[ext] = summary.ignored.get(ext, 0) + n
            result = predict_files(
                predictor,
                listing.items,
                masks,
                binary=req.binary,
                threshold=req.threshold,
                overwrite=True,
                batch_size=batch_size,
                workers=workers,
                max_pixels=max_pixels,
                refine=req.refine_options(),
                tag=plan.prediction.tag,
                on_error=lambda message: failed(message),
                on_progress=functools.partial(_progress, on_progress, known) if on_progress else None,
            )
            known += result.images
            summary.images += result.images
            summary.written += result.written
            write_shard(masks, job.target)
            summary.written_shards += 1
    summary.seconds = time.perf_counter() - start
    counted = [f.name for f in fields(summary) if f.type == "int"]
    for name, total in zip(counted, sum_across(sh, [getattr(summary, n) for n in counted]), strict=True):
        setattr(summary, name, total)
    return summary


def _progress(report: Callable[[int, int], None], before: int, n: int, total: int) -> None:
    """One shard's progress as the run's: ``total`` counts the images of the shards done before it too."""
    report(n, before + total)
