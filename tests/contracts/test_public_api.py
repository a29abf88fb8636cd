"""The names ``unsegcli`` exports resolve to the objects they name (they are re-exported lazily, by module path,
so a module that moves must move here too)."""

from __future__ import annotations

import numpy as np
import pytest

import unsegcli
from unsegcli.errors import UsageError

from ..helpers import random_image, tiny_model, write_images


def test_every_exported_name_resolves():
    missing = [name for name in unsegcli.__all__ if getattr(unsegcli, name, None) is None]  # AttributeError -> None
    assert not missing and "load" in unsegcli.__all__ and "predict_masks" in unsegcli.__all__


def test_predict_masks_from_the_top_level_equals_the_predictor():
    from unsegcli.methods.move.predictor import predict_masks

    model, image = tiny_model(), random_image(40, 56)
    (top,) = unsegcli.predict_masks(model, [image], unsegcli.PreprocessConfig(size=64))
    (direct,) = predict_masks(model, [image], unsegcli.PreprocessConfig(size=64))
    assert top.shape == (40, 56) and np.array_equal(top, direct)


def test_load_with_refine_predicts_and_writes_what_the_command_writes(tmp_path, cli, tiny_ckpt):
    """``load(refine=...)``: ``predict`` returns the refined mask and ``predict_files`` writes the same PNGs as
    ``unseg predict --refine``, byte for byte (the refinement was once silently dropped by the API)."""
    from PIL import Image

    from unsegcli.refine import RefineOptions
    from unsegcli.refine.runner import encode

    paths = write_images(tmp_path / "imgs", [(40, 56), (48, 40)])
    assert cli("predict", tmp_path / "imgs", "--out", tmp_path / "cmd", "--weights", tiny_ckpt,
               "--refine", "bilateral", "--refine-output", "component", "--quiet").exit_code == 0  # fmt: skip
    model = unsegcli.load(tiny_ckpt, refine="bilateral", refine_output="component")
    model.predict_files([tmp_path / "imgs"], tmp_path / "api")
    for p in paths:
        name = p.with_suffix(".png").name
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cmd" / name).read_bytes()
    refined = model.predict(paths)
    raw = unsegcli.load(tiny_ckpt).predict(paths)
    opts = RefineOptions(output="component")
    for p, mask, plain in zip(paths, refined, raw, strict=True):
        written = np.asarray(Image.open(tmp_path / "cmd" / p.with_suffix(".png").name))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        assert np.array_equal(encode(mask, opts), written)
        assert not np.array_equal(mask, plain)  # refined: not the raw soft mask


def test_load_checks_engine_precision_and_refine_as_the_command(tiny_ckpt):
    with pytest.raises(UsageError, match="refine_output.*refine"):
        unsegcli.load(tiny_ckpt, refine_output="component")
    with pytest.raises(UsageError, match="precision"):
        unsegcli.load(tiny_ckpt, precision="fp64")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="engine"):
        unsegcli.load(tiny_ckpt, engine="onnx")  # type: ignore[arg-type]
