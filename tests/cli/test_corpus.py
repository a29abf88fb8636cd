"""Issue 13, the adversarial corpus: each test is a class of input that a run of every command over a corpus
of broken files found mishandled (a traceback, a silent wrong answer, a file written where none should be).
One compact case per class; the fix lives in the module that owns the class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unsegcli.errors import InputError, UsageError
from unsegcli.io.files import check_output_dir
from unsegcli.io.labels import read_coco_document, read_label_file

IMAGE = {"id": 1, "file_name": "a.png", "width": 32, "height": 32}
ANN = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 16, 16], "area": 256, "iscrowd": 0}
COCO = {"images": [IMAGE], "annotations": [ANN], "categories": [{"id": 1, "name": "fg"}]}
DEMO = Path(__file__).parents[2] / "unsegcli" / "weights_data" / "unseg-demo-synth.pt"


def coco_with(**ann) -> str:
    return json.dumps({**COCO, "annotations": [{**ANN, **ann}]})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # Python's json reads NaN / Infinity: a NaN score won CorLoc's highest-score pick, a NaN GT box
        # crashed int(round()) in the COCO ground truth, a NaN JSON-lines box crashed `unseg show`
        ('[{"image_id": 1, "bbox": [1, 2, 10, 10], "score": NaN}]', "score must be a number, not nan"),
        ('[{"image_id": 1, "bbox": [NaN, 2, 10, 10], "score": 0.5}]', "bbox must be 4 numbers"),
        (coco_with(bbox=[1, 2, float("inf"), 10]), "bbox must be 4 numbers"),  # written as Infinity
        (coco_with(score=float("nan")), "score must be a number"),
        ('{"file_name": "a.png", "boxes": [[1, 2, 10, 10]], "scores": [NaN]}\n', "'scores' must be a list of finite"),
        ('{"file_name": "a.png", "boxes": [[NaN, 2, 10, 10]]}\n', "boxes of finite numbers"),
        # a negative width or height is no box: scored silently as a miss before
        (coco_with(bbox=[1, 2, -10, -10]), "width and height cannot be negative"),
        ('[{"image_id": 1, "bbox": [1, 2, -10, 10], "score": 0.5}]', "width and height cannot be negative"),
    ],
)
def test_non_finite_or_negative_numbers_are_a_named_bad_input(tmp_path, text, reason):
    path = tmp_path / "labels.json"
    path.write_text(text)
    with pytest.raises(InputError, match=str(path)) as e:
        read_label_file(str(path))
    assert reason in e.value.message


def test_nan_in_coco_ground_truth_is_named_not_a_traceback(tmp_path, cli):
    (tmp_path / "gt.json").write_text(coco_with(bbox=[float("nan"), 2, 10, 10]))
    with pytest.raises(InputError, match="bbox must be 4 numbers"):
        read_coco_document(str(tmp_path / "gt.json"))
    (tmp_path / "det.json").write_text(json.dumps([{**ANN, "score": 0.9}]))
    res = cli("corloc", "coco", "--root", tmp_path, "--ann", tmp_path / "gt.json", "--pred", tmp_path / "det.json")
    assert res.exit_code == 1 and "gt.json" in res.stderr and "Traceback" not in res.stderr


def test_a_byte_order_mark_is_read(tmp_path):
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(COCO).encode())
    assert read_coco_document(str(tmp_path / "bom.json"))["images"] == [IMAGE]
    assert read_label_file(str(tmp_path / "bom.json")).data == COCO  # type: ignore[union-attr]


def test_merge_names_a_part_that_pycocotools_cannot_index(tmp_path, cli):
    (tmp_path / "a.json").write_text(json.dumps(COCO))
    bad = {**COCO, "images": [{**IMAGE, "file_name": "b.png"}]}
    bad["annotations"] = [{k: v for k, v in ANN.items() if k != "category_id"}]
    (tmp_path / "b.json").write_text(json.dumps(bad))
    res = cli("merge", tmp_path / "a.json", tmp_path / "b.json", "--out", tmp_path / "m.json")
    assert res.exit_code == 1 and "b.json: pycocotools cannot index it" in res.stderr
    assert res.stderr.count("b.json") == 1 and not (tmp_path / "m.json").exists()


def test_folder_outputs_refuse_dash():
    with pytest.raises(UsageError, match="cannot be '-'"):
        check_output_dir("-", "--out")


def test_synth_refuses_dash(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("synth", "-", "--n", "1")
    assert res.exit_code == 2 and not (tmp_path / "-").exists()


@pytest.mark.parametrize("command", ["export", "import-move"])
def test_weights_check_out_before_any_work(tmp_path, cli, command):
    """`--out` a folder raised IsADirectoryError from os.replace after all the work; '-' wrote a file named '-'."""
    (tmp_path / "dir").mkdir()
    for out in (tmp_path / "dir", "-"):
        res = cli("weights", command, DEMO, "--out", out)
        assert res.exit_code == 2 and "--out" in res.stderr and "unpickling" not in res.stderr, res.stderr
    assert list((tmp_path / "dir").iterdir()) == []


def test_weights_export_resolves_its_input_as_info_does(tmp_path, cli):
    res = cli("weights", "export", tmp_path / "missing.pt", "--out", tmp_path / "x.pt")
    assert res.exit_code == 2 and "weights file not found" in res.stderr
    res = cli("weights", "export", tmp_path, "--out", tmp_path / "x.pt")
    assert res.exit_code == 2 and "is a folder" in res.stderr
    res = cli("weights", "export", "demo-synth", "--out", tmp_path / "x.pt")
    assert res.exit_code == 0 and (tmp_path / "x.pt").is_file()


def test_a_foreign_pickle_is_refused_without_torch_warnings(tmp_path, cli):
    """A plain pickle (protocol 4) made torch print its own UserWarning with a site-packages path."""
    import pickle

    (tmp_path / "p.pt").write_bytes(pickle.dumps({"x": 1}, protocol=4))
    res = cli("weights", "info", tmp_path / "p.pt")
    assert res.exit_code == 1 and "not an unseg checkpoint" in res.stderr
    assert "Warning" not in res.stderr and "site-packages" not in res.stderr


def test_a_stdin_list_names_nul_bytes_and_folders_as_bad_inputs(tmp_path):
    """A binary line in a '-' list reached os.path.realpath (ValueError: embedded null byte, a traceback);
    a listed folder was opened as an image ("corrupt or truncated image (Is a directory)")."""
    import io

    from unsegcli.io.images import scan_inputs

    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    text = f"\xff\x00junk\n{tmp_path / 'sub'}\n{tmp_path / 'a.png'}\n"
    listing = scan_inputs(["-"], stdin=io.StringIO(text), root=str(tmp_path))
    assert [it.rel for it in listing.items] == ["a.png"]
    assert len(listing.problems) == 2
    assert "NUL byte" in listing.problems[0] and listing.problems[1].startswith(f"{tmp_path / 'sub'}: a folder")


def test_a_checkpoint_with_bad_preprocessing_fails_at_load_naming_the_file(tmp_path):
    """A stored size of -5 loaded fine and then failed every image ("height and width must be > 0")."""
    import torch

    from unsegcli.errors import CheckpointError
    from unsegcli.methods.loading import load_predictor

    ckpt = torch.load(DEMO, weights_only=True)
    for bad in ({"size": -5}, {"max_size": 0}, {"std": [0.2, 0.0, 0.2]}, {"mean": [0.5, float("nan"), 0.5]}):
        path = tmp_path / "bad.pt"
        torch.save({**ckpt, "preprocess": {**ckpt["preprocess"], **bad}}, path)
        with pytest.raises(CheckpointError, match=f"{path}: unusable model configuration: preprocess"):
            load_predictor(path, torch.device("cpu"))


def test_a_backbone_that_is_no_vit_is_named(tmp_path):
    import torch

    from unsegcli.errors import CheckpointError
    from unsegcli.methods.spectral.features import load_dino_vit

    torch.save({"a": torch.zeros(1)}, tmp_path / "not_vit.pth")
    with pytest.raises(CheckpointError, match=r"not_vit\.pth: .*no 'patch_embed\.proj\.weight'"):
        load_dino_vit(tmp_path / "not_vit.pth")


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims ``width`` x ``height`` grayscale pixels: a decompression bomb's header, no data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def test_a_mask_over_the_pixel_limits_is_named_as_too_large(tmp_path):
    """OpenCV's own cap raised cv2.error ("Assertion failed ... CV_IO_MAX_IMAGE_PIXELS", refine), Pillow's
    DecompressionBombError went out unmapped (boxes printed its class name)."""
    from unsegcli.io.images import TOO_LARGE
    from unsegcli.io.masks import read_mask

    path = _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(InputError, match=f"bomb.png: {TOO_LARGE}"):
        read_mask(str(path))


def test_outputs_to_a_pipe_or_device_are_written_in_place(tmp_path):
    """A temp file renamed over the target replaced /dev/null (or a named pipe) itself with a regular file
    (`--json /dev/null`, `--out /dev/full` as root); such targets are now written directly."""
    import os
    import stat
    import threading

    from unsegcli.io.files import atomic_write_bytes, open_output

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def through_pipe(write) -> bytes:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
        reader.start()
        write()
        reader.join(10)
        return got[0]

    def streamed() -> None:
        with open_output(str(fifo)) as f:
            f.write(b"streamed")

    assert through_pipe(lambda: atomic_write_bytes(fifo, b"payload")) == b"payload"
    assert through_pipe(streamed) == b"streamed"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temp left beside it


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs /dev/full")
def test_a_full_disk_is_a_named_output_error():
    """`--json /dev/full` (ENOSPC) was a traceback."""
    from unsegcli.errors import OutputError
    from unsegcli.io.files import atomic_write_bytes, open_output

    with pytest.raises(OutputError, match="/dev/full: cannot write"):
        atomic_write_bytes("/dev/full", b"x")
    with pytest.raises(OutputError, match="/dev/full: cannot write"), open_output("/dev/full") as f:
        f.write(b"x" * 100_000)
    assert Path("/dev/full").is_char_device()
