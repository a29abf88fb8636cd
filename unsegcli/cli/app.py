"""`unseg`: the Typer app. Library errors become one red line and an exit code (0 ok, 1 some
inputs failed or a handled error, 2 usage); --debug shows tracebacks instead."""
from __future__ import annotations

import logging
import sys

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import UnsegError
from .console import console, report_failure

_state = {"debug": False}


class _Group(TyperGroup):
    """Maps UnsegError raised anywhere below to its message and exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UnsegError as e:
            if _state["debug"]:
                console.print_exception()
            report_failure(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            report_failure("interrupted; finished outputs are complete, re-run the same command to resume")
            raise typer.Exit(130) from None

    def list_commands(self, ctx):
        _register()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        _register()
        return super().get_command(ctx, name)


app = typer.Typer(
    name="unseg", cls=_Group, no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
    pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]},
    help="Unsupervised mask and box pseudo-labelling with MOVE (NeurIPS 2022).",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"unseg {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and debug logs."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


_registered = False


def _register() -> None:
    """Import the command modules (each adds its commands to `app`)."""
    global _registered
    if not _registered:
        _registered = True
        # workflow order, which is the order `unseg --help` lists them in
        from . import predict, boxes, evaluate, train, merge, weights  # noqa: F401, I001


def main() -> None:
    _register()
    app(prog_name="unseg")
