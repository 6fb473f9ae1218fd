"""One list of rules, two enforcers: mypy and the run-time validation say the same thing.

Both apply the same structural rules (`floxide._structure.check_structure`), each to its own
description of the class: the runtime describes the class's Python values, the plugin its
reading of the class body. These cases prove the two descriptions agree. Each workflow below
is broken in a structural way both enforcers can see. It is written to its own module,
type-checked (all in one mypy run) and imported; the plugin's structure messages
(`floxide-graph`, and bad route keys) must be exactly the `WorkflowDefinitionError` problems
raised at class creation.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from floxide import WorkflowDefinitionError
from typecheck_tests.conftest import MypyRun, run_mypy

HEADER = '''
import enum
from collections.abc import Sequence

from floxide import Node, Workflow, workflow


class A(Node[None, int, int]): ...


class Many(Node[None, Sequence[int], int]): ...


class Color(enum.Enum):
    RED = 1

'''

BROKEN = {
    "names": '''
@workflow
class Names(Workflow[None, int, int]):
    a: A
    b: A
    c: A

    start = "a"
    edges = {"a": ["b", "x"], "b": "c", "z": [], "c": []}
''',
    "missing_and_unreachable": '''
@workflow
class Missing(Workflow[None, int, int]):
    a: A
    b: A
    c: A

    start = "a"
    edges = {"a": [], "b": ["a"]}
''',
    "start_and_routes": '''
@workflow
class Routes(Workflow[None, int, int]):
    a: A
    b: A

    start = "q"
    edges = {"a": {int: ["b"], 1.5: ["b"], Color.RED: ["nope"]}, "b": []}
''',
    "no_start_no_edges": '''
@workflow
class Empty(Workflow[None, int, int]):
    a: A
''',
    "reserved_and_not_a_node": '''
@workflow
class Reserved(Workflow[None, int, int]):
    a: A
    joins: A
    size: int

    start = "a"
    edges = {"a": ["joins", "size"], "joins": [], "size": []}
''',
    "no_nodes": '''
@workflow
class Nothing(Workflow[None, int, int]):
    start = "a"
    edges = {"a": {int: "b"}}
''',
    "fallbacks": '''
@workflow
class Fallbacks(Workflow[None, int, int]):
    a: A
    b: A

    start = "a"
    edges = {"a": [], "b": []}
    on_failure = {"a": ["b", "y"], "w": ["a"], "b": "a"}
''',
    "joins": '''
@workflow
class Joins(Workflow[None, int, int]):
    a: A
    b: A
    total: Many
    other: Many

    start = "a"
    edges = {"a": ["total", "b"], "b": ["other"], "total": [], "other": []}
    joins = {"nope": "a", "total": "zz", "other": "other", "b": "total"}
''',
    "joins_shape": '''
@workflow
class JoinsList(Workflow[None, int, int]):
    a: A

    start = "a"
    edges = {"a": []}
    joins = [("a", "a")]
''',
    "joins_entry": '''
@workflow
class JoinsEntry(Workflow[None, int, int]):
    a: A
    total: Many

    start = "a"
    edges = {"a": ["total"], "total": []}
    joins = {"total": ("a",)}
''',
    "reserved_not_a_node": '''
@workflow
class ReservedInt(Workflow[None, int, int]):
    a: A
    joins: int

    start = "a"
    edges = {"a": []}
''',
    "route_key_and_shape": '''
@workflow
class KeyAndShape(Workflow[None, int, int]):
    a: A
    b: A

    start = "a"
    edges = {"a": {1.5: "b", int: ["c"]}, "b": []}
''',
    "fallbacks_shape_and_reach": '''
@workflow
class FallbacksList(Workflow[None, int, int]):
    a: A
    b: A

    start = "a"
    edges = {"a": [], "b": []}
    on_failure = ["a"]
''',
    "unknown_join_of_a_list": '''
@workflow
class GhostJoin(Workflow[None, int, int]):
    a: A
    total: Many

    start = "a"
    edges = {"a": ["total"], "total": []}
    joins = {"ghost": ["a"]}
''',
}


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory: pytest.TempPathFactory, mypy_cache: Path) -> tuple[Path, MypyRun]:
    root = tmp_path_factory.mktemp("parity")
    for name, body in BROKEN.items():
        (root / f"broken_{name}.py").write_text(HEADER.lstrip() + body)
    files = sorted(p.name for p in root.glob("broken_*.py"))
    return root, run_mypy(files, cwd=root, cache_dir=mypy_cache)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_plugin_and_runtime_report_the_same_problems(
    name: str, broken_run: tuple[Path, MypyRun]
) -> None:
    root, run = broken_run
    path = root / f"broken_{name}.py"
    static = sorted(
        m.text
        for m in run.in_file(path, root)
        if m.severity == "error" and (m.code == "floxide-graph" or "route key" in m.text)
    )
    spec = importlib.util.spec_from_file_location(f"broken_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(WorkflowDefinitionError) as raised:
        spec.loader.exec_module(module)
    sys.modules.pop(f"broken_{name}", None)
    assert static, run.stdout
    assert static == sorted(raised.value.problems), run.stdout
