"""The plugin's rules, checked over the annotated files in `cases/`.

A case file marks each line where mypy must report something:

    "fetch": ["parse"],  # E: [floxide-edge] "fetch" outputs "bytes"
    edges = EDGES  # N: mypy cannot check edges

`# E: [code] text` expects an error with that code whose message contains `text`;
`# N: text` expects a note. Every other line must stay silent, so each `Good...`
workflow of a case file is a passing case and each `Bad...` one a failing case.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from pathlib import Path

import pytest

from floxide._rules import RULES
from typecheck_tests.conftest import CASES, Message, MypyRun

CASE_FILES = sorted(CASES.glob("case_*.py"))
_EXPECT = re.compile(
    r"#\s*(?P<kind>[EN]):\s*(?:\[(?P<code>[a-z0-9-]+)\]\s*)?(?P<text>.*?)\s*(?=#\s*[EN]:|$)"
)

EDGE, ROUTE, GRAPH = "floxide-edge", "floxide-route", "floxide-graph"
RULE_CODES = {
    **dict.fromkeys(
        (
            "edge-type",
            "missing-join",
            "route-type",
            "start-type",
            "terminal-type",
            "context-type",
            "fallback-type",
            "join-type",
        ),
        EDGE,
    ),
    **dict.fromkeys(
        ("bad-route-key", "protocol-route-key", "route-never", "route-shadowed", "route-missing"),
        ROUTE,
    ),
}
NOTES = {"not-static", "any-node"}


@pytest.mark.parametrize("case", CASE_FILES, ids=[c.stem for c in CASE_FILES])
def test_case_file(case: Path, case_run: MypyRun) -> None:
    expected = _expectations(case)
    got = case_run.in_file(case, CASES)
    problems: list[str] = []
    by_line: dict[int, list[Message]] = {}
    for m in got:
        by_line.setdefault(m.line, []).append(m)
    for line in sorted(set(expected) | set(by_line)):
        left = list(by_line.get(line, []))
        for kind, code, text in expected.get(line, []):
            severity = "error" if kind == "E" else "note"
            match = next((m for m in left if _matches(m, severity, code, text)), None)
            if match is None:
                problems.append(f"line {line}: missing {kind}: [{code}] {text}")
            else:
                left.remove(match)
        problems.extend(f"line {line}: unexpected {m}" for m in left)
    assert not problems, "\n".join(problems) + "\n\nmypy said:\n" + "\n".join(map(str, got))


def test_every_rule_has_a_failing_case_with_its_code(case_run: MypyRun) -> None:
    """Each rule of `floxide._rules` is reported somewhere in `cases/`, with its code."""
    floxide_messages = [m for m in case_run.messages if m.code in (EDGE, ROUTE, GRAPH)]
    ours = floxide_messages + [m for m in case_run.messages if m.severity == "note"]
    missing: list[str] = []
    for rule, template in RULES.items():
        if rule == "did-you-mean":  # a suffix of the unknown-name rules, not a message
            if not any(_HINT.search(m.text) for m in floxide_messages if m.code == GRAPH):
                missing.append(rule)
            continue
        pattern = _template_regex(template)
        hits = [m for m in ours if pattern.fullmatch(m.text)]
        if rule in NOTES:
            hits = [m for m in hits if m.severity == "note"]
        else:
            hits = [m for m in hits if m.code == RULE_CODES.get(rule, GRAPH)]
        if not hits:
            missing.append(rule)
    assert not missing, f"rules without a failing case reporting their code: {missing}"


def test_every_plugin_message_comes_from_a_rule_template(case_run: MypyRun) -> None:
    """The plugin words nothing itself: every message is a `floxide._rules` template."""
    patterns = [_template_regex(t) for t in RULES.values()]
    stray = [
        str(m)
        for m in case_run.messages
        if m.code in (EDGE, ROUTE, GRAPH) and not any(p.fullmatch(m.text) for p in patterns)
    ]
    assert not stray, "\n".join(stray)


def test_no_message_is_reported_twice(case_run: MypyRun) -> None:
    counts = Counter(case_run.messages)
    assert not [m for m, n in counts.items() if n > 1]
    assert case_run.messages, "the case files produced no messages at all"


def _matches(m: Message, severity: str, code: str | None, text: str) -> bool:
    return m.severity == severity and (code is None or m.code == code) and text in m.text


def _expectations(path: Path) -> dict[int, list[tuple[str, str | None, str]]]:
    out: dict[int, list[tuple[str, str | None, str]]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        comment = line.find("# E:") if "# E:" in line else line.find("# N:")
        if comment < 0:
            continue
        for m in _EXPECT.finditer(line[comment:]):
            out.setdefault(n, []).append((m["kind"], m["code"], m["text"]))
    return out


_HINT = re.compile(r' \(did you mean "[^"]+"\?\)$')


def _template_regex(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    seen: set[str] = set()
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is None:
            continue
        group = re.sub(r"\W", "_", field)
        if group in seen:
            parts.append(f"(?P={group})")
        else:
            seen.add(group)
            parts.append(f"(?P<{group}>.+?)")
    return re.compile("".join(parts) + f"(?:{_HINT.pattern[:-1]})?")
