"""unseg: MOVE segmenter inference, pseudo-labels, evaluation and training.

The public Python API is re-exported lazily so that `unseg --help` does not import torch.
"""
__version__ = "0.1.0"

_API = {
    "load_segmenter": "unsegcli.model.checkpoint",
    "import_official_move": "unsegcli.model.checkpoint",
    "predict_masks": "unsegcli.inference",
    "Predictor": "unsegcli.inference",
    "Segmenter": "unsegcli.model.segmenter",
    "ModelConfig": "unsegcli.config",
    "PreprocessConfig": "unsegcli.config",
}


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(name)


__all__ = sorted(_API)
