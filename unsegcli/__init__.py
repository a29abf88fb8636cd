"""unseg: MOVE segmenter inference, pseudo-labels, evaluation and training.

The public Python API is re-exported lazily so that `unseg --help` does not import torch. Start with
``unsegcli.load`` (``unsegcli/api.py``, guide: docs/python-api.md).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("unseg")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_API = {
    "load": "unsegcli.api",
    "Model": "unsegcli.api",
    "boxes": "unsegcli.api",
    "write_labels": "unsegcli.api",
    "corloc": "unsegcli.api",
    "load_segmenter": "unsegcli.methods.loading",
    "import_official_move": "unsegcli.methods.move.official_import",
    "predict_masks": "unsegcli.methods.move.predictor",
    "predict_files": "unsegcli.engine.predict",
    "Predictor": "unsegcli.methods.move.predictor",
    "Segmenter": "unsegcli.methods.move.segmenter",
    "ModelConfig": "unsegcli.config",
    "PreprocessConfig": "unsegcli.config",
    "PRESETS": "unsegcli.config",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(name)


__all__ = sorted(_API)
