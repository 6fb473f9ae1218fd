"""`floxide check MODULE ...`: the plugin's type rules without mypy (API.md 13)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from floxide.cli import main

GOOD = """
from __future__ import annotations

from floxide import Next, Node, Transition, Workflow, workflow


class Parse(Node[None, str, int]):
    async def process(self, ctx: None, input: str) -> Transition[int]:
        return Next(int(input))


class Double(Node[None, int, int]):
    async def process(self, ctx: None, input: int) -> Transition[int]:
        return Next(input * 2)


@workflow
class Good(Workflow[None, str, int]):
    parse: Parse
    double: Double

    start = "parse"
    edges = {"parse": ["double"], "double": []}
"""

BAD = (
    GOOD
    + """

class Shout(Node[None, str, str]):
    async def process(self, ctx: None, input: str) -> Transition[str]:
        return Next(input.upper())


@workflow
class Bad(Workflow[None, str, int]):
    parse: Parse
    shout: Shout

    start = "parse"
    edges = {
        "parse": ["shout"],
        "shout": [],
    }


@workflow
class Broken(Workflow[None, str, int]):
    parse: Parse

    start = "prase"
    edges = {"parse": []}
"""
)


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "good_flows.py").write_text(textwrap.dedent(GOOD))
    (tmp_path / "bad_flows.py").write_text(textwrap.dedent(BAD))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_good_module_passes(modules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "good_flows"]) == 0
    assert capsys.readouterr().out == ""


def test_a_bad_module_reports_each_problem_at_its_line(
    modules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "bad_flows", "good_flows"]) == 1
    out = capsys.readouterr().out.splitlines()
    path = "bad_flows.py"  # relative to the current directory, as mypy shows it
    source = (modules / "bad_flows.py").read_text().splitlines()
    edge_line = next(n for n, text in enumerate(source, 1) if '"parse": ["shout"]' in text)
    terminal_line = next(n for n, text in enumerate(source, 1) if '"shout": []' in text)
    broken_line = next(n for n, text in enumerate(source, 1) if "start = \"prase\"" in text)
    assert out == [
        f'{path}:{edge_line}: error: edge "parse" -> "shout" of workflow "Bad": "parse" outputs '
        '"int" but "shout" accepts "str"  [floxide-edge]',
        f'{path}:{terminal_line}: error: terminal node "shout" of workflow "Bad" outputs "str", '
        'but the workflow output is "int"  [floxide-edge]',
        f'{path}:{broken_line}: error: start = "prase" is not a node of workflow "Broken" '
        '(did you mean "parse"?)  [floxide-graph]',
    ]


def test_a_path_works_too_and_the_console_script_exits_1(modules: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "floxide.cli", "check", str(modules / "bad_flows.py")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout.count(": error: ") == 3
    assert "Traceback" not in done.stderr


def test_a_module_that_cannot_be_imported_is_one_line(
    modules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (modules / "raising.py").write_text("raise RuntimeError('boom')\n")
    assert main(["check", "no_such_module_here"]) == 2
    assert main(["check", "raising"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "floxide: error: no module named 'no_such_module_here'",
        "floxide: error: cannot import raising: RuntimeError: boom",
    ]


def test_what_cannot_be_judged_is_a_note_under_verbose(
    modules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (modules / "vague.py").write_text(
        textwrap.dedent(GOOD.replace("Node[None, int, int]", "Node[None, 'Unknowable', int]"))
    )
    assert main(["check", "vague"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["check", "--verbose", "vague"]) == 0
    out = capsys.readouterr().out
    assert "note: floxide check cannot judge" in out and "Unknowable" in out
