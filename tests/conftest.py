"""Shared fixtures: a tiny random model saved in our format, and a CLI runner. Builders: helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from unsegcli.config import PreprocessConfig
from unsegcli.model.checkpoint import checkpoint_dict, save_checkpoint

from .helpers import Cli, tiny_model

# One intra-op thread, here and in every process a test starts (they inherit the environment): the tiny models
# gain nothing from a second thread, and on 2 shared cores (CI, other jobs, a test's own subprocesses beside it)
# OpenMP's spinning threads made steps up to 10x slower (MOVE's resume test: 96 s with 2 threads, 11 s with one,
# load ~8). A value already set is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run on CUDA: skipped, saying so, where torch sees no GPU (CI, a laptop)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="marker gpu: needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(path, checkpoint_dict(tiny_model(), PreprocessConfig(size=64), {"source": "test"}))
    return path


@pytest.fixture
def cli() -> Cli:
    return Cli()
