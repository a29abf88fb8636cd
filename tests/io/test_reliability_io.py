"""Unit tests of the reliability helpers (issue 13): input naming and listing, output checks, temp files,
settings tags, stored configs, plain progress lines. Fast, in-process; tests/test_reliability.py runs the
commands end to end."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from unsegcli.errors import UsageError


def test_relative_name_rules(tmp_path, monkeypatch):
    from unsegcli.io.images import relative_name

    monkeypatch.chdir(tmp_path)
    assert relative_name("photos/100/a.jpg") == "photos/100/a.jpg"
    assert relative_name(str(tmp_path / "photos" / "a.jpg")) == "photos/a.jpg"  # absolute inside cwd
    assert relative_name("/data/x/a.jpg") == "data/x/a.jpg"  # outside cwd: the path without its anchor
    assert relative_name("../elsewhere/a.jpg") == (tmp_path.parent / "elsewhere" / "a.jpg").as_posix().lstrip("/")
    assert relative_name("photos/100/a.jpg", root="photos") == "100/a.jpg"
    assert relative_name("/data/x/a.jpg", root="photos") is None


def test_stdin_lists_keep_spaces_and_take_nul_separators(tmp_path, monkeypatch):
    from unsegcli.io.images import scan_inputs

    monkeypatch.chdir(tmp_path)
    lines = io.StringIO(" lead.png\ntrail .png\r\n\nsub/a.png\n")
    assert [it.rel for it in scan_inputs(["-"], stdin=lines).items] == [" lead.png", "sub/a.png", "trail .png"]
    nul = io.StringIO("a\nb.png\0c.png\0")  # a newline is part of a name under --null
    assert [it.path for it in scan_inputs(["-"], stdin=nul, null=True).items] == ["a\nb.png", "c.png"]
    outside = scan_inputs(["-"], stdin=io.StringIO("/x/a.png\nsub/b.png\n"), root="sub")
    assert [it.rel for it in outside.items] == ["b.png"] and "/x/a.png" in outside.problems[0]


def test_collisions_are_left_out_and_named_with_both_paths(tmp_path):
    from unsegcli.io.images import scan_inputs

    for name in ("a.jpg", "a.png", "b.png", "notes.txt", "clip.GIF", ".hidden.gif"):
        (tmp_path / name).write_bytes(b"x")
    listing = scan_inputs([str(tmp_path)])
    assert [it.rel for it in listing.items] == ["b.png"]
    assert len(listing.problems) == 1 and "a.jpg" in listing.problems[0] and "a.png" in listing.problems[0]
    assert listing.ignored == {".txt": 1, ".gif": 1}
    assert listing.ignored_summary() == "ignored 2 files with other extensions (.gif .txt)"
    # the same file given twice is one input, not a collision
    assert len(scan_inputs([str(tmp_path / "b.png"), str(tmp_path / "b.png")], root=str(tmp_path)).items) == 1


def test_walk_visits_each_real_folder_once_and_prefers_real_names(tmp_path):
    from unsegcli.io.images import scan_inputs

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.png").write_bytes(b"x")
    (tmp_path / "a_link").symlink_to(tmp_path / "real", target_is_directory=True)  # sorts before "real"
    (tmp_path / "real" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert [it.rel for it in scan_inputs([str(tmp_path)]).items] == ["real/x.png"]


def test_output_checks(tmp_path):
    from unsegcli.io.files import check_output_dir, check_output_file

    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    check_output_dir(tmp_path / "new" / "deeper")
    check_output_file(tmp_path / "new" / "out.json")
    check_output_file("-")
    for call, path in [
        (check_output_dir, tmp_path / "f"),
        (check_output_dir, tmp_path / "f" / "sub"),
        (check_output_file, tmp_path / "d"),
        (check_output_file, tmp_path / "f" / "x.json"),
    ]:
        with pytest.raises(UsageError, match="--out"):
            call(path, "--out")
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        with pytest.raises(UsageError, match="not writable"):
            check_output_dir(tmp_path / "ro" / "sub")
    assert sorted(os.listdir(tmp_path)) == ["d", "f"] + (["ro"] if os.geteuid() != 0 else [])  # creates nothing


def test_temps_are_short_and_stale_ones_of_dead_processes_are_removed(tmp_path):
    from unsegcli.io.files import _host_tag, atomic_write_bytes, remove_stale_temps

    dead = 2**22 + 12345
    other_host = "zzzzzz" if _host_tag() != "zzzzzz" else "yyyyyy"
    names = [
        f".unseg-tmp-{dead}-stale",
        f".unseg-tmp-{os.getpid()}-live",
        f".unseg-tmp-{dead}-{other_host}-abcd1234",
        ".unseg-tmp-notapid-x",
        "keep.png",
    ]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:])  # another host's temp: its PID means nothing here
    old = tmp_path / names[2]
    os.utime(old, (0, 0))  # untouched for a day: stale wherever it came from
    assert remove_stale_temps(tmp_path) == 1 and not old.exists()
    name = "n" * 251 + ".png"  # the longest legal name still gets a temp name
    atomic_write_bytes(tmp_path / "long" / name, b"data")
    assert os.listdir(tmp_path / "long") == [name]


def test_settings_tag_round_trip_keeps_the_png_decodable(tmp_path):
    from unsegcli.io.masks import first_with_other_tag, read_mask, read_tag, settings_tag, write_mask

    tag = settings_tag({"binary": True, "threshold": 0.5})
    assert tag == settings_tag({"threshold": 0.5, "binary": True}) != settings_tag({"binary": False})
    mask = (np.arange(12 * 10).reshape(12, 10) % 256).astype(np.uint8)
    write_mask(str(tmp_path / "a.png"), mask, tag)
    write_mask(str(tmp_path / "b.png"), mask)
    np.testing.assert_array_equal(read_mask(str(tmp_path / "a.png")), mask)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), mask)  # Pillow checks CRCs
    assert read_tag(str(tmp_path / "a.png")) == tag and read_tag(str(tmp_path / "b.png")) is None
    # the chunk is a standard tEXt chunk with a correct CRC
    data = (tmp_path / "a.png").read_bytes()
    (n,) = struct.unpack(">I", data[33:37])
    assert data[37:41] == b"tEXt" and struct.unpack(">I", data[41 + n : 45 + n])[0] == zlib.crc32(data[37 : 41 + n])
    paths = [str(tmp_path / p) for p in ("missing.png", "b.png", "a.png")]
    assert first_with_other_tag(paths, tag) is None
    assert first_with_other_tag(paths, settings_tag({"binary": False})) == paths[2]


def test_stored_configs_are_type_checked():
    from unsegcli.config import ModelConfig, PreprocessConfig
    from unsegcli.methods.sempart.config import SempartConfig

    good = ModelConfig.tiny()
    data = {
        "backbone": dict(good.backbone.__dict__),
        "head": {"widths": list(good.head.widths), "upsampling_blocks": good.head.upsampling_blocks},
    }
    assert ModelConfig.from_dict(data) == good
    for broken, what in [
        ({**data, "backbone": {**data["backbone"], "embed_dim": "wide"}}, "embed_dim"),
        ({**data, "backbone": {**data["backbone"], "depth": True}}, "depth"),
        ({**data, "head": {**data["head"], "widths": [8, "x"]}}, "widths"),
        ({**data, "backbone": {**data["backbone"], "pos_embed": "other"}}, "pos_embed"),
        ({"head": data["head"]}, "backbone"),
        ("text", "mapping"),
    ]:
        with pytest.raises(UsageError, match=what):
            ModelConfig.from_dict(broken)  # type: ignore[arg-type]
    assert PreprocessConfig.from_dict({"size": 64, "max_size": None}).size == 64
    with pytest.raises(UsageError, match="size"):
        PreprocessConfig.from_dict({"size": 64.5})
    with pytest.raises(UsageError, match="encoder_dim"):
        SempartConfig.from_dict({"encoder_dim": "big"})


def test_plain_progress_lines(monkeypatch, capsys):
    from unsegcli.cli import console as con

    monkeypatch.setenv("UNSEG_PROGRESS_SECONDS", "0")
    with con.progress_bar(None, "work [b]x[/b]") as advance:
        advance(0, total=3)
        advance(2)
        advance(1, info="loss 0.5")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("work [b]x[/b] 2/3 (66%) · ") and "eta" in lines[0]
    assert lines[-1].startswith("work [b]x[/b] 3/3 (100%)") and lines[-1].endswith("loss 0.5") and len(lines) == 2
    monkeypatch.setenv("UNSEG_PROGRESS_SECONDS", "3600")
    with con.progress_bar(5, "slow") as advance:
        advance(1)
        advance(1)
    lines = capsys.readouterr().err.splitlines()  # nothing while running, one line at the end
    assert len(lines) == 1 and lines[0].startswith("slow 2/5 (40%)")


def test_messages_print_user_text_verbatim(capsys):
    from unsegcli.cli.console import notice, report_failure

    report_failure("bad [edited].jpg: not an image")
    notice("x[/b].png [red]y")
    err = capsys.readouterr().err
    assert "bad [edited].jpg: not an image" in err and "x[/b].png [red]y" in err


def test_outputs_that_hold_images_or_masks_are_refused_inside_an_input_folder(tmp_path, cli):
    """The next run over the input folder would read them back: refined masks, overlays, a YOLO/VOC export."""
    masks, images = tmp_path / "masks", tmp_path / "images"
    masks.mkdir()
    images.mkdir()
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(masks / "a.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / "a.png")
    for args in (
        ("refine", masks, "--images", images, "--out", masks / "refined"),
        ("refine", masks, "--images", images, "--out", images / "refined"),
        ("show", masks, "--images", images, "--out", masks / "review"),
        ("boxes", masks, "--images", images, "--format", "voc", "--out", masks / "Annotations"),
        ("boxes", masks, "--images", images, "--format", "yolo", "--out", images / "yolo"),
    ):
        res = cli(*args)
        assert res.exit_code == 2 and "inside the input folder" in res.stderr, (args, res.output)
        assert not (tmp_path / "masks" / "refined").exists()
    # a single label file beside the masks is fine: it is no image or mask
    assert cli("boxes", masks, "--images", images, "--out", masks / "p.json", "-q").exit_code == 0


_STAGE_THEN_DIE = """
import os, signal, sys
from unsegcli.io.files import staging_file, staging_folder
stage = staging_folder()
folder = stage.__enter__()  # a staged shard in progress
open(os.path.join(folder, "member.png"), "wb").write(b"half a shard")
staging_file(".tar")  # an upload's local copy
os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no clean-up runs
"""

_STAGE_AGAIN = """
import os, sys
from unsegcli.io.files import staging_folder
with staging_folder() as tmp:
    print(os.path.basename(tmp))
"""


@pytest.mark.slow
def test_a_kill_9_leaves_staged_data_that_the_next_staging_removes(tmp_path):
    """Staged shards under $TMPDIR survived a kill -9 for ever (`unseg-shard-*`, documented as a limit)."""
    import subprocess
    import sys

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    live = tmp / f"unseg-staging-{os.getpid()}-x"  # this process is alive: its staging is kept
    live.mkdir()
    (tmp / "unseg-staging-notes.txt").write_text("not ours to remove")
    died = subprocess.run([sys.executable, "-c", _STAGE_THEN_DIE], env=env, capture_output=True, timeout=60)
    assert died.returncode == -9, died.stderr
    left = [p for p in tmp.iterdir() if p != live and "notes" not in p.name]
    assert sorted((p.is_dir(), p.suffix) for p in left) == [(False, ".tar"), (True, "")]
    assert all(p.name.startswith("unseg-staging-") for p in left)
    again = subprocess.run([sys.executable, "-c", _STAGE_AGAIN], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp.iterdir()) == sorted([live.name, "unseg-staging-notes.txt"])
    assert again.stdout.startswith("unseg-staging-")  # its own folder, removed when its block ended
