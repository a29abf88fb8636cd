"""The docs run as written: every ```bash and ```python block of README.md and docs/*.md, in order, one
scratch folder per file, on generated data and the embedded demo checkpoint. `unseg ...` lines run in-process
(one torch import for all); other shell lines through bash. A block marked `<!-- not run: REASON -->` on the
line before it (downloaded weights, a GPU, a cluster, another tool) is listed as skipped with its reason.
Also: the generated references are fresh, and the Python API's doctests pass."""

from __future__ import annotations

import doctest
import importlib.util
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
# the walk-throughs' shared start: run once per session, its outputs copied into each file's folder
PRELUDE = ("unseg synth data --n 8 --size 64 --seed 0 --voc", "unseg predict data/images --out masks")


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the reason it is not run

    @property
    def id(self) -> str:
        return f"{self.doc.name}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    out: list[Block] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w+)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        mark = MARK.search(prev)
        if fence.group(1) in ("bash", "python"):
            code = "\n".join(lines[i + 1 : end])
            out.append(Block(doc, i + 1, fence.group(1), code, mark.group(1) if mark else None))
        i = end + 1
    return out


def commands(code: str) -> list[str]:
    """Shell lines of a bash block, continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(shlex.join(words) if words[0] == "unseg" else line)
    return out


def run_unseg(line: str, cwd: Path) -> None:
    from unsegcli.cli.app import app

    result = CliRunner().invoke(app, shlex.split(line)[1:], catch_exceptions=False)
    assert result.exit_code == 0, f"{line!r} in {cwd} exited {result.exit_code}:\n{result.output}"


def run_block(block: Block, cwd: Path, done: set[str]) -> None:
    if block.lang == "python":
        exec(compile(block.code, block.id, "exec"), {"__name__": "__docs__"})
        return
    for line in commands(block.code):
        if line in done:  # the shared start, already run into this folder
            continue
        if line.startswith("unseg "):
            run_unseg(line, cwd)
        else:
            proc = subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, f"{line!r} exited {proc.returncode}:\n{proc.stderr}"


@pytest.fixture(scope="session")
def prelude(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("docs-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for line in PRELUDE:
            run_unseg(line, folder)
    return folder


RUNNABLE = [d for d in DOCS if any(b.skip is None for b in blocks(d))]
SKIPPED = [b for d in DOCS for b in blocks(d) if b.skip]


@pytest.mark.parametrize("doc", RUNNABLE, ids=[d.name for d in RUNNABLE])
def test_doc_runs_as_written(doc, prelude, tmp_path, monkeypatch):
    shutil.copytree(prelude, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("UNSEG_WEIGHTS", raising=False)
    for block in blocks(doc):
        if block.skip is None:
            run_block(block, tmp_path, set(PRELUDE))


@pytest.mark.parametrize("block", SKIPPED, ids=[b.id for b in SKIPPED])
def test_blocks_not_run(block):
    """The list of blocks the docs test does not run, each with its reason (shown by `pytest -rs`)."""
    pytest.skip(f"not run: {block.skip}")


def test_walkthroughs_start_from_the_shared_data():
    """A guide whose walk-through makes the shared `data/` must make it as the prelude does, or the prelude would
    hide the difference (generated data in another folder is the guide's own)."""
    for doc in RUNNABLE:
        lines = [c for b in blocks(doc) if b.skip is None and b.lang == "bash" for c in commands(b.code)]
        synth = [c for c in lines if c.startswith("unseg synth data ")]
        assert all(c == PRELUDE[0] for c in synth), f"{doc.name}: {synth}"


def test_generated_references_are_fresh():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "scripts" / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    from unsegcli.cli.app import app

    assert (ROOT / "docs/reference/cli.md").read_text(encoding="utf-8") == gen.render_cli(app)
    assert (ROOT / "docs/reference/formats.md").read_text(encoding="utf-8") == gen.render_formats()
    for name in ("predict", "boxes", "weights import-move", "eval saliency"):  # every command and sub-command
        assert f"## `unseg {name}`" in gen.render_cli(app)


def test_python_api_doctests(monkeypatch):
    import unsegcli.api

    monkeypatch.delenv("UNSEG_WEIGHTS", raising=False)
    result = doctest.testmod(unsegcli.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0
