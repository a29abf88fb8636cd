"""Setting up a prediction run: what predicts (a checkpoint family, or a training-free method on a DINO
backbone), which images, the settings tag its outputs carry, and where it runs.

``plan_prediction`` makes every check that needs no model (parameters that do not fit the method, the output
folder, resuming under other settings), lists the inputs and picks the rank and device; ``build_predictor``
then loads the predictor; ``engine.predict.predict_files`` runs it. Messages name parameters (``errors.param``),
which the CLI says as its flags.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch

from ..config import WEIGHTS_METAVAR, Engine, Precision
from ..engine.predict import list_prediction_inputs, output_path_for
from ..engine.predictor import DeferredPredictor, MaskPredictor
from ..errors import UsageError, param
from ..io.features import FEATURES_EXT, check_features, differences, read_features
from ..io.files import check_output_dir
from ..io.images import IMAGE_EXTENSIONS, InputListing, decode_image
from ..io.masks import settings_tag
from ..io.outputs import check_not_an_input, check_same_settings, weights_identity
from ..methods import CHECKPOINT, load, method_options, predict_method, predict_methods
from ..model.forward import require_openvino
from ..model.registry import resolve_weights
from ..refine import RefineMethod, RefineOptions, RefineOutput
from ..runtime import Shard, effective_precision, init_shard, local_device, resolve_device

Stage = Literal["features", "cuts"]


@dataclass(frozen=True)
class PredictRequest:
    """What predicts and how its masks are written. ``method`` "move" is a checkpoint (``weights``: a path
    or known name; None = $UNSEG_WEIGHTS, then the default) with ``size``, ``max_size``, ``branch`` and
    ``compile``; the other methods (the method table) with ``options`` (the fields of the method's options class
    in ``unsegcli.methods``; None or absent = the official default). ``precision`` and ``engine`` apply to every
    method: how its ViT forward runs (``model.forward.inference_forward``; bf16 on CPU where it is native)."""

    method: str = "move"
    weights: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    size: int | None = None
    max_size: int | None = None
    branch: str | None = None
    compile: bool = False
    precision: Precision = "fp32"
    engine: Engine = "torch"
    device: str = "auto"
    binary: bool = False
    threshold: float = 0.5
    refine: RefineMethod | None = None
    refine_output: RefineOutput | None = None  # with ``refine``; None = RefineOptions' default
    overwrite: bool = False
    # the stage split of the methods with ``features`` (method table): "features" writes each image's backbone
    # features (io.features) instead of its mask; "cuts" reads such files as its inputs and writes the masks
    stage: Stage | None = None

    def given_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if v is not None}

    def own_refine(self) -> bool:
        """Whether the method's predictor applies ``refine`` itself, by its published rule (``Method.refines``)."""
        if self.refine is None or self.method == CHECKPOINT:
            return False
        return self.refine in predict_method(self.method).refines

    def refine_options(self) -> RefineOptions | None:
        """The refinement asked; a method that applies the bilateral solver itself writes binary masks (default
        output component)."""
        if self.refine is None:
            return None
        default = "component" if self.own_refine() and self.refine == "bilateral" else RefineOptions.output
        return RefineOptions(method=self.refine, output=self.refine_output or default)

    def post_refine(self) -> RefineOptions | None:
        """The refinement run on each written soft mask (``engine.predict.predict_files(refine=)``): none when
        the method's predictor applies it."""
        return None if self.own_refine() else self.refine_options()


_STAGE_FLAG = {"features": "save_features", "cuts": "from_features"}  # the parameter each stage is asked with
_FORWARD = (("precision", "fp32"), ("engine", "torch"))  # how the ViT ran, and the default left out of records


def check_request(req: PredictRequest) -> None:
    """Parameters that do not fit ``req.method`` are usage errors, before any input is read."""

    def names(ns: list[str]) -> str:
        return ", ".join(param(n) for n in ns)

    method, given, m = req.method, req.given_options(), param("method")
    if req.refine_output is not None and req.refine is None:
        raise UsageError(f"{param('refine_output')} applies with {param('refine')}, which was not given")
    if req.refine == "crf" and req.refine_output not in (None, "soft"):
        raise UsageError(f"{param('refine_output')} {req.refine_output} applies to {param('refine')} bilateral")
    if req.stage is not None and method == CHECKPOINT:
        raise UsageError(f"{param(_STAGE_FLAG[req.stage])} applies to the training-free methods, not {m} {method}")
    if method == CHECKPOINT:
        if given:
            raise UsageError(
                f"{names(list(given))}: options of the training-free methods "
                f"({m} {', '.join(predict_methods()[1:])}), not of {m} {CHECKPOINT}"
            )
        return
    entry = predict_method(method)
    method_options(method, **given)  # options the method does not take, and their ranges
    if req.weights is not None:
        raise UsageError(
            f"{param('weights')} names a checkpoint ({m} {CHECKPOINT}); {m} {method} takes {param('backbone')}"
        )
    checkpoint = [n for n in ("size", "max_size", "branch") if getattr(req, n) is not None]
    checkpoint += ["compile"] if req.compile else []
    if checkpoint:
        raise UsageError(
            f"{names(checkpoint)}: options of checkpoints ({m} {CHECKPOINT}), not of {m} {method}",
            f"the training-free methods run at the size {param('geometry')} gives",
        )
    if req.stage is not None and not entry.features:
        split = ", ".join(n for n in predict_methods()[1:] if predict_method(n).features)
        raise UsageError(f"{param(_STAGE_FLAG[req.stage])}: {m} {method} runs in one stage; these run in two: {split}")
    ran = [k for k, default in _FORWARD if getattr(req, k) != default]
    if req.stage == "cuts" and ran:
        raise UsageError(
            f"{names(ran)} applies to the stage that runs the backbone ({param('save_features')}); "
            f"with {param('from_features')} the feature files say how it ran"
        )
    if req.stage is not None and (req.binary or req.refine is not None):
        raise UsageError(
            f"{param('binary') if req.binary else param('refine')} applies to masks written in one stage, "
            f"not with {param(_STAGE_FLAG[req.stage])}"
        )
    own = req.own_refine()
    if entry.writes == "instances" and (req.binary or (req.refine is not None and not own)):
        raise UsageError(
            f"{param('binary') if req.binary else param('refine')} applies to soft masks; {m} {method} writes "
            "instance masks" + (f" (it applies {param('refine')} {', '.join(entry.refines)})" if entry.refines else "")
        )
    if own and req.refine == "bilateral" and req.refine_output == "soft":
        raise UsageError(
            f"{m} {method} applies {param('refine')} {req.refine} itself and writes binary masks: "
            f"{param('refine_output')} component or official, not soft"
        )


@dataclass
class PredictionPlan:
    """A checked request with its inputs, settings tag, rank and device: all but the loaded predictor."""

    request: PredictRequest
    listing: InputListing
    settings: dict[str, Any]  # what the outputs' settings tag hashes
    tag: str
    shard: Shard
    device: torch.device
    precision: str  # the precision that runs (runtime.effective_precision)
    weights: Any  # the checkpoint, or the method's backbone (a file or timm:NAME; a tuple of them for several)
    method_options: Any = None  # the training-free method's options (None for checkpoints)
    decode: Callable[[str, int | None], Any] = decode_image  # reads one input: an image, or a feature file

    @property
    def kind(self) -> Literal["soft", "instances", "features"]:
        """What the predictor writes, known before it is loaded: feature files in the GPU stage of a split run;
        else the method table's ``writes`` (a checkpoint of any family: soft masks)."""
        if self.request.stage == "features":
            return "features"
        return "soft" if self.request.method == CHECKPOINT else predict_method(self.request.method).writes


def _settings(req: PredictRequest, recorded: dict[str, Any] | None = None) -> tuple[dict[str, Any], Path | str, Any]:
    """The settings record of the outputs' tag, the weights file (or timm:NAME) and the method's options.
    Weights enter by identity (size and a hash), so a retrained checkpoint under the same name differs.
    ``recorded``: the settings a feature file records (the CPU stage of a split run, which loads no backbone):
    the backbone's identity (its weights are then not resolved unless the backbone was given) and how the
    backbone ran, which the masks then carry."""
    written: dict[str, Any] = {
        "binary": req.binary,
        "threshold": req.threshold if req.binary else None,
        "refine": req.refine,
        "refine_output": refine.output if (refine := req.refine_options()) else None,
    }
    # bf16 and OpenVINO change masks slightly (docs/performance.md): a folder of fp32 torch masks is not resumed
    # with them. The defaults stay out of the record, so fp32 torch tags are those of earlier versions.
    forward = {k: getattr(req, k) for k, _ in _FORWARD} if recorded is None else recorded
    written |= {k: forward[k] for k, default in _FORWARD if forward.get(k, default) != default}
    if req.method == CHECKPOINT:
        path = resolve_weights(req.weights)
        checkpoint = {"weights": weights_identity(path), "size": req.size, "max_size": req.max_size}
        return {**checkpoint, **written, "branch": req.branch}, path, None
    opts = method_options(req.method, **req.given_options())  # the official defaults, the given ones over them
    settings: dict[str, Any] = {"method": req.method, **asdict(opts), **written}
    resolved: dict[str, list[Any]] = {}
    if recorded is not None and "backbone" not in req.given_options():
        settings["backbone"] = recorded.get("backbone", "")
        resolved["backbone"] = [None]
    for f in fields(opts):  # every weights file (backbone, FOUND's decoder) enters by content, not by name
        if f.metadata.get("metavar") == WEIGHTS_METAVAR and f.name not in resolved:
            # a method that votes over several backbones takes a comma-separated list (each resolved alike)
            specs = [s.strip() for s in getattr(opts, f.name).split(",")]
            paths = [s if s.startswith("timm:") else resolve_weights(s, env_var=None, default=None) for s in specs]
            resolved[f.name] = paths
            settings[f.name] = ",".join(
                s if s.startswith("timm:") else weights_identity(p) for s, p in zip(specs, paths, strict=True)
            )
    paths = resolved["backbone"]
    backbone: Any = paths[0] if len(paths) == 1 else tuple(paths)
    return settings, backbone, opts


def feature_settings(req: PredictRequest, settings: dict[str, Any]) -> dict[str, Any]:
    """What a split run's features depend on (``io.features``): the method, the backbone's identity, the options
    the method table names, and how the backbone ran when not fp32 torch; ``settings`` is the full record
    (``_settings``)."""
    names = ("method", "backbone", *predict_method(req.method).features, *(k for k, _ in _FORWARD))
    return {k: settings[k] for k in names if k in settings}


def prediction_settings(req: PredictRequest) -> tuple[dict[str, Any], str]:
    """The settings record of ``req``'s outputs and their tag, as ``plan_prediction`` computes them, without
    listing inputs or starting a shard: what a cache of its masks is keyed by (``pipelines.bench``)."""
    check_request(req)
    settings = _settings(req)[0]
    return settings, settings_tag(settings)


def plan_prediction(
    req: PredictRequest,
    inputs: list[str],
    out: str | Path,
    *,
    root: str | None = None,
    null: bool = False,
    shard: str | Shard | None = None,
    stdin: Any = None,
) -> PredictionPlan:
    """Check ``req`` and the output folder, list the images of ``inputs`` (files, folders, '-'; see
    ``engine.predict.list_prediction_inputs``), and refuse to resume into ``out`` when its existing masks
    carry another settings tag (unless ``req.overwrite``). Then start this process's shard (``shard``: "i/N",
    or torchrun's rank) and pick its device; close the shard with ``runtime.close_shard`` after the run."""
    check_prediction(req)
    check_output_dir(out, param("out"))
    check_not_an_input(inputs, out, param("out"))
    if root is not None and not Path(root).is_dir():
        raise UsageError(f"{param('root')} {root} is not a folder")
    exts = (FEATURES_EXT,) if req.stage == "cuts" else IMAGE_EXTENSIONS
    listing = list_prediction_inputs(inputs, out, root=root, null=null, stdin=stdin, exts=exts)
    kind = "features" if req.stage == "features" else "masks"

    def same_settings(tag: str) -> None:  # every output, this shard's or not: all shards of a run must agree
        check_same_settings((os.path.join(out, output_path_for(kind, it.rel)) for it in listing.items), tag)

    return start_prediction(req, listing, same_settings, shard)


def check_prediction(req: PredictRequest) -> None:
    """``check_request``, and a missing extra that the request needs (crf): one usage error before the run,
    not one failure per mask."""
    check_request(req)
    if req.refine == "crf":
        from ..refine.crf import require_crf

        require_crf()
    if req.engine == "openvino":
        require_openvino()


def start_prediction(
    req: PredictRequest, listing: InputListing, same_settings: Callable[[str], None], shard: str | Shard | None = None
) -> PredictionPlan:
    """The plan of a checked request: its settings and tag (``same_settings(tag)`` refuses existing outputs
    made with other settings, unless ``req.overwrite``), this process's shard and its device. The CPU stage of a
    split run (``req.stage`` "cuts") reads feature files; the first must fit the request (else a usage error)."""
    decode: Callable[[str, int | None], Any] = decode_image
    if req.stage == "cuts":  # the backbone is the one the features were made with; the options must agree
        first = read_features(listing.items[0].path) if listing.items else None
        settings, weights, opts = _settings(req, first.settings if first else {})
        wanted = feature_settings(req, settings)
        if first is not None and differences(first.settings, wanted):
            raise UsageError(
                f"{listing.items[0].path}: features made with other settings: "
                + "; ".join(differences(first.settings, wanted)),
                f"give {param('method')} and the options of the {param('save_features')} run that made them",
            )
        decode = _FeatureReader(wanted)
    else:
        settings, weights, opts = _settings(req)
    if req.stage == "features":
        settings = feature_settings(req, settings)
    tag = settings_tag(settings)
    if not req.overwrite:
        same_settings(tag)
    sh = init_shard(shard)
    dev = resolve_device(local_device(req.device, sh))
    precision = effective_precision(dev, req.precision, cpu_bf16=True)
    return PredictionPlan(req, listing, settings, tag, sh, dev, precision, weights, opts, decode)


@dataclass(frozen=True)
class _FeatureReader:
    """Reads a feature file for the CPU stage, refusing one made with other settings (a picklable callable:
    it runs in the decode workers)."""

    wanted: dict[str, Any]

    def __call__(self, path: str, max_pixels: int | None = None) -> Any:
        return check_features(path, self.wanted)


def build_predictor(plan: PredictionPlan) -> MaskPredictor:
    """The plan's predictor on its device: the checkpoint's family, or the training-free method's (method table)."""
    return _build(plan.request, plan.weights, plan.method_options, plan.device, plan.precision)


def deferred_predictor(plan: PredictionPlan) -> DeferredPredictor:
    """``build_predictor(plan)`` when ``predict_files`` first needs it: not at all when every output exists."""
    return DeferredPredictor(plan.kind, lambda: build_predictor(plan))


def load_request_predictor(req: PredictRequest) -> MaskPredictor:
    """``req``'s predictor on ``req.device``, checked as ``plan_prediction`` checks it, without inputs, an
    output folder or a shard: what the Python API (``unsegcli.api.load``) predicts arrays with."""
    check_request(req)
    _, weights, opts = _settings(req)
    dev = resolve_device(req.device)
    return _build(req, weights, opts, dev, effective_precision(dev, req.precision, cpu_bf16=True))


def _build(req: PredictRequest, weights: Any, opts: Any, device: torch.device, precision: str) -> MaskPredictor:
    if req.method == CHECKPOINT:
        from ..methods.loading import load_predictor

        assert weights is not None
        return load_predictor(
            weights,
            device,
            precision,
            size=req.size,
            max_size=req.max_size,
            compile=req.compile,
            engine=req.engine,
            options={"branch": req.branch} if req.branch else None,
        )
    predictor = load(predict_method(req.method).predictor or "")
    extra: dict[str, Any] = {"stage": req.stage} if req.stage is not None else {}
    if req.own_refine():
        extra["refine"] = req.refine_options()
    return predictor(req.method, opts, backbone=weights, device=device, precision=precision, engine=req.engine, **extra)
