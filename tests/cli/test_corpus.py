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
    from unsegcli.model.dino_keys import load_dino_vit

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


# --- issue 24: a sweep of the newer commands and options with hostile values ------------------------
# Each case: argv (placeholders filled by `sweep_tree`) and the exit codes it may give. Whatever the case, no
# traceback reaches stderr (in process, any exception fails the test) and the code is 0, 1 or 2 as documented.
USAGE, FAILED, OK = {2}, {1}, {0}
SWEEP: list[tuple[tuple[str, ...], set[int]]] = [
    # show
    (("show", "MASKS", "--images", "IMGS", "--out", "OUT"), OK),
    (("show", "MISSING", "--out", "OUT"), USAGE),
    (("show", "MASKS", "--images", "MISSING", "--out", "OUT"), USAGE),
    (("show", "MASKS", "--images", "IMGS", "--out", "TXT"), USAGE),
    (("show", "MASKS", "--images", "IMGS", "--out", "OUT", "--low-score", "nan"), USAGE),
    (("show", "MASKS", "--images", "IMGS", "--out", "OUT", "--low-score", "inf"), USAGE),
    (("show", "MASKS", "--images", "IMGS", "--out", "OUT", "--many", "-1"), USAGE),
    (("show", "MASKS", "--images", "IMGS", "--out", "OUT", "--sample", "1", "--seed", "-7"), OK),
    (("show", "MASKS", "--images", "IMGS", "--out", "OUT", "--sample", "1", "--seed", "1" + "0" * 30), OK | USAGE),
    (("show", "MASKS", "--images", "IMGS", "--out", "OUT", "--thumb-size", "99999999", "--page-size", "1"), OK),
    (("show", "MASKS", "--gt", "DIR", "--out", "OUT"), USAGE | FAILED),
    (("show", "MASKS", "--gt", "TXT", "--out", "OUT"), USAGE | FAILED),
    (("show", "TXT", "--out", "OUT"), USAGE | FAILED),
    # refine
    (("refine", "MASKS", "--images", "IMGS", "--out", "OUT"), OK),
    (("refine", "MASKS", "--images", "IMGS", "--out", "OUT", "--sigma-luma", "inf"), USAGE),
    (("refine", "MASKS", "--images", "IMGS", "--out", "OUT", "--sigma-chroma", "-3"), USAGE),
    (("refine", "MASKS", "--images", "IMGS", "--out", "OUT", "--sigma-spatial", "1e308"), OK | FAILED),
    (("refine", "MASKS", "--images", "IMGS", "--out", "OUT", "--threshold", "nan"), USAGE),
    (("refine", "MASKS", "--images", "MISSING", "--out", "OUT"), USAGE),
    (("refine", "MASKS", "--images", "TXT", "--out", "OUT"), USAGE | FAILED),
    (("refine", "DIR", "--images", "IMGS", "--out", "OUT"), USAGE),
    (("refine", "MASKS", "--images", "IMGS", "--out", "TXT"), USAGE),
    (("refine", "MASKS", "--images", "IMGS", "--out", "OUT", "--method", "crf"), USAGE),  # extra hidden
    # predict --refine
    (("predict", "IMGS", "--out", "OUT", "--refine", "bilateral", "--binary"), USAGE),
    (("predict", "IMGS", "--out", "OUT", "--refine", "crf"), USAGE),
    (("predict", "IMGS", "--out", "OUT", "--refine-output", "component"), USAGE),
    (("predict", "IMGS", "--out", "OUT", "--method", "maskcut", "--backbone", "DINO", "--refine", "bilateral"), USAGE),
    (("predict", "IMGS", "--out", "OUT", "--refine", "bilateral", "--threshold", "nan"), USAGE),
    # --backbone files
    (("predict", "IMGS", "--out", "OUT", "--method", "tokencut", "--backbone", "DINO"), OK),
    (("predict", "IMGS", "--out", "OUT", "--method", "tokencut", "--backbone", "MISSING"), USAGE),
    (("predict", "IMGS", "--out", "OUT", "--method", "tokencut", "--backbone", "DIR"), USAGE),
    (("predict", "IMGS", "--out", "OUT", "--method", "lost", "--backbone", "TXT"), FAILED),
    (("predict", "IMGS", "--out", "OUT", "--method", "lost", "--backbone", "MARKUP"), FAILED),
    (("predict", "IMGS", "--out", "OUT", "--method", "lost", "--backbone", "BADW"), FAILED),
    (("predict", "IMGS", "--out", "OUT", "--method", "lost", "--backbone", "DEMO"), FAILED),  # a segmenter
    (("predict", "IMGS", "--out", "OUT", "--method", "lost", "--backbone", "DINO", "--k-patches", "0"), USAGE),
    (("predict", "IMGS", "--out", "OUT", "--method", "tokencut", "--backbone", "DINO", "--tau", "nan"), USAGE),
    (("predict", "IMGS", "--out", "OUT", "--method", "tokencut", "--backbone", "DINO", "--eps", "inf"), USAGE),
    (("predict", "IMGS", "--out", "OUT", "--method", "maskcut", "--backbone", "DINO", "--max-objects", "256"), USAGE),
    (("predict", "IMGS", "--out", "OUT", "--method", "maskcut", "--backbone", "DINO", "--fixed-size", "8"), USAGE),
    (("predict", "IMGS", "--out", "OUT", "--weights", "DINO"), FAILED),  # a backbone is no checkpoint
    (("predict", "IMGS", "--out", "OUT", "--weights", "BADW"), FAILED),
    # the exports
    (("boxes", "MASKS", "--format", "yolo", "--images", "IMGS", "--out", "OUT"), OK),
    (("boxes", "MASKS", "--format", "yolo-seg", "--images", "IMGS", "--out", "OUT"), OK),
    (("boxes", "MASKS", "--format", "voc", "--images", "IMGS", "--out", "OUT"), OK),
    (("boxes", "MASKS", "--format", "yolo", "--images", "IMGS", "--out", "-"), USAGE),
    (("boxes", "MASKS", "--format", "voc", "--images", "IMGS", "--out", "TXT"), USAGE),
    (("boxes", "MASKS", "--format", "yolo-seg", "--images", "MISSING", "--out", "OUT"), USAGE),
    (("boxes", "MASKS", "--format", "yolo", "--images", "IMGS", "--out", "OUT", "--min-area", "inf"), USAGE),
    (("boxes", "MASKS", "--format", "voc", "--images", "IMGS", "--out", "OUT", "--max-boxes", "0"), USAGE),
    (("boxes", "MASKS", "--format", "yolo", "--out", "OUT"), USAGE | OK),  # no --images: said, or written
    # weights fetch (no network is reached: each is refused first)
    (("weights", "fetch", "nope"), USAGE),
    (("weights", "fetch", "dino-vits8", "nope"), USAGE),  # every name checked before the first download
    (("weights", "fetch", "dino-vits8", "found-decoder", "--out", "x.pt"), USAGE),  # --out: one file
    (("weights", "fetch", "demo-synth"), USAGE),
    (("weights", "fetch", "dino-vits8", "--out", "DIR"), USAGE),
    (("weights", "fetch", "dino-vits8", "--out", "-"), USAGE),
    (("weights", "fetch", "dino-vits8", "--out", "OUT/x.pth", "--timeout", "-5"), USAGE),
    (("weights", "fetch", "dino-vits8", "--out", "OUT/x.pth", "--timeout", "nan"), USAGE),
    (("weights", "info", "BADW"), FAILED),
    (("weights", "info", "DINO"), FAILED),
    # train --method sempart options (and the options of no objective)
    (("train", "IMGS", "--out", "OUT", "--method", "sempart", "--steps", "1", "--tau", "nan"), USAGE),
    (("train", "IMGS", "--out", "OUT", "--method", "sempart", "--steps", "1", "--tau", "1"), USAGE),
    (("train", "IMGS", "--out", "OUT", "--method", "sempart", "--steps", "1", "--lambda-sr", "-1"), USAGE),
    (("train", "IMGS", "--out", "OUT", "--method", "sempart", "--steps", "1", "--lambda-gtv-fine", "inf"), USAGE),
    (("train", "IMGS", "--out", "OUT", "--method", "sempart", "--steps", "1", "--sr-reduction", "max"), USAGE),
    (("train", "IMGS", "--out", "OUT", "--method", "sempart", "--steps", "1", "--inpainter", "blur"), USAGE),
    (("train", "IMGS", "--out", "OUT", "--method", "sempart", "--steps", "1", "--lr", "inf"), USAGE),
    (("train", "IMGS", "--out", "OUT", "--method", "sempart", "--epochs", "1", "--steps", "1"), USAGE),
    (("train", "IMGS", "--out", "OUT", "--method", "sempart", "--steps", "1", "--backbone-weights", "BADW"), FAILED),
    (
        ("train", "IMGS", "--out", "OUT", "--method", "sempart", "--steps", "1", "--backbone-weights", "DIR"),
        USAGE | FAILED,
    ),
    (("train", "IMGS", "--out", "OUT", "--method", "sempart", "--steps", "1", "--init", "DINO"), FAILED),
    (("train", "IMGS", "--out", "IMGS/run", "--method", "sempart", "--steps", "1", "--random-init"), USAGE),
    (("train", "TXT", "--out", "OUT", "--method", "sempart", "--steps", "1", "--random-init"), USAGE),
]


@pytest.fixture(scope="module")
def sweep_tree(tmp_path_factory) -> dict[str, str]:
    """Images and masks (one named with Rich markup), a patch-16 DINO file, a truncated safetensors copy, an
    empty folder, a text file, a path that does not exist, the demo segmenter."""
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from ..helpers import random_image, save_dino_backbone

    root = tmp_path_factory.mktemp("sweep")
    for folder in ("imgs", "masks", "dir"):
        (root / folder).mkdir()
    for name in ("a", "b [red]x"):
        Image.fromarray(random_image(32, 48)).save(root / "imgs" / f"{name}.png")
        mask = np.zeros((32, 48), np.uint8)
        mask[8:24, 10:30] = 255
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    dino = save_dino_backbone(root / "dino.pth")
    save_file(torch.load(dino, weights_only=True), str(root / "dino.safetensors"))
    data = (root / "dino.safetensors").read_bytes()
    (root / "bad.safetensors").write_bytes(data[: len(data) // 3])
    (root / "[bold]w.pth").write_bytes(b"not a pickle")
    (root / "notes.txt").write_text("hello\n")
    return {
        "IMGS": str(root / "imgs"), "MASKS": str(root / "masks"), "DINO": str(dino),
        "BADW": str(root / "bad.safetensors"), "DIR": str(root / "dir"), "TXT": str(root / "notes.txt"),
        "MISSING": str(root / "missing"),
        "MARKUP": str(root / "[bold]w.pth"), "DEMO": str(DEMO),
    }  # fmt: skip


@pytest.mark.parametrize(("argv", "codes"), SWEEP, ids=[" ".join(a) for a, _ in SWEEP])
def test_hostile_arguments_to_the_newer_commands(sweep_tree, tmp_path, cli, monkeypatch, argv, codes):
    import sys
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("the network was reached")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # the crf extra absent, whether installed or not
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    places = {**sweep_tree, "OUT": str(tmp_path / "out")}
    args = [places.get(a, a.replace("OUT/", places["OUT"] + "/").replace("IMGS/", places["IMGS"] + "/")) for a in argv]
    res = cli(*args, "-q") if argv[0] in ("show", "refine", "predict", "boxes") else cli(*args)
    assert res.exit_code in codes, res.output
    assert "Traceback" not in res.stderr, res.stderr
    if res.exit_code == 2:  # usage errors come before any work
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png")), res.output
