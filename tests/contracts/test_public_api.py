"""The names ``unsegcli`` exports resolve to the objects they name (they are re-exported lazily, by module path,
so a module that moves must move here too)."""

from __future__ import annotations

import numpy as np

import unsegcli

from ..helpers import random_image, tiny_model


def test_every_exported_name_resolves():
    missing = [name for name in unsegcli.__all__ if getattr(unsegcli, name, None) is None]  # AttributeError -> None
    assert not missing and "load" in unsegcli.__all__ and "predict_masks" in unsegcli.__all__


def test_predict_masks_from_the_top_level_equals_the_predictor():
    from unsegcli.methods.move.predictor import predict_masks

    model, image = tiny_model(), random_image(40, 56)
    (top,) = unsegcli.predict_masks(model, [image], unsegcli.PreprocessConfig(size=64))
    (direct,) = predict_masks(model, [image], unsegcli.PreprocessConfig(size=64))
    assert top.shape == (40, 56) and np.array_equal(top, direct)
