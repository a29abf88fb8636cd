"""Output files: ordinary permissions, replaced only on success."""

from __future__ import annotations

import pytest


def test_outputs_get_ordinary_permissions(tmp_path):
    import os

    from unsegcli.io.files import atomic_write_bytes

    atomic_write_bytes(tmp_path / "a.bin", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~umask


def test_open_output_replaces_only_on_success(tmp_path):
    from unsegcli.io.files import open_output

    target = tmp_path / "out.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), open_output(str(target)) as f:
        f.write(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    with open_output(str(target)) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
