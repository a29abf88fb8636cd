"""The method table: every objective and checkpoint family resolves to its code."""

from __future__ import annotations

import pytest
import torch

from unsegcli.config import PreprocessConfig
from unsegcli.errors import CheckpointError, UsageError
from unsegcli.methods.loading import load_segmenter
from unsegcli.model.checkpoint import checkpoint_dict, save_checkpoint

from ..helpers import tiny_model


def test_every_registered_objective_resolves_to_its_class():
    from unsegcli.methods import objective_class, objectives

    assert list(objectives()) == ["move", "self", "sempart", "found", "found-distil"]
    for name in objectives():
        assert objective_class(name).name == name
    with pytest.raises(UsageError, match="unknown objective 'nope'"):
        objective_class("nope")


def test_checkpoint_family_dispatch(tmp_path):
    from unsegcli.methods import METHODS
    from unsegcli.methods.loading import load_predictor
    from unsegcli.methods.move.predictor import Predictor

    model = tiny_model()
    ckpt = checkpoint_dict(model, PreprocessConfig(size=64))
    assert "family" not in ckpt  # MOVE checkpoints are unchanged: absent means "move"
    save_checkpoint(tmp_path / "move.pt", ckpt)
    predictor = load_predictor(tmp_path / "move.pt", torch.device("cpu"), size=32)
    assert isinstance(predictor, Predictor) and predictor.kind == "soft" and predictor.cfg.size == 32
    assert {n for n, m in METHODS.items() if m.family} == {"move", "sempart", "found"}
    save_checkpoint(tmp_path / "other.pt", {**ckpt, "family": "not-a-family"})
    with pytest.raises(CheckpointError, match="family 'not-a-family'"):
        load_segmenter(tmp_path / "other.pt")
