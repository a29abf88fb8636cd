"""The method table: every mask method unseg knows, by name, and where each of its pieces lives.

A method is one folder under ``methods/`` (``move/``, ``sempart/``, ``spectral/``) plus one entry here. The
entries name their pieces as lazy ``"module:attr"`` strings, so this module imports neither torch nor any
method (``unseg --help`` reads it), and nothing below this layer (``engine/``, ``model/``) knows a method.

Two kinds of method:

- ``checkpoint``: a trained model. Its ``family`` module (the name stored in a checkpoint's ``"family"`` key)
  has ``config_from_dict(dict)``, ``build(config) -> nn.Module`` and ``predictor(model, preprocess, device,
  precision, compile, engine=, **options) -> MaskPredictor``; ``unseg predict --method move`` loads any family.
  ``training`` maps each ``unseg train --method`` name to its ``Objective`` class, its options class and
  its recipe (``TrainConfig`` fields that differ from the defaults, which are MOVE's).
- ``training-free``: ``predictor(method, options, backbone=, device=, precision=, engine=)`` makes a MaskPredictor
  from an ``options`` dataclass whose fields are declared with ``config.option`` (the CLI makes its flags from
  them).

Every predictor runs its model through ``model.forward.inference_forward(module, device, precision, engine)``,
so ``--precision`` and ``--engine`` reach every ViT forward without a method knowing how it is computed.

Any method with a ``predictor`` runs by name in ``unseg predict --method NAME`` (``predict_methods``): every
training-free method, and a checkpoint method with a published model built from known weights (``found``: the
official decoder on DINO), whose checkpoints trained by unseg still load through ``--method move``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from ..config import given_apply, validate
from ..errors import CheckpointError, UsageError, param


@dataclass(frozen=True)
class Training:
    """One ``unseg train --method`` objective."""

    objective: str  # "module:Class" implementing engine.objective.Objective
    options: str | None = None  # "module:Class": the objective's own options (a frozen dataclass of config.option)
    recipe: str | None = None  # "module:attr": a dict of TrainConfig defaults that differ from MOVE's
    # the objective `unseg train --method NAME --from-masks DIR` runs instead (training on given masks)
    with_masks: str | None = None


@dataclass(frozen=True)
class Method:
    kind: Literal["checkpoint", "training-free"]
    summary: str
    family: str | None = None  # checkpoint: the module that loads its checkpoints (= their "family" key)
    # "module:attr" making its MaskPredictor by name (`unseg predict --method NAME`): required for training-free
    # methods; a checkpoint method has one when a published model needs no checkpoint of ours
    predictor: str | None = None
    options: str | None = None  # with predictor: "module:Class" of its options
    writes: Literal["soft", "instances"] = "soft"  # one object as a soft mask, or an instance label map
    # the `--refine` methods its predictor applies itself, by the method's own published rule (its predictor then
    # takes refine=RefineOptions; the refined masks are binary): FOUND's '+BS' (the solver on the binary mask,
    # kept if IoU > 0.5), VoteCut's CRF (per mask on a crop, kept if the box moved little). Other `--refine`s
    # run on the written soft mask (`refine.refine_mask`).
    refines: tuple[str, ...] = ()
    # the stage split (`unseg predict --save-features`, then `--from-features`): the options the backbone's
    # features depend on, besides the backbone; () = the method runs in one stage only. Its predictor takes
    # stage="features" (returns io.features.FeatureRecord) and stage="cuts" (prepares FeatureRecords)
    features: tuple[str, ...] = ()
    training: dict[str, Training] = field(default_factory=dict)


_SPECTRAL = "unsegcli.methods.spectral"
METHODS: dict[str, Method] = {
    "move": Method(
        "checkpoint",
        "MOVE (Bielski & Favaro, NeurIPS 2022): a segmenter trained so that its object can be moved unnoticed",
        family="unsegcli.methods.move.family",
        training={
            "move": Training(
                "unsegcli.methods.move.objective:MoveObjective", "unsegcli.methods.move.config:MoveOptions"
            ),
            "self": Training("unsegcli.methods.move.objective:SelfTraining"),
        },
    ),
    "sempart": Method(
        "checkpoint",
        "Sempart (Ravindran & Basu, ICCV 2023): coarse and fine graph partitions of DINO features",
        family="unsegcli.methods.sempart.family",
        training={
            "sempart": Training(
                "unsegcli.methods.sempart.objective:SempartObjective",
                "unsegcli.methods.sempart.config:SempartLossConfig",
                "unsegcli.methods.sempart.config:TRAIN_DEFAULTS",
            )
        },
    ),
    "found": Method(
        "checkpoint",
        "FOUND (Siméoni et al., CVPR 2023): a 1x1 convolution on DINO keys; the official decoder by name",
        family="unsegcli.methods.found.family",
        predictor="unsegcli.methods.found.predictor:pretrained",
        options="unsegcli.methods.found.config:FoundOptions",
        refines=("bilateral",),
        training={
            "found": Training(
                "unsegcli.methods.found.objective:FoundObjective",
                "unsegcli.methods.found.config:FoundTrainOptions",
                "unsegcli.methods.found.config:TRAIN_DEFAULTS",
                with_masks="found-distil",
            ),
            "found-distil": Training(
                "unsegcli.methods.found.objective:FoundDistillation",
                "unsegcli.methods.found.config:FoundTrainOptions",
                "unsegcli.methods.found.config:TRAIN_DEFAULTS",
            ),
        },
    ),
    "found-bkg": Method(
        "training-free",
        "FOUND's background discovery: the patches unlike the least-attended one are the object",
        predictor="unsegcli.methods.found.predictor:background_discovery",
        options="unsegcli.methods.found.config:FoundBkgOptions",
    ),
    "tokencut": Method(
        "training-free",
        "TokenCut: one normalised cut of the DINO key graph; the seed's component; score 1 - its Ncut on that graph",
        predictor=f"{_SPECTRAL}.predictor:SpectralPredictor",
        options=f"{_SPECTRAL}.options:TokenCutOptions",
        features=("geometry", "fixed_size", "eigensolver"),  # the grid; the exact solver's parity attention
    ),
    "lost": Method(
        "training-free",
        "LOST: lowest-degree seed expanded over similar low-degree patches; score 1 - its Ncut on LOST's graph",
        predictor=f"{_SPECTRAL}.predictor:SpectralPredictor",
        options=f"{_SPECTRAL}.options:LostOptions",
        features=("geometry", "fixed_size"),  # the grid (LOST always runs the parity attention)
    ),
    "maskcut": Method(
        "training-free",
        "MaskCut (CutLER): up to max_objects cuts, painting out each object found; score 1 - each cut's Ncut",
        predictor=f"{_SPECTRAL}.predictor:SpectralPredictor",
        options=f"{_SPECTRAL}.options:MaskCutOptions",
        features=("geometry", "fixed_size", "eigensolver"),  # the grid; the exact solver's parity attention
        writes="instances",
    ),
    "votecut": Method(
        "training-free",
        "VoteCut (CuVLER): normalised cuts on several DINO/DINOv2 backbones, k-means, and a vote; score = vote share",
        predictor=f"{_SPECTRAL}.votecut:VoteCutPredictor",
        options=f"{_SPECTRAL}.options:VoteCutOptions",
        features=("fixed_size", "eigensolver"),  # the square; the exact solver's parity attention
        writes="instances",
        refines=("crf",),
    ),
}
# `unseg predict --method`: "move" runs a checkpoint of any family (MOVE, Sempart, FOUND, self-trained); the
# methods with a predictor run by name from known weights
CHECKPOINT = "move"


def load(ref: str) -> Any:
    """``"package.module:attr"`` -> the attribute, imported now."""
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def predict_methods() -> list[str]:
    """What ``unseg predict --method`` takes: a checkpoint, or a method with a predictor of its own."""
    return [CHECKPOINT] + [n for n, m in METHODS.items() if m.predictor is not None]


def predict_method(name: str) -> Method:
    """The entry of ``unseg predict --method name`` (one with a predictor)."""
    method = METHODS.get(name)
    if method is None or method.predictor is None:
        raise UsageError(f"unknown method {name!r}: choose one of {', '.join(predict_methods())}")
    return method


def options_class(name: str) -> Any:
    """The options dataclass of predict method ``name``."""
    ref = predict_method(name).options
    assert ref is not None, name
    return load(ref)


def option_names(name: str) -> list[str]:
    """The option names predict method ``name`` takes, in declaration order."""
    return [f.name for f in fields(options_class(name))]


def method_options(name: str, **given: Any) -> Any:
    """Method ``name``'s options: its official defaults with ``given`` (None = keep the default) over them,
    checked against the fields' metadata. An option the method does not take, or one that does not apply under the
    others (``config.given_apply``), is an error naming it."""
    names = option_names(name)
    foreign = sorted(k for k, v in given.items() if v is not None and k not in names)
    if foreign:
        raise UsageError(
            f"{', '.join(param(n) for n in foreign)}: not an option of {param('method')} {name}",
            f"its options: {', '.join(param(n) for n in names)}",
        )
    chosen = {k: v for k, v in given.items() if v is not None}
    opts = replace(options_class(name)(), **chosen)
    validate(opts)
    given_apply(opts, chosen)
    return opts


def objectives() -> dict[str, Training]:
    """Every ``unseg train --method`` name -> its objective, over all methods."""
    return {name: t for m in METHODS.values() for name, t in m.training.items()}


def training(name: str) -> Training:
    table = objectives()
    if name not in table:
        raise UsageError(f"unknown objective {name!r}", f"choose one of {', '.join(table)}")
    return table[name]


def objective_class(name: str) -> Any:
    return load(training(name).objective)


def family(name: str) -> Any:
    """The module that loads checkpoints whose ``"family"`` key is ``name``."""
    method = METHODS.get(name)
    if method is None or method.family is None:
        known = ", ".join(n for n, m in METHODS.items() if m.family)
        raise CheckpointError(
            f"checkpoint family '{name}' is not known to this unseg", f"known: {known}; upgrade unseg?"
        )
    return load(method.family)
