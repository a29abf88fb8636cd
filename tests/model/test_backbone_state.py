"""Backbone weight sources: a timm name that cannot be fetched fails with one clear message."""

from __future__ import annotations

import pytest


def test_timm_names_fail_clearly_offline(monkeypatch):
    import timm

    from unsegcli.errors import CheckpointError
    from unsegcli.model.state_dict import read_backbone_state

    def offline(*a, **k):
        raise OSError("could not reach the hub")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(CheckpointError, match="timm weights 'vit_small_patch8_224.dino'") as e:
        read_backbone_state("timm:vit_small_patch8_224.dino")
    assert "weight file" in e.value.hint
