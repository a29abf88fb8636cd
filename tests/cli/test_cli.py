"""Conventions every command keeps: examples in --help, defaults shown, choices validated by the parser
(a usage error, exit 2), flags shown as flags, one error line and an exit code for library errors."""

from __future__ import annotations

import typer.main

from unsegcli.cli.app import app


def _command_paths() -> list[list[str]]:
    group = typer.main.get_command(app)
    paths: list[list[str]] = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        paths += [[name, s] for s in subs] if subs else [[name]]
    return paths


def test_commands_are_listed_in_workflow_order():
    names = list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert names[0] == "predict" and names.index("boxes") < names.index("corloc") < names.index("train")
    assert {"eval", "synth", "merge", "weights"} <= set(names)


def test_every_command_help_ends_with_examples(cli):
    paths = _command_paths()
    assert ["predict"] in paths and ["weights", "info"] in paths
    for path in paths:
        res = cli(*path, "--help")
        assert res.exit_code == 0, path
        assert "Examples" in res.output and "unseg " in res.output.split("Examples")[-1], path


def test_help_shows_defaults_choices_and_flags():
    from typer.testing import CliRunner

    out = CliRunner().invoke(app, ["predict", "--help"], env={"COLUMNS": "300"}).output  # wide: no wrapping
    assert "[default: 0.5]" in out  # --threshold: Typer shows the default
    assert "448 for MOVE" in out  # --size: a default decided by the checkpoint, stated in words
    assert "<fp32|bf16|fp16>" in out  # --precision: the choices
    line = next(ln for ln in out.splitlines() if "--binary" in ln)
    assert "<bool>" not in line  # a flag reads as a flag


def test_choices_are_usage_errors(cli, tmp_path):
    res = cli("corloc", "voc07", "--root", tmp_path, "--pred", tmp_path, "--connectivity", "6")
    assert res.exit_code == 2 and "--connectivity" in res.stderr
    res = cli("predict", tmp_path, "-o", tmp_path / "m", "--precision", "fp64")
    assert res.exit_code == 2 and "--precision" in res.stderr
    res = cli("predict", tmp_path, "-o", tmp_path / "m", "--shard", "3/3")
    assert res.exit_code == 2 and "--shard" in res.stderr


def test_library_errors_are_one_line_with_their_exit_code(cli, tmp_path):
    res = cli("weights", "info", tmp_path / "nothing.pt")  # a path that is not there: a usage error
    assert res.exit_code == 2 and "weights file not found" in res.stderr and "Traceback" not in res.stderr
    res = cli("--debug", "weights", "info", tmp_path / "nothing.pt")
    assert res.exit_code == 2 and "Traceback" in res.stderr  # --debug shows where it came from
    (tmp_path / "junk.pt").write_bytes(b"junk")  # there but unusable: exit 1
    res = cli("weights", "info", tmp_path / "junk.pt")
    assert res.exit_code == 1 and "junk.pt" in res.stderr and "Traceback" not in res.stderr


def test_a_flag_several_methods_declare_differently_shows_each_help_after_its_methods():
    """`predict --help` showed FOUND's --backbone text for every method (the first declaration won)."""
    from dataclasses import dataclass

    import typer

    from unsegcli.cli.options import declared_flags
    from unsegcli.config import option

    @dataclass(frozen=True)
    class A:
        side: int = option(8, "Side of the square.")
        k: int = option(1, "A: seeds.")

    @dataclass(frozen=True)
    class B:
        side: int = option(8, "Side of the square.")
        k: int = option(2, "B: seeds per object.")

    @dataclass(frozen=True)
    class C:
        side: int = option(4, "C: the square rounded down.")
        k: int = option(2, "B: seeds per object.")

    toy = typer.Typer()

    @toy.command()
    @declared_flags({"a": A, "b": B, "c": C}, panel="toy")
    def run(**options: object) -> None:
        pass

    shown = {p.name: p.help for p in typer.main.get_command(toy).params}
    assert shown["side"] == "a, b: Side of the square. C: the square rounded down."
    assert shown["k"] == "A: seeds. b, c: B: seeds per object."  # a text naming other methods gets their labels
