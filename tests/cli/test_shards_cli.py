"""`unseg predict` shards -> shards and `unseg boxes` on mask shards, through the real CLI: byte-for-byte the
masks of the folder path, record-for-record its labels; a corrupt member; resume after a stop mid-shard;
fsspec URLs (memory://, a loopback HTTP server) and brace lists; usage errors before any work."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from ..helpers import save_dino_backbone
from ..io.test_shards import http_root  # noqa: F401 - the loopback HTTP server fixture

fsspec = pytest.importorskip("fsspec", reason="the cloud extra (fsspec) is not installed")


def make_shard(path: Path, files: list[Path], extra: dict[str, bytes] | None = None) -> Path:
    """A WebDataset shard of ``files`` (member = file name) and ``extra`` members, as `tar cf` makes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for f in files:
            tar.add(f, arcname=f.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def members(shard: Path | bytes) -> dict[str, bytes]:
    src = io.BytesIO(shard) if isinstance(shard, bytes) else open(shard, "rb")
    with src, tarfile.open(fileobj=src) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_ckpt) -> Path:
    """8 synth images, their masks by the folder path (tiny checkpoint), and two shards of 4 images each
    (with a .json field per sample, as img2dataset writes)."""
    from typer.testing import CliRunner

    from unsegcli.cli.app import app

    root = tmp_path_factory.mktemp("shards")
    run = CliRunner()
    res = run.invoke(app, ["synth", str(root / "d"), "--n", "8", "--size", "64", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    images = sorted((root / "d" / "images").iterdir())
    for i in range(2):
        part = images[4 * i : 4 * i + 4]
        make_shard(root / "shards" / f"train-00000{i}.tar", part, {f.stem + ".json": b"{}" for f in part})
    args = ["predict", str(root / "d" / "images"), "--out", str(root / "masks"), "--weights", str(tiny_ckpt)]
    res = run.invoke(app, [*args, "-j", "0", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return root


def test_shards_in_shards_out_equal_the_folder_path_byte_for_byte(data, cli, tiny_ckpt, tmp_path, monkeypatch):
    from unsegcli.pipelines import predict as pipeline

    out = tmp_path / "masks-{shard}.tar"
    shards = str(data / "shards" / "train-{000000..000001}.tar")
    res = cli("predict", shards, "--out", out, "--weights", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0, res.output
    assert "shards 2 · written 2" in res.stderr and "images 8 · written 8" in res.stderr
    assert "ignored 8 members with other extensions (.json)" in res.stderr
    written = {**members(tmp_path / "masks-000000.tar"), **members(tmp_path / "masks-000001.tar")}
    assert written == folder_files(data / "masks")
    assert list(members(tmp_path / "masks-000000.tar")) == sorted(folder_files(data / "masks"))[:4]
    first = (tmp_path / "masks-000000.tar").read_bytes()
    with monkeypatch.context() as m:  # resumes: nothing to do, no model loaded
        m.setattr(pipeline, "_build", lambda *a, **k: pytest.fail("a model was loaded for no shard"))
        res = cli("predict", shards, "--out", out, "--weights", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0 and "written 0 · skipped 2" in res.stderr
    res = cli("predict", shards, "--out", out, "--weights", tiny_ckpt, "-j", "2", "--overwrite")
    assert res.exit_code == 0 and (tmp_path / "masks-000000.tar").read_bytes() == first  # the same bytes
    res = cli("predict", shards, "--out", out, "--weights", tiny_ckpt, "--binary")
    assert res.exit_code == 2 and "made with other settings" in res.stderr

    # boxes from the mask shards: record for record the folder path's, with or without an --images shard
    def boxes(*args):
        res = cli("boxes", *args, "--multi", "--format", "jsonl", "--out", "-", "-q")
        assert res.exit_code == 0, res.output
        return res.stdout

    from_folder = boxes(data / "masks")
    assert from_folder.count("\n") == 8
    assert boxes(tmp_path / "masks-000000.tar", tmp_path / "masks-000001.tar") == from_folder
    assert boxes(str(tmp_path / "masks-{000000..000001}.tar")) == from_folder  # a brace list

    # an --images shard: file names, sizes and ids as with the image folder, for the same four images
    first = tmp_path / "first"  # the folder path's masks of the shard's four images, in a folder of their own
    first.mkdir()
    for mask in sorted((data / "masks").iterdir())[:4]:
        (first / mask.name).write_bytes(mask.read_bytes())
    res = cli("boxes", first, "--images", data / "d" / "images", "--multi", "--out", tmp_path / "a.json", "-q")
    assert res.exit_code == 0, res.output
    res = cli("boxes", tmp_path / "masks-000000.tar", "--images", data / "shards" / "train-000000.tar", "--multi",
              "--out", tmp_path / "b.json", "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert b'"file_name":"synth_0_000003.png"' in (tmp_path / "a.json").read_bytes()


def test_instance_masks_keep_their_scores_in_shards(data, cli, tmp_path):
    backbone = save_dino_backbone(tmp_path / "dino.pth", patch_size=16, embed_dim=64, depth=2)
    args = ["--method", "maskcut", "--max-objects", "3", "--fixed-size", "96", "--backbone", backbone, "-j", "0"]
    res = cli("predict", data / "shards" / "train-000001.tar", "--out", tmp_path / "inst.tar", *args)
    assert res.exit_code == 0, res.output
    res = cli("predict", data / "d" / "images", "--out", tmp_path / "inst", *args, "-q")
    assert res.exit_code == 0, res.output
    from_folder = folder_files(tmp_path / "inst")
    got = members(tmp_path / "inst.tar")
    assert got == {k: from_folder[k] for k in sorted(from_folder)[4:]}
    assert all(b"tEXt" in png for png in got.values())  # the settings tag (and the objects' scores)
    part = tmp_path / "inst_part"  # the folder path's masks of the shard's images, as a folder of their own
    part.mkdir()
    for name in sorted(from_folder)[4:]:
        (part / name).write_bytes(from_folder[name])
    shard_boxes = cli("boxes", tmp_path / "inst.tar", "--multi", "--format", "jsonl", "--out", "-", "-q")
    folder_boxes = cli("boxes", part, "--multi", "--format", "jsonl", "--out", "-", "-q")
    assert shard_boxes.exit_code == 0 and folder_boxes.exit_code == 0
    assert shard_boxes.stdout == folder_boxes.stdout and shard_boxes.stdout.count("\n") == 4


def test_refine_mask_shards_against_image_shards(data, cli, tmp_path):
    """Each mask shard pairs with its image shard by {shard}; the refined shards hold the folder path's bytes."""
    from_folder = tmp_path / "refined"
    res = cli("refine", data / "masks", "--images", data / "d" / "images", "--out", from_folder, "-j", "0", "-q")
    assert res.exit_code == 0, res.output
    masks = tmp_path / "m"
    for i in range(2):  # mask shards as predict writes them from the image shards
        make_shard(masks / f"masks-00000{i}.tar", sorted((data / "masks").iterdir())[4 * i : 4 * i + 4])
    image_shards = str(data / "shards" / "train-{shard}.tar")
    res = cli("refine", str(masks / "masks-{000000..000001}.tar"), "--images", image_shards,
              "--out", str(tmp_path / "r-{shard}.tar"), "-j", "0")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "shards 2 · written 2" in res.stderr and "masks 8 · written 8" in res.stderr
    got = {**members(tmp_path / "r-000000.tar"), **members(tmp_path / "r-000001.tar")}
    assert got == folder_files(from_folder)
    res = cli("refine", masks / "masks-000000.tar", "--images", data / "shards" / "train-000001.tar",
              "--out", tmp_path / "wrong", "-j", "0")  # fmt: skip
    assert res.exit_code == 1 and f"{masks / 'masks-000000.tar'}:synth_0_000000.png: no image" in res.stderr


def test_a_corrupt_member_is_named_and_the_rest_of_the_shard_written(data, cli, tiny_ckpt, tmp_path):
    images = sorted((data / "d" / "images").iterdir())
    shard = make_shard(tmp_path / "in" / "bad-7.tar", images[:2], {"broken.jpg": b"not a jpeg at all"})
    res = cli("predict", shard, "--out", tmp_path / "out", "--weights", tiny_ckpt, "-j", "0")
    assert res.exit_code == 1
    assert f"{shard}:broken.jpg: not a readable image" in res.stderr
    assert "written 2 · failed 1" in res.stderr
    expected = folder_files(data / "masks")
    assert members(tmp_path / "out" / "bad-7.tar") == {k: expected[k] for k in sorted(expected)[:2]}


def test_a_truncated_shard_gets_no_output_and_is_retried(data, cli, tiny_ckpt, tmp_path):
    whole = (data / "shards" / "train-000000.tar").read_bytes()
    (tmp_path / "t-1.tar").write_bytes(whole[: len(whole) // 2])
    res = cli("predict", tmp_path / "t-1.tar", "--out", tmp_path / "o-{shard}.tar", "--weights", tiny_ckpt, "-j", "0")
    assert res.exit_code == 1 and "truncated or not a tar shard" in res.stderr and "a re-run retries it" in res.stderr
    assert not (tmp_path / "o-1.tar").exists()


def test_resume_after_a_stop_mid_shard(data, cli, tiny_ckpt, tmp_path, monkeypatch):
    import unsegcli.io.shards as io_shards
    from unsegcli.io.files import _host_tag

    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".unseg-tmp-{2**22 + 12345}-{_host_tag()}-abcdef"  # what a kill -9 leaves (no such PID)
    stale.write_bytes(b"half a shard")
    real, calls = io_shards.pack_folder, []

    def stops_in_the_second(folder, stream, settings=None):
        calls.append(folder)
        if len(calls) == 2:
            stream.write(b"half a shard")
            raise KeyboardInterrupt  # as SIGINT / SIGTERM stop a run
        return real(folder, stream, settings)

    monkeypatch.setattr(io_shards, "pack_folder", stops_in_the_second)
    shards = str(data / "shards" / "train-{000000..000001}.tar")
    res = cli("predict", shards, "--out", out, "--weights", tiny_ckpt, "-j", "0")
    assert res.exit_code == 130 and len(calls) == 2  # stopped while packing the second shard
    assert sorted(os.listdir(out)) == ["train-000000.tar"]  # the stale temp removed, no partial shard
    monkeypatch.setattr(io_shards, "pack_folder", real)
    res = cli("predict", shards, "--out", out, "--weights", tiny_ckpt, "-j", "0")
    assert res.exit_code == 0 and "written 1 · skipped 1" in res.stderr
    written = {**members(out / "train-000000.tar"), **members(out / "train-000001.tar")}
    assert written == folder_files(data / "masks")


def test_urls_memory_in_and_out_and_http_in(data, cli, tiny_ckpt, tmp_path, http_root):  # noqa: F811
    fs = fsspec.filesystem("memory")
    for shard in (data / "shards").iterdir():
        fs.pipe(f"/h1cli/in/{shard.name}", shard.read_bytes())
    for image in (data / "d" / "images").iterdir():
        fs.pipe(f"/h1cli/imgs/{image.name}", image.read_bytes())
    try:
        res = cli("predict", "memory://h1cli/in/train-{000000..000001}.tar", "--out", "memory://h1cli/out/m-{shard}.tar",
                  "--weights", tiny_ckpt, "-j", "0")  # fmt: skip
        assert res.exit_code == 0, res.output
        got = {**members(fs.cat("/h1cli/out/m-000000.tar")), **members(fs.cat("/h1cli/out/m-000001.tar"))}
        assert got == folder_files(data / "masks")
        res = cli("boxes", "memory://h1cli/out/m-000000.tar", "--format", "jsonl", "--out", "-", "-q")
        assert res.exit_code == 0 and res.stdout.count("\n") == 4
        for mask in (data / "masks").iterdir():  # a folder of masks at a URL: named as the local folder's
            fs.pipe(f"/h1cli/masks/{mask.name}", mask.read_bytes())
        res = cli("boxes", "memory://h1cli/masks", "--multi", "--format", "jsonl", "--out", "-", "-q")
        local = cli("boxes", data / "masks", "--multi", "--format", "jsonl", "--out", "-", "-q")
        assert res.exit_code == 0 and res.stdout == local.stdout and local.stdout.count("\n") == 8
        res = cli("predict", "memory://h1cli/imgs/", "--out", tmp_path / "from_url", "--weights", tiny_ckpt, "-j", "0")
        assert res.exit_code == 0, res.output
        assert folder_files(tmp_path / "from_url") == folder_files(data / "masks")
    finally:
        fs.rm("/h1cli", recursive=True)

    pytest.importorskip("aiohttp", reason="fsspec's http backend needs aiohttp (the cloud extra)")
    root, base = http_root
    for shard in (data / "shards").iterdir():
        (root / shard.name).write_bytes(shard.read_bytes())
    res = cli(
        "predict", f"{base}/train-{{000000..000001}}.tar", "--out", tmp_path / "h", "--weights", tiny_ckpt, "-j", "0"
    )
    assert res.exit_code == 0, res.output
    got = {**members(tmp_path / "h" / "train-000000.tar"), **members(tmp_path / "h" / "train-000001.tar")}
    assert got == folder_files(data / "masks")


@pytest.mark.parametrize(
    "args, said",
    [
        (["{shards}/train-000000.tar", "{images}"], "either WebDataset shards (.tar) or images"),
        (["{shards}/train-{{000000..000001}}.tar", "--out", "{tmp}/one.tar"], "is one shard for 2 input shards"),
        (["{shards}/train-000000.tar", "{tmp}/x/train-000000.tar", "--out", "{tmp}/o-{{shard}}.tar"], "would both"),
        (["{shards}/train-000009.tar"], "input not found"),
        (["nope://x/train-000000.tar"], "nope"),
    ],
)
def test_usage_errors_before_any_work(data, cli, tiny_ckpt, tmp_path, args, said):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "train-000000.tar").write_bytes((data / "shards" / "train-000000.tar").read_bytes())
    fill = {"shards": data / "shards", "images": data / "d" / "images", "tmp": tmp_path}
    args = [a.format(**fill) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    res = cli("predict", *args, "--weights", tiny_ckpt)
    assert res.exit_code == 2, res.output
    assert said in res.stderr
    assert not (tmp_path / "out").exists()
