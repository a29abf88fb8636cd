"""`unseg bench` as one library call: every method × backbone × benchmark, scored by the benchmark's protocol,
beside the published numbers.

Discovery (``io.benchmarks``) finds the benchmarks under the data folder. Each method run (a training-free
method on a backbone, a checkpoint, or an external tool's masks) and benchmark make one job: its masks are
predicted by the same calls as `unseg predict` (``pipelines.predict``, ``engine.predict.predict_files``) into a
folder named by the prediction's settings tag, refined by `unseg refine`'s call (``pipelines.refine``) for the
"+Bilateral" rows, and scored by `unseg corloc` / `unseg eval saliency`'s calls (``evaluation``); a detection
benchmark's masks become boxes by `unseg boxes --multi --format coco`'s call (``labels.runner``) and are scored
by `unseg eval detection`'s, for box AP and mask AP. A cell's record
is cached under its own settings tag, so a re-run reads it back and computes nothing; a larger ``limit`` predicts
only the images not done yet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import resource
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UnsegError, UsageError, param
from ..evaluation.corloc import evaluate_corloc
from ..evaluation.detection import evaluate_detection
from ..evaluation.saliency import evaluate_saliency
from ..io.benchmarks import Benchmark, BenchmarkSpec, Published, discover, published
from ..io.datasets import load_gt
from ..io.files import atomic_write_bytes, check_output_dir, dumps_json
from ..io.labels import read_coco_document
from ..io.masks import mask_path_for, settings_tag
from ..methods import CHECKPOINT, METHODS, method_options, predict_methods
from ..refine import RefineMethod, RefineOptions
from ..runtime import Shard, launched_shard, parse_shard
from .predict import PredictRequest, build_predictor, plan_prediction, prediction_settings
from .refine import refine_masks

REFINE: RefineMethod = (
    "bilateral"  # the papers' "+Bilateral" / "+BS" rows: MOVE Table 1, TokenCut and LOST's saliency rows
)


@dataclass(frozen=True)
class BenchRequest:
    """What to compare. ``methods``: names of the method table (``methods.predict_methods``; "move" runs the
    checkpoint ``weights["move"]`` or the default one); ``backbones``: the backbones the training-free methods
    run on (none: each method's own); ``options``: a training-free method's options other than its official
    defaults (values as text, converted by the option's type); ``weights``: checkpoint runs, label -> path or
    known name; ``preds``: external runs, label -> a folder holding ``<benchmark>/`` (masks) or
    ``<benchmark>.json`` (CorLoc boxes)."""

    data: str
    out: str
    methods: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ()
    weights: dict[str, str] = field(default_factory=dict)
    preds: dict[str, str] = field(default_factory=dict)
    options: dict[str, dict[str, str]] = field(default_factory=dict)  # method -> option -> value (as text)
    datasets: tuple[str, ...] = ()
    refine: bool = True
    limit: int | None = None
    device: str = "auto"
    batch_size: int = 1
    workers: int = 0
    shard: str | None = None  # "i/N": predict this process's share of every job's images, score nothing


@dataclass(frozen=True)
class Run:
    """One row group of the table: a method table entry (with a backbone), a checkpoint, or external masks."""

    label: str
    method: str | None  # None: external predictions
    backbone: str | None = None  # training-free: the backbone asked for (None: the method's own)
    weights: str | None = None  # checkpoint: path or known name (None: $UNSEG_WEIGHTS, then the default)
    pred: str | None = None  # external: the folder
    options: tuple[tuple[str, Any], ...] = ()  # training-free: options other than the method's defaults

    @property
    def slug(self) -> str:
        """The run's name in file names: a backbone file by its name (the settings tag tells files apart)."""
        backbone = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(self.backbone).name) if self.backbone else ""
        return self.label + (f"@{backbone}" if backbone else "")

    def request(self, device: str) -> PredictRequest:
        assert self.method is not None
        options = dict(self.options) | ({"backbone": self.backbone} if self.backbone else {})
        return PredictRequest(method=self.method, weights=self.weights, options=options, device=device)


@dataclass
class BenchResult:
    cells: list[dict[str, Any]]  # each cell's record (results.json)
    missing: list[BenchmarkSpec]
    failed: int  # cells that could not run and inputs that failed inside cells
    computed: int  # cells computed by this call (the others were read from the cache)
    results_md: Path | None  # None: a shard or a torchrun rank other than 0, which predict and score nothing
    results_json: Path | None
    predicted: int = 0  # masks this call's shard predicted (the prediction stage)


def plan_runs(req: BenchRequest) -> list[Run]:
    """The runs ``req`` asks for; a method the table does not have, or labels used twice, are usage errors."""
    known = predict_methods()
    unknown = [m for m in req.methods if m not in known and m not in req.weights]
    if unknown:
        raise UsageError(
            f"{param('methods')}: {', '.join(unknown)} not in the method table",
            f"choose from {', '.join(known)}, or name a checkpoint with {param('weights')} NAME=PATH",
        )
    runs: list[Run] = []
    # the methods that run from a backbone (the training-free ones, and FOUND's published decoder)
    free = [m for m in req.methods if m in known and m != CHECKPOINT]
    if req.backbones and not free:
        raise UsageError(
            f"{param('backbones')} applies to the methods run on a backbone; none is in {param('methods')}"
        )
    foreign = sorted(set(req.options) - set(free))
    if foreign:
        raise UsageError(f"{param('option')} {', '.join(foreign)}: not a method of {param('methods')} with options")
    for m in free:
        opts = _typed_options(m, req.options.get(m, {}))
        runs += [Run(m, m, b, options=opts) for b in req.backbones] if req.backbones else [Run(m, m, options=opts)]
    checkpoints = dict(req.weights)
    if CHECKPOINT in req.methods and CHECKPOINT not in checkpoints:
        checkpoints = {CHECKPOINT: None, **checkpoints}  # type: ignore[dict-item]
    runs += [Run(label, CHECKPOINT, weights=w) for label, w in checkpoints.items()]
    for label, folder in req.preds.items():
        if not os.path.isdir(folder):
            raise UsageError(f"{param('pred')} {label}={folder}: not a folder")
        runs.append(Run(label, None, pred=folder))
    labels = [r.label + (f" on {r.backbone}" if r.backbone else "") for r in runs]
    twice = sorted({s for s in labels if labels.count(s) > 1})
    if twice:
        raise UsageError(f"{', '.join(twice)} named twice by {param('methods')}, {param('weights')} or {param('pred')}")
    if not runs:
        raise UsageError(f"nothing to run: give {param('methods')}, {param('weights')} or {param('pred')}")
    return runs


def _typed_options(method: str, given: dict[str, str]) -> tuple[tuple[str, Any], ...]:
    """Option values given as text -> the types of the method's options, checked by ``methods.method_options``."""
    defaults = method_options(method)
    typed: dict[str, Any] = {}
    for name, text in given.items():
        kind: Any = type(getattr(defaults, name, ""))
        try:
            typed[name] = (text.lower() in ("1", "true", "yes")) if kind is bool else kind(text)
        except ValueError:
            raise UsageError(f"{param('option')} {method}.{name}={text}: not a {kind.__name__}") from None
    method_options(method, **typed)  # options the method does not take, and their ranges
    return tuple(sorted(typed.items()))


# ------------------------------------------------------------------------------------------- measuring


@contextlib.contextmanager
def peak_memory(device: Any) -> Iterator[dict[str, float | None]]:
    """Peak resident memory of this process (MiB) while the block runs, and peak CUDA memory on a GPU. On
    Linux the peak is reset first (/proc/self/clear_refs "5", Linux >= 4.0); elsewhere it is the process's
    peak so far (getrusage), an upper bound."""
    out: dict[str, float | None] = {"rss_mb": None, "cuda_mb": None}
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    cuda = getattr(device, "type", None) == "cuda"
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield out
    finally:
        out["rss_mb"] = _peak_rss_mb()
        if cuda:
            import torch

            out["cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20


def _peak_rss_mb() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


# ------------------------------------------------------------------------------------------ the cells


class _Log:
    """A cell's log file (written at the end, atomically) and the failures it counts."""

    def __init__(self, on_error: Callable[[str], None]):
        self.lines: list[str] = []
        self.failed = 0
        self._on_error = on_error

    def __call__(self, message: str) -> None:
        self.lines.append(message)

    def error(self, message: str) -> None:
        self.failed += 1
        self.lines.append(f"error: {message}")
        self._on_error(message)


@dataclass
class _Job:
    """One run on one benchmark: where its masks go and what its cells are keyed by."""

    run: Run
    bench: Benchmark
    files: list[str]
    keys: list[str]
    masks: Path  # the masks folder (or the external predictions)
    tag: str
    settings: dict[str, Any]
    refine: RefineMethod | None = None  # predicted with `unseg predict --refine` (a method that refines itself)


def _json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, dumps_json(obj))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _folder_signature(path: str) -> str:
    """External predictions change without a settings tag: their cells are keyed by every file's name, size
    and modification time."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.stat(os.path.join(dirpath, name))
            entries.append((os.path.relpath(os.path.join(dirpath, name), path), st.st_size, st.st_mtime_ns))
    return settings_tag({"files": entries})


def _external(run: Run, bench: Benchmark) -> str | None:
    """An external run's predictions for ``bench``: a folder of masks, or a box file (CorLoc)."""
    assert run.pred is not None
    base = os.path.join(run.pred, bench.name)
    if os.path.isdir(base):
        return base
    if bench.spec.protocol == "corloc":
        for ext in (".json", ".jsonl"):
            if os.path.isfile(base + ext):
                return base + ext
    return None


def _published_for(run: Run, bench: str, refine: str | None, table: list[Published]) -> Published | None:
    backbone = run.backbone
    if run.method is not None and run.method != CHECKPOINT and backbone is None:
        backbone = method_options(run.method).backbone  # the method's own default
    for p in table:
        if p.method == run.label and p.dataset == bench and p.refine == refine:
            if p.backbone is None or p.backbone == backbone:
                return p
    return None


def _gt_view(bench: Benchmark, keys: list[str], out: Path) -> Path:
    """The GT folder a limited saliency cell is scored on: links to its first GT masks (the GT folder itself
    when there is no limit), so `unseg eval saliency --gt VIEW` reproduces the cell."""
    if len(keys) == len(bench.keys):
        return bench.gt
    view = out / "gt" / f"{bench.name}-first{len(keys)}"
    if view.is_dir():
        return view
    temp = view.with_name(view.name + f".tmp{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    for rel in keys:
        dst = temp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(os.path.abspath(bench.gt / rel), dst)
        except OSError:  # a file system without links
            shutil.copyfile(bench.gt / rel, dst)
    os.replace(temp, view)
    return view


def _timing(folder: Path) -> dict[str, Any]:
    """The time and memory spent making a folder of masks, over every process that wrote into it."""
    total: dict[str, Any] = {"images": 0, "seconds": 0.0, "rss_mb": None, "cuda_mb": None, "device": None}
    for path in sorted(folder.parent.glob(folder.name + ".timing*.json")):
        part = _read_json(path) or {}
        total["images"] += part.get("images", 0)
        total["seconds"] += part.get("seconds", 0.0)
        for k in ("rss_mb", "cuda_mb"):
            if part.get(k) is not None:
                total[k] = max(total[k] or 0.0, part[k])
        total["device"] = total["device"] or part.get("device")
    return total


def _add_timing(folder: Path, shard: Shard, images: int, seconds: float, memory: dict[str, Any], device: Any) -> None:
    """Add a call's work to ``folder``'s timing: one file per process (shards write at once)."""
    part = f".{shard.rank}of{shard.world}" if shard.world > 1 else ""
    path = folder.with_name(folder.name + f".timing{part}.json")
    timing = _read_json(path) or {"images": 0, "seconds": 0.0}
    timing["images"] += images
    timing["seconds"] += seconds
    for k in ("rss_mb", "cuda_mb"):
        if memory.get(k) is not None:
            timing[k] = max(timing.get(k) or 0.0, memory[k])
    timing["device"] = str(device)
    _json(path, timing)


def _refined_folder(job: _Job) -> Path:
    return job.masks.with_name(job.masks.name + f"-{REFINE}")


def _predict(job: _Job, req: BenchRequest, log: _Log, mine: list[str], shard: Shard) -> int:
    """Predict the masks of the images ``mine`` (this process's share of the job) that are not there yet, with
    `unseg predict`'s calls; add the time and memory to the job's timing. Returns the masks written."""
    from ..engine.predict import predict_files

    todo = [f for f in mine if not (job.masks / mask_path_for(f)).exists()]
    inputs = []
    for f in todo:
        if (job.bench.images / f).exists():
            inputs.append(str(job.bench.images / f))
        else:
            log.error(f"{job.bench.images / f}: image listed by {job.bench.spec.title} not found")
    if not inputs:
        return 0
    whole = Shard()  # the share is taken already: no process group, no second split
    request = dataclasses.replace(job.run.request(req.device), refine=job.refine)
    plan = plan_prediction(request, inputs, job.masks, root=str(job.bench.images), shard=whole)
    with peak_memory(plan.device) as memory:
        predictor = build_predictor(plan)
        summary = predict_files(
            predictor,
            plan.listing.items,
            job.masks,
            batch_size=req.batch_size,
            workers=req.workers,
            tag=plan.tag,
            on_error=log.error,
        )
    _add_timing(job.masks, shard, summary.written, summary.seconds, memory, plan.device)
    log(f"predicted {summary.written} masks in {summary.seconds:.2f} s on {plan.device}; failed {summary.failed}")
    return summary.written


def _refines_itself(job: _Job) -> bool:
    """Whether the job's method applies the solver itself (``Method.refines``: FOUND's gate), so its "+Bilateral"
    masks are predicted whole rather than refined from the raw ones."""
    return job.run.method is not None and REFINE in getattr(METHODS.get(job.run.method), "refines", ())


def _refine(job: _Job, req: BenchRequest, log: _Log, mine: list[str], shard: Shard) -> None:
    """Refine the masks of ``mine`` that are not refined yet by `unseg refine --method bilateral`'s call (the
    "+Bilateral" rows), or, for a method that applies the solver itself by its published rule (FOUND's gate,
    ``Method.refines``), predict them with `unseg predict --refine bilateral`'s call; add the time to the
    refined folder's timing."""
    out = _refined_folder(job)
    if _refines_itself(job):
        _predict(dataclasses.replace(job, masks=out, refine=REFINE), req, log, mine, shard)
        return
    masks = [str(job.masks / mask_path_for(f)) for f in mine]
    todo = [m for m, f in zip(masks, mine, strict=True) if os.path.exists(m) and not (out / mask_path_for(f)).exists()]
    if not todo:
        return
    run = refine_masks(
        todo, str(job.bench.images), out, RefineOptions(method=REFINE), workers=req.workers, shard=Shard(),
        root=str(job.masks), on_error=log.error,
    )  # fmt: skip
    log(f"refined {run.written} masks ({REFINE}) in {run.seconds:.2f} s")
    _add_timing(out, shard, run.written, run.seconds, {}, "cpu")


def _score(job: _Job, pred: str, log: _Log, out: Path, cell_id: str) -> tuple[dict[str, Any], str | None]:
    """The protocol's metrics of ``pred`` (a masks folder or box file) and the command that reproduces them."""
    bench = job.bench
    if bench.spec.protocol == "corloc":
        voc = bench.name in ("voc07", "voc12")
        gt = load_gt(
            bench.name,  # type: ignore[arg-type]  # voc07, voc12, coco20k: io.datasets.DATASETS names
            root=bench.gt if voc else None,
            ann=None if voc else bench.gt,
            image_list=bench.image_list,
            on_error=log.error,
        )
        wanted = set(job.keys)
        gt = [g for g in gt if str(g.image_id) in wanted]
        res = evaluate_corloc(gt, pred, bench.name, on_error=log.error)
        where = f"--root {bench.gt}" if voc else f"--ann {bench.gt} --list {bench.image_list}"
        full = len(job.keys) == len(bench.keys)
        return res.to_dict(), f"unseg corloc {bench.name} {where} --pred {pred}" if full else None
    if bench.spec.protocol == "detection":
        return _detection(job, pred, log, out, cell_id)
    gt_dir = _gt_view(bench, job.keys, out)
    sal = evaluate_saliency(str(gt_dir), pred, on_error=log.error)
    return sal.to_dict(), f"unseg eval saliency --gt {gt_dir} --pred {pred}"


DETECTION_METRICS = ("AP", "AP50", "AP75")  # per match kind: box_AP ... mask_AP75 (fractions, as COCOeval gives)


def _gt_json_view(bench: Benchmark, keys: list[str], out: Path) -> Path:
    """The COCO GT a limited detection cell is scored on: its first images and their annotations (the GT file
    itself when there is no limit), so `unseg eval detection --gt VIEW` reproduces the cell."""
    if len(keys) == len(bench.keys):
        return bench.gt
    view = out / "gt" / f"{bench.name}-first{len(keys)}.json"
    if not view.is_file():
        doc = read_coco_document(str(bench.gt))
        names = {os.path.basename(k) for k in keys}  # COCO val2017's keys are its file names
        doc["images"] = [i for i in doc["images"] if os.path.basename(i["file_name"]) in names]
        ids = {i["id"] for i in doc["images"]}
        doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids]
        _json(view, doc)
    return view


def _detection(job: _Job, pred: str, log: _Log, out: Path, cell_id: str) -> tuple[dict[str, Any], str | None]:
    """Class-agnostic box AP and mask AP of the masks in ``pred``: every object of an instance PNG, every
    connected component of a soft mask over 1% of the image (`unseg boxes --multi`), scored by its stored score
    or its mean soft value. Mask AP is left out (None) when the GT has no segmentation."""
    from ..labels.runner import BoxOptions, label_files, plan_tasks

    masks = [os.path.join(pred, mask_path_for(f)) for f in job.files]
    present = [m for m in masks if os.path.isfile(m)]
    if len(present) < len(masks):  # no mask: no detection on that image, which AP counts against the method
        log(f"{len(masks) - len(present)} images have no mask in {pred}: no detections there")
    boxes = out / "boxes" / f"{cell_id}.json"
    boxes.parent.mkdir(parents=True, exist_ok=True)
    if present:
        plan = plan_tasks(present, str(job.bench.images), root=pred)
        label_files(plan, str(boxes), "coco", BoxOptions(multi=True), on_error=log.error)
    else:
        _json(boxes, {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]})
    gt = _gt_json_view(job.bench, job.keys, out)
    metrics: dict[str, Any] = {}
    box = evaluate_detection(gt, boxes, "bbox")
    metrics |= {f"box_{k}": getattr(box, k) for k in DETECTION_METRICS}
    metrics["detections"] = box.detections
    command = f"unseg boxes {pred} --images {job.bench.images} --multi --format coco --out {boxes}"
    command += f" && unseg eval detection --gt {gt} --pred {boxes}"
    try:
        mask = evaluate_detection(gt, boxes, "segm")
    except UnsegError as e:  # a box-only GT: mask AP cannot be scored, box AP stands
        log(f"mask AP not scored: {e.render()}")
        metrics |= dict.fromkeys((f"mask_{k}" for k in DETECTION_METRICS), None)
    else:
        metrics |= {f"mask_{k}": getattr(mask, k) for k in DETECTION_METRICS}
        command += f" && unseg eval detection --gt {gt} --pred {boxes} --iou-type segm"
    return metrics, command


def _difference(ours: dict[str, Any], theirs: Published | None) -> dict[str, float] | None:
    if theirs is None:
        return None
    return {k: ours[k] - v for k, v in theirs.metrics.items() if isinstance(ours.get(k), int | float)}


def _cell(
    job: _Job,
    refine: str | None,
    req: BenchRequest,
    table: list[Published],
    stage: _Log,
    on_error: Callable[[str], None],
) -> tuple[dict[str, Any], bool, int]:
    """One cell's record, from the cache when its key is there, scored from the masks the job's stage made
    (``stage``: its log); returns (record, computed now, failures of the scoring)."""
    out = Path(req.out)
    key = settings_tag(
        {"masks": job.tag, "benchmark": job.bench.name, "keys": settings_tag({"k": job.keys}), "refine": refine}
    )
    cell_id = f"{job.bench.name}__{job.run.slug}{'__' + refine if refine else ''}__{key}"
    record_path = out / "cells" / f"{cell_id}.json"
    cached = _read_json(record_path)
    if cached is not None:
        return cached, False, 0
    log = _Log(on_error)
    log.lines = list(stage.lines)
    pred = str(_refined_folder(job) if refine is not None else job.masks)
    metrics, reproduce = _score(job, pred, log, out, cell_id)
    theirs = _published_for(job.run, job.bench.name, refine, table)
    timing = _timing(job.masks) if job.run.pred is None else {}
    seconds, images = timing.get("seconds"), timing.get("images") or 0
    if refine is not None and seconds is not None:
        refined = _timing(Path(pred))
        if refined.get("images") and _refines_itself(job):  # predicted whole: its own time is the row's
            seconds, images = refined["seconds"], refined["images"]
        elif refined.get("images"):  # the raw mask's share of the prediction, then the refinement
            seconds = seconds / images * refined["images"] + refined["seconds"] if images else None
            images = refined["images"]
    record = {
        "id": cell_id,
        "benchmark": job.bench.name,
        "protocol": job.bench.spec.protocol,
        "method": job.run.label,
        "backbone": job.run.backbone,
        "options": dict(job.run.options),  # those other than the method's official defaults
        "refine": refine,
        "images": len(job.keys),
        "metrics": metrics,
        "published": dataclasses.asdict(theirs) if theirs else None,
        "difference": _difference(metrics, theirs),
        "seconds_per_image": seconds / images if seconds is not None and images else None,
        "peak_rss_mb": timing.get("rss_mb"),
        "peak_cuda_mb": timing.get("cuda_mb"),
        "device": timing.get("device"),
        "settings": job.settings,
        "settings_tag": job.tag,
        "predictions": pred,
        "reproduce": reproduce,
        "failed": log.failed + stage.failed,
    }
    atomic_write_bytes(out / "logs" / f"{cell_id}.log", ("\n".join(log.lines) + "\n").encode())
    if not record["failed"]:  # a cell with failed inputs is recomputed next time (the inputs may be fixed by then)
        _json(record_path, record)
    return record, True, log.failed


# a method's options that its official code sets per protocol, used for that protocol's benchmarks unless
# --option gives another value
PROTOCOL_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    # TokenCut pads for CorLoc (main_tokencut.py) but resizes to a patch multiple for saliency
    # (unsupervised_saliency_detection/get_saliency.py, utils.py::resize_pil)
    ("tokencut", "saliency"): {"geometry": "resize"},
}


def _job(run: Run, bench: Benchmark, req: BenchRequest) -> _Job | None:
    files, keys = bench.limited(req.limit)
    if run.method is not None and (protocol := PROTOCOL_OPTIONS.get((run.method, bench.spec.protocol))):
        options = protocol | dict(run.options)  # the user's --option wins
        run = dataclasses.replace(run, options=tuple(sorted(options.items())))
    if run.pred is not None:
        pred = _external(run, bench)
        if pred is None:
            return None
        settings = {"external": os.path.abspath(pred)}
        return _Job(run, bench, files, keys, Path(pred), _folder_signature(pred), settings)
    settings, tag = prediction_settings(run.request(req.device))
    masks = Path(req.out) / "masks" / bench.name / f"{run.slug}-{tag}"
    return _Job(run, bench, files, keys, masks, tag, settings)


def _refines(job: _Job, req: BenchRequest) -> list[str | None]:
    """The job's rows: as predicted, and "+Bilateral" for a soft-mask method on a saliency benchmark."""
    run = job.run
    soft = run.method is not None and (run.method == CHECKPOINT or METHODS[run.method].writes == "soft")
    return [None, REFINE] if req.refine and soft and job.bench.spec.protocol == "saliency" else [None]


def _stage(job: _Job, req: BenchRequest, shard: Shard, log: _Log) -> int:
    """Make this process's share of the job's masks (and their "+Bilateral" refinements); returns the masks
    predicted. The share is every ``world``-th image of the sorted list, as `unseg predict --shard` takes it."""
    if job.run.pred is not None:
        return 0
    mine = shard.take(sorted(job.files))
    written = _predict(job, req, log, mine, shard)
    if REFINE in _refines(job, req):
        _refine(job, req, log, mine, shard)
    return written


def _launch_marker(out: Path, launch: str, rank: int, world: int) -> Path:
    return out / "ranks" / f"{settings_tag({'launch': launch})}.{rank}of{world}.done"


def _wait_for_ranks(out: Path, launch: str, world: int, poll: float = 1.0) -> None:
    """torchrun's rank 0 waits until every other rank has made its share (torchrun stops every rank when one
    fails, so the wait ends either way)."""
    import time

    markers = [_launch_marker(out, launch, r, world) for r in range(1, world)]
    while not all(m.exists() for m in markers):
        time.sleep(poll)
    for m in markers:
        m.unlink(missing_ok=True)


def run_bench(
    req: BenchRequest,
    on_cell: Callable[[dict[str, Any], bool], None] = lambda record, computed: None,
    on_error: Callable[[str], None] = lambda message: None,
) -> BenchResult:
    """Every run of ``req`` on every benchmark found; writes ``results.json``, ``results.md``, ``cells/``,
    ``logs/`` and ``masks/`` under ``req.out``. ``on_cell(record, computed)`` after each cell; ``on_error``
    per failed input or cell. Usage errors (unknown methods, bad folders) come before any work.

    Two stages: every job's masks are made (predicted, and refined for the "+Bilateral" rows), then every cell
    is scored. With ``req.shard`` ("i/N", e.g. a Slurm array task) this process makes its share of the masks
    and scores nothing: a run without a shard then scores every cell, predicting only what is missing. Under
    torchrun each rank makes its share (no process group: the ranks meet through files under ``out/ranks``),
    and rank 0 scores once all are done."""
    check_output_dir(req.out, param("out"))
    runs = plan_runs(req)
    shard, launch = parse_shard(req.shard) if req.shard is not None else Shard(), ""
    launched = launched_shard()
    if launched is not None:
        if req.shard is not None:
            raise UsageError(f"{param('shard')} and torchrun split the work twice; use one of them")
        shard, launch = launched
    found = discover(req.data, list(req.datasets) or None)
    out = Path(req.out)
    failed = 0
    for b in found.found:
        for problem in b.problems if shard.is_main else ():
            failed += 1
            on_error(problem)
    jobs: list[_Job] = []
    for bench in found.found:
        for run in runs:
            try:
                job = _job(run, bench, req)
            except UnsegError as e:  # e.g. a backbone that is not there: this run's cells fail, the rest go on
                failed += 1
                on_error(f"{run.slug} on {bench.spec.title}: {e.render()}")
                continue
            if job is None:
                on_error(f"{run.slug}: no predictions for {bench.name} under {run.pred}")
                failed += 1
                continue
            jobs.append(job)

    def stage(part: Shard, report: Callable[[str], None]) -> tuple[list[_Log], int]:
        logs, made = [], 0
        for job in jobs:
            logs.append(log := _Log(report))
            try:
                made += _stage(job, req, part, log)
            except UnsegError as e:
                log.error(f"{job.run.slug} on {job.bench.spec.title}: {e.render()}")
        return logs, made

    # torchrun's rank 0 reports failures once, from its second look after every rank is done
    logs, predicted = stage(shard, (lambda message: None) if launch and shard.is_main else on_error)
    if shard.world > 1:
        if launch and not shard.is_main:  # tell rank 0 this share is made
            marker = _launch_marker(out, launch, shard.rank, shard.world)
            marker.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(marker, b"")
        if not launch or not shard.is_main:
            return BenchResult([], found.missing, failed + sum(log.failed for log in logs), 0, None, None, predicted)
        _wait_for_ranks(out, launch, shard.world)
        logs, more = stage(Shard(), on_error)  # what a rank could not make: its failed inputs, tried once more
        predicted += more
    failed += sum(log.failed for log in logs)
    table = published()
    cells: list[dict[str, Any]] = []
    computed = 0
    for job, log in zip(jobs, logs, strict=True):
        for refine in _refines(job, req):
            try:
                record, now, scoring_failed = _cell(job, refine, req, table, log, on_error)
            except UnsegError as e:
                failed += 1
                on_error(f"{job.run.slug} on {job.bench.spec.title}: {e.render()}")
                continue
            failed += scoring_failed
            computed += now
            cells.append(record)
            on_cell(record, now)
    missing = [dataclasses.asdict(s) for s in found.missing]
    document = {"cells": cells, "missing": missing, "limit": req.limit}
    _json(out / "results.json", document)
    plots = write_plots(cells, out / "plots")
    atomic_write_bytes(out / "results.md", render_markdown(cells, found.missing, req.limit, plots).encode())
    return BenchResult(cells, found.missing, failed, computed, out / "results.md", out / "results.json", predicted)


# ----------------------------------------------------------------------------------------------- table


def _fmt(v: float | None, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _signed(v: float | None, digits: int) -> str:
    return "" if v is None else f"{v:+.{digits}f}"


# each protocol's headline metric in the plots: (metric key, scale to the unit shown, unit)
HEADLINE = {
    "corloc": ("corloc", 1.0, "CorLoc %"),
    "saliency": ("iou", 1.0, "IoU"),
    "detection": ("box_AP", 100.0, "box AP %"),
}


def _row_label(c: dict[str, Any]) -> str:
    backbone = Path(c["backbone"]).name if c["backbone"] else ""
    return " ".join(x for x in (_method(c), backbone and f"@{backbone}", c["refine"] and f"+{c['refine']}") if x)


def _write_if_changed(path: Path, data: bytes) -> None:
    """A re-run that computes nothing rewrites nothing."""
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return
    atomic_write_bytes(path, data)


def write_plots(cells: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Per benchmark: ``<benchmark>.svg`` (the headline metric of every row, ours beside the published number)
    and ``<benchmark>-speed.svg`` (the metric against seconds per image). Returns the files written."""
    from ..review.charts import bars, scatter

    written = []
    for bench in dict.fromkeys(c["benchmark"] for c in cells):
        rows = [c for c in cells if c["benchmark"] == bench]
        key, scale, unit = HEADLINE[rows[0]["protocol"]]

        def value(metrics: dict[str, Any] | None, key: str = key, scale: float = scale) -> float | None:
            v = (metrics or {}).get(key)
            return None if v is None else v * scale

        labels = [_row_label(c) for c in rows]
        ours = [value(c["metrics"]) for c in rows]
        theirs = [value(c["published"] and c["published"]["metrics"]) for c in rows]
        svg = bars(f"{bench}: {unit}", labels, {"unseg": ours, "published": theirs}, unit)
        _write_if_changed(folder / f"{bench}.svg", svg.encode())
        points = [(lab, c["seconds_per_image"], v) for lab, c, v in zip(labels, rows, ours, strict=True)]
        timed = [(lab, x, y) for lab, x, y in points if x and y is not None]
        svg = scatter(f"{bench}: {unit} against time", timed, "seconds per image (log)", unit)
        _write_if_changed(folder / f"{bench}-speed.svg", svg.encode())
        written += [folder / f"{bench}.svg", folder / f"{bench}-speed.svg"]
    return written


def render_markdown(
    cells: list[dict[str, Any]], missing: list[BenchmarkSpec], limit: int | None, plots: Sequence[Path] = ()
) -> str:
    """``results.md``: one table per protocol, ours beside the published number and the difference."""
    lines = ["# unseg bench", ""]
    if limit is not None:
        lines += [f"A quick look: the first {limit} images of each benchmark, not the full protocol.", ""]
    common = ["s/img", "peak RSS MB", "peak CUDA MB", "settings", "source"]
    corloc = [c for c in cells if c["protocol"] == "corloc"]
    if corloc:
        lines += ["## CorLoc (%)", "", "| benchmark | method | backbone | images | CorLoc | published | Δ | "]
        lines[-1] += " | ".join(common) + " |"
        lines.append("|" + "---|" * (7 + len(common)))
        for c in corloc:
            pub = c["published"]
            lines.append(
                f"| {c['benchmark']} | {_method(c)} | {c['backbone'] or ''} | {c['images']} | "
                f"{c['metrics']['corloc']:.2f} | {_fmt(pub and pub['metrics'].get('corloc'), 1)} | "
                f"{_signed((c['difference'] or {}).get('corloc'), 2)} | " + _common(c) + " |"
            )
        lines.append("")
    saliency = [c for c in cells if c["protocol"] == "saliency"]
    if saliency:
        head = "| benchmark | method | backbone | refine | images | Acc | IoU | maxFβ | published | Δ | "
        lines += ["## Saliency (Acc / IoU / maxFβ)", "", head + " | ".join(common) + " |"]
        lines.append("|" + "---|" * (10 + len(common)))
        for c in saliency:
            m, pub, diff = c["metrics"], c["published"], c["difference"] or {}
            keys = ("accuracy", "iou", "max_fbeta")
            published_cell = " / ".join(f"{pub['metrics'][k]:.3f}" for k in keys) if pub else "–"
            delta = " / ".join(_signed(diff.get(k), 3) for k in keys) if diff else ""
            lines.append(
                f"| {c['benchmark']} | {_method(c)} | {c['backbone'] or ''} | {c['refine'] or ''} | {c['images']} | "
                f"{m['accuracy']:.3f} | {m['iou']:.3f} | {m['max_fbeta']:.3f} | {published_cell} | {delta} | "
                + _common(c)
                + " |"
            )
        lines.append("")
    detection = [c for c in cells if c["protocol"] == "detection"]
    if detection:
        names = [f"{kind} {k}" for kind in ("box", "mask") for k in DETECTION_METRICS]
        head = "| benchmark | method | backbone | images | " + " | ".join(names) + " | published | Δ | "
        lines += ["## Class-agnostic detection (AP, %)", "", head + " | ".join(common) + " |"]
        lines.append("|" + "---|" * (6 + len(names) + len(common)))
        for c in detection:
            m, pub, diff = c["metrics"], c["published"], c["difference"] or {}
            ours = " | ".join(
                _fmt(None if m[f"{kind}_{k}"] is None else 100 * m[f"{kind}_{k}"], 1)
                for kind in ("box", "mask")
                for k in DETECTION_METRICS
            )
            published_cell = ", ".join(f"{k} {100 * v:.1f}" for k, v in pub["metrics"].items()) if pub else "–"
            delta = ", ".join(f"{k} {100 * v:+.1f}" for k, v in diff.items())
            lines.append(
                f"| {c['benchmark']} | {_method(c)} | {c['backbone'] or ''} | {c['images']} | {ours} | "
                f"{published_cell} | {delta} | " + _common(c) + " |"
            )
        lines.append("")
    if missing:
        lines += ["## Missing benchmarks", "", *(f"- {s.title}: {s.how}" for s in missing), ""]
    if plots:
        lines += ["## Plots", "", *(f"- [{p.name}](plots/{p.name})" for p in plots), ""]
    lines += [
        "Each cell's exact settings (weights by content hash, options), its command to reproduce the number and "
        "its log are in results.json, cells/ and logs/.",
        "",
    ]
    return "\n".join(lines)


def _method(c: dict[str, Any]) -> str:
    """The method, with the options it ran with other than its defaults."""
    options = ", ".join(f"{k}={v}" for k, v in c["options"].items())
    return c["method"] + (f" ({options})" if options else "")


def _common(c: dict[str, Any]) -> str:
    source = c["published"]["source"] if c["published"] else ""
    return " | ".join(
        [
            _fmt(c["seconds_per_image"], 3),
            _fmt(c["peak_rss_mb"], 0),
            _fmt(c["peak_cuda_mb"], 0),
            f"`{c['settings_tag']}`",
            source,
        ]
    )
