"""Errors that carry a user-facing message and a hint; only the CLI turns them into exit codes."""

from __future__ import annotations


class UnsegError(Exception):
    """A failure the user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


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
