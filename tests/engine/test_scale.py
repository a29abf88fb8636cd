"""Scale-out in one process: shards, and reduced precision."""

from __future__ import annotations

import numpy as np
import pytest

from unsegcli.config import PreprocessConfig
from unsegcli.errors import UsageError
from unsegcli.methods.move.predictor import predict_masks
from unsegcli.runtime import Shard, parse_shard

from ..helpers import SHARD_SIZES, random_image, tiny_model, write_images


def test_shards_cover_every_input_exactly_once():
    items = list(range(23))
    for n in (1, 2, 5, 23, 30):
        parts = [Shard(i, n).take(items) for i in range(n)]
        assert sorted(x for p in parts for x in p) == items
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1  # balanced
    assert parse_shard("3/16") == Shard(3, 16)
    for bad in ("16/16", "a/b", "3", "-1/4"):
        with pytest.raises(UsageError):
            parse_shard(bad)


def test_cli_shards_together_equal_one_run(tmp_path, cli, tiny_ckpt):
    write_images(tmp_path / "imgs", SHARD_SIZES)
    assert cli("predict", tmp_path / "imgs", "-o", tmp_path / "one", "-w", tiny_ckpt, "-j", "0", "-q").exit_code == 0
    for i in range(3):
        res = cli(
            "predict", tmp_path / "imgs", "-o", tmp_path / "sharded", "-w", tiny_ckpt, "-j", "0", "--shard", f"{i}/3"
        )
        assert res.exit_code == 0 and f"images {len(Shard(i, 3).take(SHARD_SIZES))} " in res.stderr
    one = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert one == sorted(p.name for p in (tmp_path / "sharded").iterdir())
    for name in one:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "sharded" / name).read_bytes()
    # boxes part files merge into the single-process file, byte for byte
    args = [tmp_path / "one", "--images", tmp_path / "imgs", "--multi", "-j", "0", "-q", "--threshold", "0.3"]
    assert cli("boxes", *args, "--out", tmp_path / "single.json").exit_code == 0
    for i in range(3):
        assert cli("boxes", *args, "--shard", f"{i}/3", "--out", tmp_path / f"part-{i}.json").exit_code == 0
    parts = [tmp_path / f"part-{i}.json" for i in range(3)]
    # overlapping inputs (a part given twice) are de-duplicated
    assert cli("merge", *parts, parts[0], "--out", tmp_path / "merged.json").exit_code == 0
    assert (tmp_path / "merged.json").read_bytes() == (tmp_path / "single.json").read_bytes()


def test_bf16_masks_agree_with_fp32_within_two_levels():
    model = tiny_model()
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(SHARD_SIZES[:3])]
    fp32 = predict_masks(model, images, PreprocessConfig(size=64), precision="fp32")
    bf16 = predict_masks(model, images, PreprocessConfig(size=64), precision="bf16")
    mad = np.mean([np.abs(np.floor(a * 255) - np.floor(b * 255)).mean() for a, b in zip(fp32, bf16, strict=True)])
    assert mad < 2.0
    assert any(not np.array_equal(a, b) for a, b in zip(fp32, bf16, strict=True))  # bf16 really ran
