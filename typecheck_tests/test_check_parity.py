"""`floxide check` against the plugin, over the same case files (`cases/`).

Both enforce one list of rules (`floxide._rules`): the plugin with mypy's subtyping, `check`
with `floxide._subtype` over the declared generic arguments at run time. Over every case
file, `check` must never report what the plugin does not (no false positive: nothing in a
`Good...` workflow), each type error it reports must be the plugin's own (same line, code and
message), and it must catch at least as many `Bad...` workflows as `CHECK_CATCHES` records.
The counts are printed (`-s`) for the record.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from floxide._rules import RULES
from typecheck_tests.conftest import CASES, Message, MypyRun

CASE_FILES = sorted(CASES.glob("case_*.py"))
TYPE_RULES = (
    "edge-type", "missing-join", "route-type", "start-type", "terminal-type", "context-type",
    "fallback-type", "join-type", "route-never", "route-shadowed", "route-missing",
)  # fmt: skip
CHECK_CATCHES = 42  # `Bad...` workflows `floxide check` catches (of those the plugin catches)
SAME_ERRORS = 64  # plugin errors `check` reports identically (line, code and message)


def _spans(path: Path) -> dict[str, tuple[int, int]]:
    """Each workflow class of a case file: its first line (decorators too) and last line."""
    tree = ast.parse(path.read_text())
    return {
        n.name: (min([n.lineno, *(d.lineno for d in n.decorator_list)]), n.end_lineno or n.lineno)
        for n in tree.body
        if isinstance(n, ast.ClassDef) and n.decorator_list
    }


def _check(files: list[Path]) -> list[Message]:
    done = subprocess.run(
        [sys.executable, "-m", "floxide.cli", "check", *map(str, files)],
        capture_output=True, text=True, check=False, cwd=CASES,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    found: list[Message] = []
    for line in done.stdout.splitlines():
        where, _, rest = line.partition(": error: ")
        path, _, number = where.rpartition(":")
        text, _, code = rest.rpartition("  [")
        found.append(Message(str((CASES / path).resolve()), int(number), "error", text, code[:-1]))
    assert found and len(found) == len(done.stdout.splitlines())
    return found


def _is_type_rule(text: str) -> bool:
    from typecheck_tests.test_cases import _template_regex

    return any(_template_regex(RULES[r]).fullmatch(text) for r in TYPE_RULES)


def test_check_agrees_with_the_plugin(case_run: MypyRun) -> None:
    checked = _check(CASE_FILES)
    problems: list[str] = []
    plugin_bad = check_bad = plugin_errors = same_errors = 0
    for case in CASE_FILES:
        spans = _spans(case)
        static = [
            m for m in case_run.in_file(case, CASES) if m.code and m.code.startswith("floxide")
        ]
        static = [m for m in static if m.severity == "error"]
        ours = [m for m in checked if m.path == str(case.resolve())]
        plugin_errors += len(static)
        same_errors += sum(
            any((s.line, s.code, s.text) == (m.line, m.code, m.text) for m in ours) for s in static
        )
        for name, (first, last) in spans.items():
            hit_static = any(first <= m.line <= last for m in static)
            hit_check = [m for m in ours if first <= m.line <= last]
            plugin_bad += hit_static
            check_bad += bool(hit_check) and hit_static
            if hit_check and not name.startswith("Bad"):
                problems.extend(f"false positive in {name}: {m}" for m in hit_check)
        for m in ours:
            if _is_type_rule(m.text) and not any(
                (s.line, s.code, s.text) == (m.line, m.code, m.text) for s in static
            ):
                problems.append(f"not the plugin's: {m}")
    print(
        f"\nBad workflows caught: plugin {plugin_bad}, floxide check {check_bad}; "
        f"plugin errors {plugin_errors}, reported identically by floxide check {same_errors}"
    )
    assert not problems, "\n".join(problems)
    assert check_bad >= CHECK_CATCHES, (plugin_bad, check_bad)
    assert same_errors >= SAME_ERRORS, (plugin_errors, same_errors)
