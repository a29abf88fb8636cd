"""The table of training objectives: name -> class, read by `unseg train --method` (torch-free, so `--help`
never imports torch). A new objective is one class implementing `objectives.Objective` plus one line here."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..sempart.config import TRAIN_DEFAULTS as SEMPART_RECIPE

if TYPE_CHECKING:
    from .objectives import Objective

# name -> "module:Class" of each training objective (imported lazily: this table is read by `--help`).
# A new objective is one class implementing `objectives.Objective` plus one line here; `unseg train
# --method NAME` offers every key.
OBJECTIVES: dict[str, str] = {
    "move": "unsegcli.train.objectives:MoveObjective",
    "self": "unsegcli.train.objectives:SelfTraining",
    "sempart": "unsegcli.sempart.objective:SempartObjective",
}


# Recipes that differ from MOVE's (the TrainConfig field defaults): objective -> field defaults. The CLI fills
# options the user did not give from here, so `--method sempart` trains with Sempart's published settings.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "sempart": {k: v for k, v in SEMPART_RECIPE.items() if k in ("batch_size", "crop", "lr", "betas")},
}


def objective_class(name: str) -> type[Objective]:
    from ..errors import UsageError

    if name not in OBJECTIVES:
        raise UsageError(f"unknown objective '{name}'", f"choose one of {', '.join(OBJECTIVES)}")
    module, cls = OBJECTIVES[name].split(":")
    return getattr(importlib.import_module(module), cls)
