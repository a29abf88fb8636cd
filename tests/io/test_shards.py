"""WebDataset shards and fsspec URLs at the io layer: brace lists, sample keys, staging a shard's members
(unsafe names, other fields, a truncated shard), packing a folder into the same bytes every time, atomic
shard writes, and reading through ``memory://`` and a loopback HTTP server."""

from __future__ import annotations

import functools
import http.server
import io
import os
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unsegcli.errors import InputError, UsageError
from unsegcli.io.images import IMAGE_EXTENSIONS, decode_image, scan_inputs
from unsegcli.io.remote import expand_braces, expand_inputs, url_name
from unsegcli.io.shards import (
    extract_shard,
    is_shard,
    pack_folder,
    sample_key,
    shard_number,
    shard_tag,
    staged_inputs,
    write_shard,
)

from ..helpers import write_images

fsspec = pytest.importorskip("fsspec", reason="the cloud extra (fsspec) is not installed")


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def png(seed: int, h: int = 8, w: int = 6) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_braces_expand_as_a_shell_would():
    assert expand_braces("s/train-{000008..000011}.tar") == [f"s/train-{i:06d}.tar" for i in range(8, 12)]
    assert expand_braces("{a,b}/x-{1..2}.tar") == ["a/x-1.tar", "a/x-2.tar", "b/x-1.tar", "b/x-2.tar"]
    assert expand_braces("s3://b/p-{3..1}.tar") == ["s3://b/p-3.tar", "s3://b/p-2.tar", "s3://b/p-1.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"] and expand_braces("{single}.tar") == ["{single}.tar"]
    with pytest.raises(UsageError, match="names more than"):
        expand_braces("{0..99999999}.tar")


def test_a_file_whose_name_holds_braces_is_not_expanded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("a{1,2}.jpg").write_bytes(b"x")
    assert expand_inputs(["a{1,2}.jpg", "b{1,2}.jpg", "-"]) == ["a{1,2}.jpg", "b1.jpg", "b2.jpg", "-"]


def test_webdataset_names():
    assert sample_key("dir/000123.seg.png") == "dir/000123" and sample_key("a.b.c.jpg") == "a"
    assert shard_number("s3://b/train-000123.tar") == "000123" and shard_number("x/shard.tar") == "shard"
    assert is_shard("A.TAR") and not is_shard("a.tar.png")
    assert url_name("s3://bucket/a/b.jpg") == "bucket/a/b.jpg"
    assert url_name("s3://bucket/a/b.jpg", "s3://bucket/a/") == "b.jpg" and url_name("s3://x/b.jpg", "s3://y") is None


def test_extract_stages_images_names_unsafe_members_and_counts_other_fields(tmp_path):
    shard = tmp_path / "s.tar"
    shard.write_bytes(
        tar_bytes({"k1.jpg": png(1), "k1.json": b"{}", "sub/k2.PNG": png(2), "../evil.png": png(3), "k3.cls": b"1"})
    )
    got = extract_shard(str(shard), tmp_path / "st", IMAGE_EXTENSIONS)
    assert got.staged == 2 and got.damaged is None
    assert got.ignored == {".json": 1, ".cls": 1}
    assert len(got.problems) == 1 and "'../evil.png'" in got.problems[0] and str(shard) in got.problems[0]
    assert (tmp_path / "st" / "k1.jpg").read_bytes() == png(1) and (tmp_path / "st" / "sub" / "k2.PNG").exists()
    assert not (tmp_path / "evil.png").exists()


def test_a_truncated_shard_keeps_the_members_before_the_damage(tmp_path):
    data = tar_bytes({"a.png": png(1), "b.png": png(2, 64, 64)})
    shard = tmp_path / "cut.tar"
    shard.write_bytes(data[: 1536 + 600])  # the first member whole, the second cut inside its data
    got = extract_shard(str(shard), tmp_path / "st", IMAGE_EXTENSIONS)
    assert got.damaged is not None and "truncated" in got.damaged and str(shard) in got.damaged
    assert (tmp_path / "st" / "a.png").read_bytes() == png(1)
    with pytest.raises(InputError, match="no such shard"):
        extract_shard(str(tmp_path / "none.tar"), tmp_path / "st2", IMAGE_EXTENSIONS)


def test_packing_gives_the_same_bytes_whatever_the_files_times_and_modes(tmp_path):
    for name, mode, when in (("a", 0o600, 1_000_000), ("b", 0o664, 2_000_000)):
        folder = tmp_path / name
        (folder / "z").mkdir(parents=True)
        for rel, data in (("z/2.png", b"two"), ("1.png", b"one"), (".hidden", b"h")):
            (folder / rel).write_bytes(data)
            os.chmod(folder / rel, mode)
            os.utime(folder / rel, (when, when))
    a, b = io.BytesIO(), io.BytesIO()
    assert pack_folder(tmp_path / "a", a) == 2 and pack_folder(tmp_path / "b", b) == 2
    assert a.getvalue() == b.getvalue()
    with tarfile.open(fileobj=io.BytesIO(a.getvalue())) as tar:
        assert [(m.name, m.mtime, m.uid, m.mode) for m in tar] == [("1.png", 0, 0, 0o644), ("z/2.png", 0, 0, 0o644)]


def test_a_shard_write_that_stops_leaves_the_old_shard_and_no_temp(tmp_path, monkeypatch):
    import unsegcli.io.shards as shards

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.png").write_bytes(b"a")
    target = tmp_path / "out" / "masks.tar"
    target.parent.mkdir()
    target.write_bytes(b"old")

    def stops(folder, stream, settings=None):
        stream.write(b"half a shard")
        raise KeyboardInterrupt

    monkeypatch.setattr(shards, "pack_folder", stops)
    with pytest.raises(KeyboardInterrupt):
        write_shard(tmp_path / "m", str(target))
    assert target.read_bytes() == b"old" and os.listdir(target.parent) == ["masks.tar"]


def test_shards_and_folders_through_memory_urls(tmp_path):
    fs = fsspec.filesystem("memory")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "k.png").write_bytes(png(5))
    assert write_shard(folder, "memory://h1test/out/masks-0.tar") == 1
    local = io.BytesIO()
    pack_folder(folder, local)
    assert fs.cat("/h1test/out/masks-0.tar") == local.getvalue()
    got = extract_shard("memory://h1test/out/masks-0.tar", tmp_path / "back", (".png",))
    assert got.staged == 1 and (tmp_path / "back" / "k.png").read_bytes() == png(5)
    assert shard_tag("memory://h1test/out/masks-0.tar") is None  # an untagged PNG

    images = write_images(tmp_path / "imgs", [(8, 6), (5, 9)])
    for p in images:
        fs.pipe(f"/h1test/imgs/sub/{p.name}", p.read_bytes())
    fs.pipe("/h1test/imgs/notes.txt", b"x")
    fs.pipe("/h1test/imgs/.hidden.png", b"x")
    listing = scan_inputs(["memory://h1test/imgs"])
    assert [it.rel for it in listing.items] == [f"sub/{p.name}" for p in images]
    assert listing.ignored == {".txt": 1}
    for it, p in zip(listing.items, images, strict=True):
        assert np.array_equal(decode_image(it.path), decode_image(str(p)))
    one = scan_inputs([f"memory://h1test/imgs/sub/{images[0].name}"]).items
    assert [it.rel for it in one] == [f"h1test/imgs/sub/{images[0].name}"]
    with pytest.raises(UsageError, match="input not found"):
        scan_inputs(["memory://h1test/nothing"])
    fs.rm("/h1test", recursive=True)


@pytest.fixture
def http_root(tmp_path):
    """A read-only loopback HTTP server (the stdlib's) serving ``tmp_path/www``: (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_shards_and_images_over_http(tmp_path, http_root):
    pytest.importorskip("aiohttp", reason="fsspec's http backend needs aiohttp (the cloud extra)")
    root, base = http_root
    (root / "train-000000.tar").write_bytes(tar_bytes({"a.png": png(1), "a.txt": b"t"}))
    (root / "train-000001.tar").write_bytes(tar_bytes({"b.png": png(2)}))
    urls = expand_inputs([f"{base}/train-{{000000..000001}}.tar"])
    with staged_inputs(urls, (".png",)) as staged:
        assert len(staged.specs) == 2 and staged.ignored == {".txt": 1} and not staged.problems
        assert (Path(staged.specs[0]) / "a.png").read_bytes() == png(1)
        assert staged.name(os.path.join(staged.specs[1], "b.png") + ": bad") == f"{urls[1]}:b.png: bad"
    assert not Path(staged.specs[0]).exists()  # the staging folder goes with the block
    (root / "img.png").write_bytes(png(7))
    assert decode_image(f"{base}/img.png").shape == (8, 6, 3)
    with pytest.raises(InputError, match="img_missing.png"):
        decode_image(f"{base}/img_missing.png")
    with pytest.raises(InputError, match="none.tar: no such file"):
        extract_shard(f"{base}/none.tar", tmp_path / "x", (".png",))
