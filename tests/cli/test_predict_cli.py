"""`unseg predict` through the CLI: sizes, values, workers, resume, bad inputs, stdin, usage errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unsegcli.config import PreprocessConfig
from unsegcli.methods.move.predictor import predict_masks

from ..helpers import PREDICT_SIZES, random_image, tiny_model, write_images


def read(p) -> np.ndarray:
    return np.asarray(Image.open(p))


def test_cli_masks_have_original_size_and_match_library(tmp_path, cli, tiny_ckpt):
    paths = write_images(tmp_path / "imgs", PREDICT_SIZES)
    res = cli("predict", tmp_path / "imgs", "--out", tmp_path / "m", "--weights", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0, res.output
    expected = predict_masks(
        tiny_model(), [random_image(h, w, seed=i) for i, (h, w) in enumerate(PREDICT_SIZES)], PreprocessConfig(size=64)
    )
    for p, (h, w), exp in zip(paths, PREDICT_SIZES, expected, strict=True):
        m = read(tmp_path / "m" / (p.stem + ".png"))
        assert m.shape == (h, w) and m.dtype == np.uint8
        assert np.abs(m.astype(int) - np.floor(exp * 255).astype(int)).max() <= 1
        assert m.std() > 0  # a real prediction, not a constant
    assert "written 7" in res.stderr and "failed 0" in res.stderr


def test_binary_masks_are_thresholded(tmp_path, cli, tiny_ckpt):
    write_images(tmp_path / "imgs", PREDICT_SIZES[:1])
    soft = predict_masks(tiny_model(), [random_image(*PREDICT_SIZES[0], seed=0)], PreprocessConfig(size=64))[0]
    t = float(np.median(soft))
    assert (
        cli(
            "predict",
            tmp_path / "imgs",
            "-o",
            tmp_path / "hard",
            "-w",
            tiny_ckpt,
            "-j",
            "0",
            "-q",
            "--binary",
            "--threshold",
            str(t),
        ).exit_code
        == 0
    )
    b = read(tmp_path / "hard" / "img_00.png")
    assert set(np.unique(b)) == {0, 255}
    clear = np.abs(soft - t) > 1e-4  # away from the threshold, binary == (p > t) exactly
    np.testing.assert_array_equal((b == 255)[clear], (soft > t)[clear])


def test_workers_and_batches_write_the_same_files(tmp_path, cli, tiny_ckpt):
    write_images(tmp_path / "imgs", PREDICT_SIZES)
    assert cli("predict", tmp_path / "imgs", "-o", tmp_path / "a", "-w", tiny_ckpt, "-j", "0", "-q").exit_code == 0
    assert (
        cli("predict", tmp_path / "imgs", "-o", tmp_path / "b", "-w", tiny_ckpt, "-j", "2", "-b", "4", "-q").exit_code
        == 0
    )
    for f in sorted((tmp_path / "a").iterdir()):
        assert np.abs(read(f).astype(int) - read(tmp_path / "b" / f.name).astype(int)).max() <= 1


def test_resume_skips_existing_and_overwrite_recomputes(tmp_path, cli, tiny_ckpt, monkeypatch):
    from unsegcli.pipelines import predict as pipeline

    write_images(tmp_path / "imgs", PREDICT_SIZES[:3])
    out = tmp_path / "m"
    assert cli("predict", tmp_path / "imgs", "-o", out, "-w", tiny_ckpt, "-j", "0").exit_code == 0
    good = read(out / "img_01.png").copy()
    builds, build = [], pipeline._build
    monkeypatch.setattr(pipeline, "_build", lambda *a, **k: builds.append(a[0].method) or build(*a, **k))
    res = cli("predict", tmp_path / "imgs", "-o", out, "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0 and "written 0" in res.stderr and builds == []  # finished: no model loaded
    # an "interrupted" run: one output missing, one a stray temp file, one replaced by a marker
    (out / "img_00.png").unlink()
    (out / ".img_00.png.tmp-abc").write_bytes(b"partial")
    Image.fromarray(np.zeros_like(good)).save(out / "img_01.png")
    res = cli("predict", tmp_path / "imgs", "-o", out, "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0 and "written 1" in res.stderr and "skipped 2" in res.stderr and builds == ["move"]
    assert read(out / "img_01.png").max() == 0  # kept: resume never touches finished outputs
    assert read(out / "img_00.png").shape == PREDICT_SIZES[0]
    res = cli("predict", tmp_path / "imgs", "-o", out, "-w", tiny_ckpt, "-j", "0", "--overwrite")
    assert "written 3" in res.stderr
    np.testing.assert_array_equal(read(out / "img_01.png"), good)


def _bad_input_corpus(folder: Path) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Files that must be converted (name -> expected mask size) and files that must fail."""
    folder.mkdir()
    ok: dict[str, tuple[int, int]] = {}
    rgb = random_image(30, 40)
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    ok["cmyk"] = (30, 40)
    Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save(folder / "sixteen.png")
    ok["sixteen"] = (30, 40)
    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE)
    pal.info["transparency"] = 0
    pal.save(folder / "palette.png", transparency=0)
    ok["palette"] = (30, 40)
    Image.fromarray(rgb).convert("LA").save(folder / "la.png")
    ok["la"] = (30, 40)
    Image.fromarray(rgb).convert("RGBA").save(folder / "rgba.png")
    ok["rgba"] = (30, 40)
    Image.fromarray(rgb).convert("L").save(folder / "gray.bmp")
    ok["gray"] = (30, 40)
    Image.fromarray(random_image(3, 5)).save(folder / "tiny.png")
    ok["tiny"] = (3, 5)
    Image.fromarray(random_image(1, 1)).save(folder / "pixel.webp")
    ok["pixel"] = (1, 1)
    Image.fromarray(rgb).save(folder / "name with spaces é.TIF")
    ok["name with spaces é"] = (30, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° CW to display -> displayed size is 40 x 30
    Image.fromarray(rgb).save(folder / "rotated.jpg", exif=exif)
    ok["rotated"] = (40, 30)
    bad = []
    (folder / "empty.png").write_bytes(b"")
    bad.append("empty.png")
    (folder / "text.jpg").write_text("this is not an image")
    bad.append("text.jpg")
    data = (folder / "cmyk.jpg").read_bytes()
    full = folder / "full.png"
    Image.fromarray(random_image(64, 64)).save(full)
    (folder / "truncated.png").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    bad.append("truncated.png")
    full.unlink()
    (folder / "corrupt.jpg").write_bytes(data[:20] + bytes(200) + data[220:240])
    bad.append("corrupt.jpg")
    return ok, bad


def test_bad_inputs_are_reported_and_the_rest_written(tmp_path, cli, tiny_ckpt):
    ok, bad = _bad_input_corpus(tmp_path / "imgs")
    res = cli("predict", tmp_path / "imgs", "-o", tmp_path / "m", "-w", tiny_ckpt, "-j", "2")
    assert res.exit_code == 1
    for name in bad:
        assert name in res.stderr, (name, res.stderr)
    for stem, size in ok.items():
        m = read(tmp_path / "m" / f"{stem}.png")
        assert m.shape == size, stem
    assert f"failed {len(bad)}" in res.stderr
    assert not any((tmp_path / "m" / (Path(b).stem + ".png")).exists() for b in bad)


def test_decompression_bomb_is_reported_clearly(tmp_path, monkeypatch, cli, tiny_ckpt):
    from PIL import Image as PILImage

    write_images(tmp_path / "imgs", [(40, 60), (200, 200)])
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 2000)
    res = cli("predict", tmp_path / "imgs", "-o", tmp_path / "m", "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 1
    assert "decompression-bomb" in res.stderr and "img_01" in res.stderr and "--max-pixels" in res.stderr
    res = cli("predict", tmp_path / "imgs", "-o", tmp_path / "m", "-w", tiny_ckpt, "-j", "0", "--max-pixels", "50000")
    assert res.exit_code == 0 and (tmp_path / "m" / "img_01.png").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_reported(tmp_path, cli, tiny_ckpt):
    paths = write_images(tmp_path / "imgs", [(40, 60), (40, 60)])
    paths[1].chmod(0)
    res = cli("predict", tmp_path / "imgs", "-o", tmp_path / "m", "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 1 and "permission denied" in res.stderr


def test_stdin_paths_and_single_files(tmp_path, cli, tiny_ckpt):
    paths = write_images(tmp_path / "imgs", PREDICT_SIZES[:3], ext="jpg")
    res = cli(
        "predict",
        "-",
        "-o",
        tmp_path / "m",
        "-w",
        tiny_ckpt,
        "-j",
        "0",
        "--root",
        tmp_path / "imgs",
        input="\n".join(str(p) for p in paths[:2]) + "\n\n",
    )
    assert res.exit_code == 0, res.output
    assert sorted(f.name for f in (tmp_path / "m").glob("*.png")) == ["img_00.png", "img_01.png"]
    res = cli("predict", paths[2], "-o", tmp_path / "m", "-w", tiny_ckpt, "-j", "0", "--root", tmp_path / "imgs")
    assert res.exit_code == 0 and (tmp_path / "m" / "img_02.png").exists()
    # without --root, an absolute path outside the current folder keeps its path without the leading '/'
    res = cli("predict", paths[2], "-o", tmp_path / "abs", "-w", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0 and (tmp_path / "abs" / str(paths[2].with_suffix(".png")).lstrip("/")).exists()


def test_nested_folders_keep_relative_paths(tmp_path, cli, tiny_ckpt):
    write_images(tmp_path / "imgs" / "a" / "b", [(40, 60)])
    write_images(tmp_path / "imgs" / "c", [(40, 60)], ext="JPEG")
    (tmp_path / "imgs" / "notes.txt").write_text("ignored: not an image extension")
    assert cli("predict", tmp_path / "imgs", "-o", tmp_path / "m", "-w", tiny_ckpt, "-j", "0").exit_code == 0
    assert (tmp_path / "m" / "a" / "b" / "img_00.png").exists() and (tmp_path / "m" / "c" / "img_00.png").exists()


def test_output_folder_inside_the_input_folder_is_not_read_back(tmp_path, cli, tiny_ckpt):
    write_images(tmp_path / "imgs", [(40, 60), (30, 30)])
    for _ in range(2):
        res = cli("predict", tmp_path / "imgs", "-o", tmp_path / "imgs" / "masks", "-w", tiny_ckpt, "-j", "0")
        assert res.exit_code == 0 and "images 2 " in res.stderr
    assert not (tmp_path / "imgs" / "masks" / "masks").exists()


def test_usage_errors_exit_2(tmp_path, cli, tiny_ckpt):
    assert cli("predict", tmp_path / "missing", "-o", tmp_path / "m", "-w", tiny_ckpt).exit_code == 2
    assert cli("predict", "-o", tmp_path / "m").exit_code == 2
    write_images(tmp_path / "imgs", [(40, 60)])
    assert (
        cli("predict", tmp_path / "imgs", "-o", tmp_path / "m", "-w", tiny_ckpt, "--precision", "fp64").exit_code == 2
    )
    assert (
        cli("predict", tmp_path / "imgs", "-o", tmp_path / "m", "-w", tiny_ckpt, "--device", "cuda:7").exit_code == 2
        or __import__("torch").cuda.device_count() > 7
    )
    (tmp_path / "empty").mkdir()
    assert cli("predict", tmp_path / "empty", "-o", tmp_path / "m", "-w", tiny_ckpt).exit_code == 2


def test_an_extreme_aspect_ratio_is_one_named_failed_input(tmp_path, cli, tiny_ckpt):
    """A 1x300 strip at a 64 shorter side would be a 19,200x64 model input; over the cap it fails alone, named."""
    import unsegcli.methods.move.predictor as inference

    write_images(tmp_path / "imgs", [(32, 40)])
    Image.fromarray(random_image(300, 1)).save(tmp_path / "imgs" / "strip.png")
    old = inference.MAX_MODEL_PIXELS
    inference.MAX_MODEL_PIXELS = 64 * 64 * 100  # the demo model's size 64: a 100:1 aspect ratio passes
    try:
        res = cli("predict", tmp_path / "imgs", "--out", tmp_path / "m", "-w", tiny_ckpt, "-j", "0")
    finally:
        inference.MAX_MODEL_PIXELS = old
    assert res.exit_code == 1
    assert "strip.png" in res.stderr and "max-size" in res.stderr.replace("max_size", "max-size")
    assert (tmp_path / "m" / "img_00.png").exists() and not (tmp_path / "m" / "strip.png").exists()


@pytest.mark.slow
@pytest.mark.skipif(not __import__("unsegcli.model.forward").model.forward.openvino_installed(), reason="no openvino")
def test_engine_openvino_writes_the_masks_torch_writes(tmp_path, cli, tiny_ckpt, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_images(tmp_path / "imgs", [(40, 60), (40, 60)])
    for engine in ("torch", "openvino"):
        res = cli("predict", tmp_path / "imgs", "-o", tmp_path / engine, "-w", tiny_ckpt, "-j", "0", "--engine", engine)
        assert res.exit_code == 0, res.output
    assert "engine openvino" in res.stderr
    for name in ("img_00.png", "img_01.png"):
        a, b = read(tmp_path / "torch" / name).astype(int), read(tmp_path / "openvino" / name).astype(int)
        assert np.abs(a - b).max() <= 1  # 8-bit masks: fp32 outputs within 1e-5 round to the same level or the next
    assert len(list((tmp_path / "cache" / "unseg" / "openvino").iterdir())) == 1  # one shape, one export


def test_engine_and_cpu_precision_usage_errors(tmp_path, cli, tiny_ckpt, monkeypatch):
    import sys

    from unsegcli import runtime

    write_images(tmp_path / "imgs", [(40, 60)])
    args = ("predict", tmp_path / "imgs", "-o", tmp_path / "m", "-w", tiny_ckpt, "--device", "cpu")
    res = cli(*args, "--precision", "fp16")
    assert res.exit_code == 2 and "--precision fp16 runs on GPU only" in res.stderr
    monkeypatch.setattr(runtime, "cpu_native_bf16", lambda: False)
    res = cli(*args, "--precision", "bf16")
    assert res.exit_code == 2 and "no native bf16" in res.stderr
    monkeypatch.setattr(runtime, "cpu_native_bf16", lambda: True)
    res = cli(*args, "--precision", "bf16", "--method", "tokencut")
    assert res.exit_code == 2 and "--precision" not in res.stderr  # allowed for every method (here: no --weights)
    res = cli(*args, "--precision", "bf16", "-j", "0")
    assert res.exit_code == 0 and "cpu bf16" in res.stderr
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the extra were not installed
    res = cli(*args, "--engine", "openvino")
    assert res.exit_code == 2 and "pip install 'unseg[openvino]'" in res.stderr
