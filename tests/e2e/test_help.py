"""`unseg --help` in a fresh interpreter imports no torch (it stays fast), nor the optional fsspec."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("command", [[], ["predict"], ["boxes"]])
def test_help_does_not_import_torch(command):
    code = f"import sys; from unsegcli.cli.app import main; sys.argv = ['unseg', *{command!r}, '--help']\n"
    code += "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n"
    code += "assert 'fsspec' not in sys.modules, 'fsspec imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
def test_help_and_the_ray_module_import_neither_ray_nor_pyarrow():
    """The ray extra stays optional: `unseg --help`, `unseg merge --help` and importing unsegcli.ray (its
    callables are plain classes) load neither Ray nor pyarrow."""
    code = "import sys; from unsegcli.cli.app import main\n"
    code += "for argv in (['unseg', '--help'], ['unseg', 'merge', '--help']):\n    sys.argv = argv\n"
    code += "    try:\n        main()\n    except SystemExit:\n        pass\n"
    code += "import unsegcli, unsegcli.ray\n"
    code += "assert not {'ray', 'pyarrow'} & set(sys.modules), {'ray', 'pyarrow'} & set(sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
