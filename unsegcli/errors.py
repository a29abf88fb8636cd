"""Errors that carry a user-facing message and a hint; only the CLI turns them into exit codes.

A message names a library parameter with ``param("out_dir")``: read from Python it says ``out_dir``; the CLI
renders it as the flag of the command that ran (``--out``), so one message serves both.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# A parameter's name between NUL bytes: a character no path, option value or message text can hold on POSIX.
_PARAM = re.compile("\x00([A-Za-z_][A-Za-z0-9_]*)\x00")


def param(name: str) -> str:
    """A library parameter's name inside an error message (see ``UnsegError.render``)."""
    return f"\x00{name}\x00"


def render_params(text: str, spell: Callable[[str], str] = str) -> str:
    """``text`` with every ``param(name)`` replaced by ``spell(name)`` (the bare name by default)."""
    return _PARAM.sub(lambda m: spell(m.group(1)), text)


class UnsegError(Exception):
    """A failure the user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self._raw = (message, hint)  # with parameter markers, for ``render``
        self.message = render_params(message)
        self.hint = None if hint is None else render_params(hint)

    def render(self, spell: Callable[[str], str] = str) -> str:
        """The message and hint, parameters said by ``spell`` (the CLI passes the running command's flags)."""
        message, hint = self._raw
        return render_params(message if not hint else f"{message}\n  hint: {hint}", spell)

    def __str__(self) -> str:
        return self.render()


class UsageError(UnsegError):
    """Bad arguments or combination of options (exit 2, like click's own usage errors)."""

    exit_code = 2


class WeightsNotFoundError(UnsegError):
    """A weight file is missing; the hint names the command that provides it."""


class CheckpointError(UnsegError):
    """A checkpoint exists but cannot be used (wrong format, missing or unexpected keys)."""


class OutputError(UnsegError):
    """An output cannot be written (disk full, a device error): named, exit 1, nothing half-written left."""


class InputError(UnsegError):
    """One input (image, mask, annotation) cannot be read; runs report it and go on."""
