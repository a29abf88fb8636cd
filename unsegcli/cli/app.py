"""`unseg`: the Typer app. Command modules export plain functions (and Typer sub-apps) and never import
this module; it imports and registers them, in workflow order, which is the order `unseg --help` lists.

Library errors become one red line and an exit code (0 ok, 1 some inputs failed or a handled error,
2 usage, 130 interrupted), all in ``_ErrorMappingGroup.invoke``; --debug shows tracebacks instead.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import UnsegError
from . import boxes, evaluate, merge, predict, refine, show, synth, train, weights
from .console import console, report_failure


class _ErrorMappingGroup(TyperGroup):
    """Maps UnsegError raised anywhere below to its message and exit code."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (Typer's vendored click)
        try:
            return super().invoke(ctx)
        except UnsegError as e:
            if ctx.params.get("debug"):
                console.print_exception()
            report_failure(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            report_failure("interrupted; finished outputs are complete, re-run the same command to resume")
            raise typer.Exit(130) from None


app = typer.Typer(
    name="unseg",
    cls=_ErrorMappingGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Unsupervised mask and box pseudo-labelling with MOVE (NeurIPS 2022).",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"unseg {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", metavar="", help="Show full tracebacks and debug logs.")] = False,
    version: Annotated[
        bool, typer.Option("--version", metavar="", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# workflow order: make masks, refine them, turn them into boxes, score and look at them, train, then the helpers
app.command(epilog=predict.EXAMPLES)(predict.predict)
app.command(epilog=refine.EXAMPLES)(refine.refine)
app.command(epilog=boxes.EXAMPLES)(boxes.boxes)
app.command(epilog=evaluate.CORLOC_EXAMPLES)(evaluate.corloc)
app.add_typer(evaluate.eval_app, name="eval")
app.command(epilog=show.EXAMPLES)(show.show)
app.command(epilog=train.EXAMPLES)(train.train)
app.command(epilog=synth.EXAMPLES)(synth.synth)
app.command(epilog=merge.EXAMPLES)(merge.merge)
app.add_typer(weights.weights_app, name="weights")


def main() -> None:
    app(prog_name="unseg")
