"""Incremental mode: a workflow is re-checked when a node's types change in another module.

Each scenario runs mypy several times over the same files with one cache directory,
editing a module between runs, the way a developer's (or CI's cached) mypy runs do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typecheck_tests.conftest import PYPROJECT, MypyRun, run_mypy

BASE = '''
from floxide import Node


class Producer(Node[None, int, {out}]): ...
'''

NODES = '''
from floxide import Node

from flowpkg.base import Producer


class Produce(Producer): ...


class Consume(Node[None, {inp}, None]): ...
'''

# flow.py imports nodes.py only: Producer's Out lives in base.py, which it never names.
FLOW = '''
from floxide import Workflow, workflow

from flowpkg.nodes import Consume, Produce


@workflow
class Flow(Workflow[None, int, None]):
    produce: Produce
    consume: Consume

    start = "produce"
    edges = {"produce": ["consume"], "consume": []}
'''


def _write(root: Path, name: str, text: str) -> None:
    (root / "flowpkg" / name).write_text(text.lstrip())


def _flow_errors(run: MypyRun) -> list[str]:
    return [m.text for m in run.messages if m.path.endswith("flow.py") and m.severity == "error"]


def _check(root: Path, cache: Path) -> MypyRun:
    return run_mypy(
        ["flowpkg/__init__.py", "flowpkg/base.py", "flowpkg/nodes.py", "flowpkg/flow.py"],
        cwd=root,
        cache_dir=cache,
    )


def test_node_type_change_in_other_modules_rechecks_the_workflow(tmp_path: Path) -> None:
    (tmp_path / "flowpkg").mkdir()
    _write(tmp_path, "__init__.py", "")
    _write(tmp_path, "base.py", BASE.format(out="str"))
    _write(tmp_path, "nodes.py", NODES.format(inp="str"))
    _write(tmp_path, "flow.py", FLOW)
    cache = tmp_path / "cache"

    first = _check(tmp_path, cache)
    assert first.messages == (), first.stdout

    # 1. The producer's output changes in base.py (flow.py does not import it).
    _write(tmp_path, "base.py", BASE.format(out="bytes"))
    second = _check(tmp_path, cache)
    assert _flow_errors(second) == [
        'edge "produce" -> "consume" of workflow "Flow": "produce" outputs "bytes" '
        'but "consume" accepts "str"'
    ], second.stdout

    # 2. The error stays while nothing changes (errors of cached modules are kept).
    third = _check(tmp_path, cache)
    assert _flow_errors(third) == _flow_errors(second), third.stdout

    # 3. The consumer is fixed in nodes.py: the workflow is clean again.
    _write(tmp_path, "nodes.py", NODES.format(inp="bytes | str"))
    fourth = _check(tmp_path, cache)
    assert fourth.messages == (), fourth.stdout

    # 4. The consumer's input changes back: the error comes back.
    _write(tmp_path, "nodes.py", NODES.format(inp="int"))
    fifth = _check(tmp_path, cache)
    assert _flow_errors(fifth) == [
        'edge "produce" -> "consume" of workflow "Flow": "produce" outputs "bytes" '
        'but "consume" accepts "int"'
    ], fifth.stdout


def test_daemon_rechecks_the_workflow_when_node_types_change(tmp_path: Path) -> None:
    """The same through dmypy (fine-grained mode, what editors use), across updates."""
    (tmp_path / "flowpkg").mkdir()
    _write(tmp_path, "__init__.py", "")
    _write(tmp_path, "base.py", BASE.format(out="str"))
    _write(tmp_path, "nodes.py", NODES.format(inp="str"))
    _write(tmp_path, "flow.py", FLOW)
    dmypy = [sys.executable, "-m", "mypy.dmypy", "--status-file", str(tmp_path / "dmypy.json")]

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*dmypy, *args], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120
        )

    def check() -> list[str]:
        done = call("check", "flowpkg")
        assert done.returncode in (0, 1), done.stdout + done.stderr
        lines = done.stdout.splitlines()
        return [line.split(": error: ", 1)[1] for line in lines if ": error: " in line]

    started = call("start", "--", "--config-file", str(PYPROJECT), "--no-error-summary")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        assert check() == []
        # Each edit changes the file's size: the daemon, like mypy, may take a same-size
        # edit within the file system's timestamp resolution for no change at all.
        steps = [
            ("base.py", BASE.format(out="bytes"), '"bytes" but "consume" accepts "str"'),
            ("base.py", BASE.format(out="str"), None),
            ("nodes.py", NODES.format(inp="int | None"), 'accepts "int | None"'),
            ("nodes.py", NODES.format(inp="str"), None),
        ]
        for module, text, error in steps:
            _write(tmp_path, module, text)
            errors = check()
            if error is None:
                assert errors == [], (module, errors)
            else:
                assert len(errors) == 1 and error in errors[0], (module, errors)
    finally:
        stopped = call("stop")
        if stopped.returncode != 0:
            call("kill")
