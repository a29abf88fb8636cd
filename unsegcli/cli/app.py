"""`unseg`: the Typer app. Command modules export plain functions (and Typer sub-apps) and never import
this module; it imports and registers them, in workflow order, which is the order `unseg --help` lists.

Library errors become one red line and an exit code (0 ok, 1 some inputs failed or a handled error,
2 usage, 130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP), all in ``_ErrorMappingGroup.invoke``; --debug
shows tracebacks instead. SIGTERM and SIGHUP (Slurm time-outs, preemption, a dropped ssh session) raise a
KeyboardInterrupt subclass, so they unwind exactly like Ctrl-C: every ``finally`` and ``open_output``
cleanup runs, temps are deleted, worker pools are shut down.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import UnsegError
from . import bench, boxes, evaluate, merge, predict, refine, show, synth, train, weights
from .console import console, report_failure
from .options import UnsegCommand


class _ErrorMappingGroup(TyperGroup):
    """Maps UnsegError raised anywhere below to its message and exit code."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (Typer's vendored click)
        try:
            return super().invoke(ctx)
        except UnsegError as e:
            if ctx.params.get("debug"):
                console.print_exception()
            report_failure(e.render(getattr(e, "spell", str)))  # parameters as the command's flags (UnsegCommand)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            if ctx.params.get("debug"):
                console.print_exception()
            raise typer.Exit(_interrupted(e)) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the main thread is, so that cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_MAIN_PID = os.getpid()


def _raise_terminated(signum: int, frame: object) -> None:
    if os.getpid() != _MAIN_PID:  # a forked worker (pool, DataLoader): die as the signal says, quietly;
        signal.signal(signum, signal.SIG_DFL)  # pools stop their workers with SIGTERM
        os.kill(os.getpid(), signum)
        return
    # a second signal while cleaning up must not interrupt the cleanup: ignore it from now on
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


def _install_signal_handlers() -> None:
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:  # leave a parent's (e.g. nohup's SIG_IGN) choice alone
            signal.signal(sig, _raise_terminated)


def _interrupted(e: BaseException) -> int:
    """Report an interruption; the exit code is 128 + the signal number, as a shell reports it."""
    signum = e.signum if isinstance(e, Terminated) else signal.SIGINT
    name = signal.Signals(signum).name
    report_failure(
        f"interrupted by {name}; finished outputs are complete, temporary files were removed, "
        "re-run the same command to resume"
    )
    return 128 + int(signum)


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
app.command(epilog=predict.EXAMPLES, cls=UnsegCommand)(predict.predict)
app.command(epilog=refine.EXAMPLES, cls=UnsegCommand)(refine.refine)
app.command(epilog=boxes.EXAMPLES, cls=UnsegCommand)(boxes.boxes)
app.command(epilog=evaluate.CORLOC_EXAMPLES, cls=UnsegCommand)(evaluate.corloc)
app.add_typer(evaluate.eval_app, name="eval")
app.command(epilog=show.EXAMPLES, cls=UnsegCommand)(show.show)
app.command(epilog=bench.EXAMPLES, cls=UnsegCommand)(bench.bench)
app.command(epilog=train.EXAMPLES, cls=UnsegCommand)(train.train)
app.command(epilog=synth.EXAMPLES, cls=UnsegCommand)(synth.synth)
app.command(epilog=merge.EXAMPLES, cls=UnsegCommand)(merge.merge)
app.add_typer(weights.weights_app, name="weights")


def main() -> None:
    # OpenCV prints native "[ WARN:0@0.08] ... PNG input buffer is incomplete" lines for files we already report
    # as failed inputs; keep its errors only (a user's own setting wins). Set before any cv2 import.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    _install_signal_handlers()
    try:
        app(prog_name="unseg")
    except KeyboardInterrupt as e:  # outside a command (while parsing or importing)
        sys.exit(_interrupted(e))
    except SystemExit as e:
        if "TORCHELASTIC_RUN_ID" in os.environ:
            _exit_without_finalising(e.code)
        raise


def _exit_without_finalising(code: object) -> None:
    """A torchrun rank exits without interpreter finalisation. Its work is done (outputs written, process
    group destroyed), but Gloo's worker threads can still hold tensors whose release then needs the GIL of
    an interpreter being torn down, and the rank dies with SIGABRT ("terminate called without an active
    exception"; pytorch/pytorch#179291), failing a run that succeeded."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)
