"""Training-free object discovery on DINO keys: LOST, TokenCut and CutLER's MaskCut, one shared core.

The options (``options.py``) import without torch, so the CLI can show their defaults in ``--help``;
the predictor and the method table load torch on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import OPTIONS, LostOptions, MaskCutOptions, MethodName, TokenCutOptions, method_options

if TYPE_CHECKING:
    from .predictor import METHODS, Method, SpectralPredictor

__all__ = [
    "METHODS",
    "OPTIONS",
    "LostOptions",
    "MaskCutOptions",
    "Method",
    "MethodName",
    "SpectralPredictor",
    "TokenCutOptions",
    "method_options",
]

_LAZY = ("METHODS", "Method", "SpectralPredictor")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
