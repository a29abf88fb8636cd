"""`unseg --help` in a fresh interpreter imports no torch (it stays fast)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_help_does_not_import_torch():
    code = "import sys; from unsegcli.cli.app import main; sys.argv = ['unseg', '--help']\n"
    code += "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
