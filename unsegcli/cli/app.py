"""`unseg`: the Typer app. Command modules export plain functions (and Typer sub-apps) and never import
this module; it imports and registers them, in workflow order, which is the order `unseg --help` lists.

Library errors become one red line and an exit code (0 ok, 1 some inputs failed or a handled error,
2 usage, 130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP, 141 quietly when stdout's reader went away), all
in ``_ErrorMappingGroup.invoke``; --debug shows tracebacks instead. SIGTERM and SIGHUP (Slurm time-outs,
preemption, a dropped ssh session) raise a KeyboardInterrupt subclass, so they unwind exactly like Ctrl-C:
every ``finally`` and ``open_output`` cleanup runs, temps are deleted, worker processes are stopped (they
never see these signals themselves: ``parallel``).
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
from ..io.files import remove_own_temps
from ..parallel import stop_workers
from . import bench, boxes, evaluate, merge, predict, refine, show, synth, train, weights
from .console import console, report_failure
from .options import UnsegCommand


class _ErrorMappingGroup(TyperGroup):
    """Maps UnsegError raised anywhere below to its message and exit code, a signal to 128 + its number,
    and a closed stdout to a quiet exit; stops any worker process a command that ends early leaves."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as e:  # Typer would exit 130 without a word, whatever the signal
            raise typer.Exit(_interrupted(e)) from None

    def invoke(self, ctx: Any) -> Any:  # a click Context (Typer's vendored click)
        try:
            return super().invoke(ctx)
        except BaseException as e:
            stop_workers()  # a parallel_map suspended by the exception is only closed much later
            # a signal between a temp's creation and the ``try`` that deletes it on failure leaves it behind;
            # once the command has unwound, every temp of this process is such a leftover
            remove_own_temps()
            code = _exit_code(e)
            if code is None:
                raise
            if ctx.params.get("debug"):
                console.print_exception()
            raise typer.Exit(code) from None


def _exit_code(e: BaseException) -> int | None:
    """Report ``e`` and return the exit code it stands for; None for exceptions that are not ours to map."""
    interruption = _interruption(e)
    if interruption is not None:
        return _interrupted(interruption)
    if isinstance(e, BrokenPipeError):
        return _output_closed()
    if isinstance(e, UnsegError):
        report_failure(e.render(getattr(e, "spell", str)))  # parameters as the command's flags (UnsegCommand)
        return e.exit_code
    return None


def _interruption(e: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, or ``Terminated``) that ``e`` is or that was being handled when ``e``
    was raised: whatever fails while a run unwinds after a signal (torch reporting its decode workers gone,
    a write cut short) is part of the stop, and the run exits as stopped by the signal."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__context__
    return None


# exit status of a reader-gone stop: what a shell reports for a Unix tool killed by SIGPIPE (128 + 13)
EXIT_OUTPUT_CLOSED = 128 + signal.SIGPIPE


def _output_closed() -> int:
    """The reader of our output went away (``unseg boxes ... --out - | head``): stop quietly, as Unix tools
    do. Stdout is pointed at /dev/null so that the interpreter's last flush of what is still buffered does
    not fail again (the recipe of the Python docs, "Note on SIGPIPE" in the signal module)."""
    _detach_stdout()
    return EXIT_OUTPUT_CLOSED


def _detach_stdout() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a real file (a test runner's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _flush_stdout(code: str | int | None) -> str | int | None:
    """Flush stdout while a failure can still be reported and mapped: the interpreter's own last flush
    prints "Exception ignored ..." and exits 120. Returns the exit code to use."""
    try:
        sys.stdout.flush()
    except OSError as e:
        _detach_stdout()
        if code not in (0, None):  # the command failed already, most likely on this very stdout
            return code
        if isinstance(e, BrokenPipeError):
            return EXIT_OUTPUT_CLOSED
        report_failure(f"stdout: cannot write ({e.strerror or e})")
        return 1
    return code


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


def _uninstall_signal_handlers() -> None:
    """The command is over, its outputs complete: a signal now ends the process as it ends any program.
    Raised instead into the interpreter's own clean-up (atexit handlers, torch's finalisers), it would
    print a traceback there, or stop a clean-up half way and leave the exit waiting."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) != signal.SIG_IGN:  # nohup's choice, or a second signal ignored, stays
            signal.signal(sig, signal.SIG_DFL)


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
    code: str | int | None
    try:
        app(prog_name="unseg")
        code = 0
    except KeyboardInterrupt as e:  # outside a command (while parsing or importing)
        code = _interrupted(e)
    except SystemExit as e:
        code = e.code
    _uninstall_signal_handlers()
    code = _flush_stdout(code)
    if "TORCHELASTIC_RUN_ID" in os.environ:
        _exit_without_finalising(code)
    sys.exit(code)


def _exit_without_finalising(code: object) -> None:
    """A torchrun rank exits without interpreter finalisation. Its work is done (outputs written, process
    group destroyed), but Gloo's worker threads can still hold tensors whose release then needs the GIL of
    an interpreter being torn down, and the rank dies with SIGABRT ("terminate called without an active
    exception"; pytorch/pytorch#179291), failing a run that succeeded."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)
