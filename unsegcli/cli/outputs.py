"""The CLI's words for library parameters, and the library's output checks (``unsegcli.outputs``) said in them."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .. import outputs

# library parameter -> flag, where the flag is not "--" + the name with dashes
_FLAGS = {"out_dir": "--out", "masks": "--from-masks"}


def flag(name: str) -> str:
    """The flag that sets library parameter ``name`` (the ``spell`` the library's checks take)."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def check_outside_inputs(inputs: Iterable[str | None], out: str | os.PathLike, flag_name: str = "--out") -> None:
    outputs.check_outside_inputs(inputs, out, flag_name)


def check_same_settings(paths: Iterable[str], tag: str) -> None:
    outputs.check_same_settings(paths, tag, spell=flag)
