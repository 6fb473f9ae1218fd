"""`floxide check`: the plugin's type rules at run time, for users without mypy.

Each module is imported and every `@workflow` class defined in it is checked by the same
rules the mypy plugin applies (`floxide._rules`, same codes, same wording), judged by
`floxide._subtype` over the declared generic arguments. Only what is certainly wrong is
reported; a type that cannot be judged is skipped (said under `--verbose`). A class whose
structure is broken raises `WorkflowDefinitionError` when it is created: its problems are
reported too, and the rest of the module is still checked (its statements run one by one).
Each report points at the entry that wrote it (`FILE:LINE`, read from the class's source).
"""

from __future__ import annotations
import __future__

import argparse
import ast
import importlib
import importlib.util
import inspect
import re
import string
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from floxide._errors import CliError, WorkflowDefinitionError
from floxide._graph import Graph, route_key_label
from floxide._rules import RULES
from floxide._subtype import Verdict, is_subtype, make_union, sequence_of, show, variants
from floxide._typeinfo import known

__all__ = ["Report", "add_check_command", "check_modules", "check_workflow", "run_check"]

EDGE, ROUTE, GRAPH = "floxide-edge", "floxide-route", "floxide-graph"
CODES: dict[str, str] = {
    **dict.fromkeys(
        ("edge-type", "missing-join", "route-type", "start-type", "terminal-type", "context-type",
         "fallback-type", "join-type"),
        EDGE,
    ),
    **dict.fromkeys(
        ("bad-route-key", "protocol-route-key", "route-never", "route-shadowed", "route-missing"),
        ROUTE,
    ),
}  # fmt: skip


@dataclass(frozen=True, order=True)
class Report:
    """One line of output: `FILE:LINE: error: MESSAGE  [code]` (or a verbose note)."""

    path: str
    line: int
    severity: str
    message: str
    code: str = GRAPH

    def __str__(self) -> str:
        path = Path(self.path)
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        return f"{shown}:{self.line}: {self.severity}: {self.message}  [{self.code}]"


# ---------------------------------------------------------------------- where things are
@dataclass
class _Lines:
    """Lines of a workflow class's entries, read from its source (the class line if not)."""

    path: str
    cls: int
    fields: dict[str, int] = field(default_factory=dict)
    attrs: dict[str, ast.expr] = field(default_factory=dict)

    def of_field(self, name: str) -> int:
        return self.fields.get(name, self.cls)

    def of_attr(self, attr: str) -> int:
        node = self.attrs.get(attr)
        return node.lineno if node is not None else self.cls

    def _entry(self, attr: str, key: str) -> tuple[ast.expr, ast.expr] | None:
        table = self.attrs.get(attr)
        if isinstance(table, ast.Dict):
            for k, v in zip(table.keys, table.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == key:
                    return k, v
        return None

    def key(self, attr: str, key: str) -> int:
        found = self._entry(attr, key)
        return found[0].lineno if found is not None else self.of_attr(attr)

    def target(self, attr: str, src: str, name: str, row: int | None = None) -> int:
        found = self._entry(attr, src)
        if found is None:
            return self.of_attr(attr)
        value = found[1]
        if row is not None:
            if not isinstance(value, ast.Dict) or row >= len(value.values):
                return found[0].lineno
            value = value.values[row]
        if isinstance(value, (ast.List, ast.Tuple)):
            for elt in value.elts:
                if isinstance(elt, ast.Constant) and elt.value == name:
                    return elt.lineno
        return value.lineno

    def route_key(self, src: str, shown: str) -> int:
        """The line of the row of `edges[src]` whose key is written `shown`."""
        found = self._entry("edges", src)
        if found is not None and isinstance(found[1], ast.Dict):
            for k in found[1].keys:
                if k is not None and shown in (ast.unparse(k), repr(getattr(k, "value", None))):
                    return k.lineno
                if isinstance(k, (ast.Name, ast.Attribute)) and shown.endswith(ast.unparse(k)):
                    return k.lineno
        return self.key("edges", src)

    def row(self, src: str, row: int, *, value: bool = False) -> int:
        found = self._entry("edges", src)
        if found is None or not isinstance(found[1], ast.Dict) or row >= len(found[1].keys):
            return self.key("edges", src)
        part = found[1].values[row] if value else found[1].keys[row]
        return part.lineno if part is not None else found[0].lineno


_TREES: dict[str, ast.Module] = {}


def _lines_of(cls: type) -> _Lines:
    try:
        path = inspect.getsourcefile(cls) or "<unknown>"
        start = inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return _Lines(getattr(sys.modules.get(cls.__module__), "__file__", None) or "?", 1)
    tree = _TREES.get(path)
    if tree is None:
        tree = _TREES[path] = ast.parse(Path(path).read_text(encoding="utf-8"))
    candidates = [
        n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__
    ]
    node = next(
        (n for n in candidates if start in (n.lineno, *(d.lineno for d in n.decorator_list))),
        candidates[0] if candidates else None,
    )
    if node is None:
        return _Lines(path, start)
    return _lines_of_node(path, node)


def _lines_of_node(path: str, node: ast.ClassDef) -> _Lines:
    found = _Lines(path, node.lineno)  # the `class` line, where mypy reports on a class
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            found.fields[stmt.target.id] = stmt.lineno
            if stmt.value is not None:
                found.attrs[stmt.target.id] = stmt.value
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    found.attrs[target.id] = stmt.value
    return found


# ---------------------------------------------------------------------- the rules
class _Checker:
    """The type rules over one workflow's validated graph (the plugin's `_Types`)."""

    def __init__(self, cls: type, graph: Graph) -> None:
        self.graph = graph
        self.wf = graph.name
        self.at = _lines_of(cls)
        self.reports: list[Report] = []
        self.w_ctx, self.w_in, self.w_out = graph.workflow_types()
        self.incoming: dict[str, list[Any]] = {j: [] for j in graph.joins}

    def fail(self, rule: str, line: int, **kw: object) -> None:
        message = RULES[rule].format(wf=self.wf, **kw)
        self.reports.append(Report(self.at.path, line, "error", message, CODES.get(rule, GRAPH)))

    def sub(self, left: Any, right: Any, line: int, what: str) -> Verdict:
        verdict = is_subtype(left, right)
        if verdict is None:
            self.reports.append(
                Report(
                    self.at.path,
                    line,
                    "note",
                    f'floxide check cannot judge {what} of workflow "{self.wf}": '
                    f'"{show(left)}" against "{show(right)}"; skipped',
                )
            )
        return verdict

    def run(self) -> list[Report]:
        g = self.graph
        for name in g.node_names:
            ctx = g.node_types(name)[0]
            line = self.at.of_field(name)
            if self.sub(self.w_ctx, ctx, line, f'the context of "{name}"') is False:
                self.fail("context-type", line, name=name, need=show(ctx), have=show(self.w_ctx))
        for src, spec in g.specs.items():
            out = g.node_types(src)[2]
            if spec.successors is not None:
                for dst in spec.successors:
                    self.flow(src, out, dst, None, self.at.target("edges", src, dst))
                if not spec.successors:
                    self.terminal(src, out, self.at.key("edges", src))
            else:
                self.routes(src, out)
        for src, spec in g.specs.items():
            inp = g.node_types(src)[1]
            for dst in spec.fallback:
                line = self.at.target("on_failure", src, dst)
                if dst in self.incoming:
                    self.incoming[dst].append(inp)
                    continue
                accepts = g.node_types(dst)[1]
                if self.sub(inp, accepts, line, f'fallback "{src}" -> "{dst}"') is False:
                    self.fail(
                        "fallback-type",
                        line,
                        src=src,
                        dst=dst,
                        inp=show(inp),
                        accepts=show(accepts),
                    )
        start_in = g.node_types(g.start)[1]
        line = self.at.of_attr("start")
        if self.sub(self.w_in, start_in, line, "the start node") is False:
            self.fail("start-type", line, name=g.start, inp=show(start_in), win=show(self.w_in))
        for join, payloads in self.incoming.items():
            if not payloads:
                continue
            inp, item = g.node_types(join)[1], make_union(payloads)
            line = self.at.key("joins", join)
            if self.sub(sequence_of(item), inp, line, f'join "{join}"') is False:
                self.fail("join-type", line, name=join, inp=show(inp), out=show(item))
        return self.reports

    def flow(self, src: str, payload: Any, dst: str, label: str | None, line: int) -> None:
        if dst in self.incoming:
            self.incoming[dst].append(payload)
            return
        inp = self.graph.node_types(dst)[1]
        if self.sub(payload, inp, line, f'edge "{src}" -> "{dst}"') is not False:
            return
        if label is None and is_subtype(sequence_of(payload), inp):
            self.fail("missing-join", line, src=src, dst=dst, out=show(payload), inp=show(inp))
        elif label is None:
            self.fail("edge-type", line, src=src, dst=dst, out=show(payload), inp=show(inp))
        else:
            self.fail(
                "route-type",
                line,
                variant=label,
                src=src,
                dst=dst,
                out=show(payload),
                inp=show(inp),
            )

    def terminal(self, src: str, out: Any, line: int) -> None:
        if self.sub(out, self.w_out, line, f'terminal node "{src}"') is False:
            self.fail("terminal-type", line, name=src, out=show(out), wout=show(self.w_out))

    def routes(self, src: str, out: Any) -> None:
        """Value rows first, then class rows in order: the first match takes an output."""
        spec = self.graph.specs[src]
        rows = list(enumerate(spec.routes))
        ordered = [r for r in rows if not r[1].is_class] + [r for r in rows if r[1].is_class]
        cases = variants(out)
        exhaustive_known = all(known(v) for v in cases)
        remaining = list(cases)
        for index, route in ordered:
            key = route.key
            key_type = key if route.is_class else type(None) if key is None else Literal[key]
            label = route_key_label(key)
            hits: list[Any] = []
            consumed: list[Any] = []
            unsure = False
            for v in remaining:
                if not known(v):
                    hits.append(key_type)
                    continue
                down = is_subtype(v, key_type)
                if down is True:
                    hits.append(v)
                    consumed.append(v)
                    continue
                up = is_subtype(key_type, v)
                if up is True:
                    hits.append(key_type)
                elif down is None or up is None:
                    unsure = True
                    hits.append(key_type)
            remaining = [v for v in remaining if not any(v is c for c in consumed)]
            exhaustive_known = exhaustive_known and not unsure
            if not hits:
                line = self.at.row(src, index)
                earlier = [v for v in cases if is_subtype(v, key_type) or is_subtype(key_type, v)]
                if earlier and route.is_class:
                    self.fail(
                        "route-shadowed", line, variant=label, src=src,
                        out=show(make_union(earlier)),
                    )  # fmt: skip
                else:
                    self.fail("route-never", line, variant=label, src=src, out=show(out))
                continue
            payload = make_union(hits)
            for dst in route.targets:
                self.flow(src, payload, dst, label, self.at.target("edges", src, dst, index))
            if not route.targets:
                self.terminal(src, payload, self.at.row(src, index, value=True))
        if exhaustive_known and remaining:
            missing = ", ".join(f'"{show(v)}"' for v in remaining)
            self.fail("route-missing", self.at.key("edges", src), src=src, missing=missing)


def check_workflow(cls: type) -> list[Report]:
    """The type problems of one `@workflow` class (notes: what could not be judged)."""
    graph = cls.__dict__.get("__floxide_graph__")
    if not isinstance(graph, Graph):
        return []
    return sorted(set(_Checker(cls, graph).run()), key=lambda r: (r.line, r.severity))


# ---------------------------------------------------------------------- modules
_HINT = re.compile(r' \(did you mean "[^"]+"\?\)$')


def _rule_of(message: str) -> tuple[str, dict[str, str]] | None:
    """The rule that worded `message`, and the values of its fields."""
    message = _HINT.sub("", message)
    for rule, template in RULES.items():
        seen: set[str] = set()
        parts: list[str] = []
        for lit, name, _spec, _conv in string.Formatter().parse(template):
            parts.append(re.escape(lit))
            if name is not None:
                parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
                seen.add(name)
        found = re.fullmatch("".join(parts), message)
        if found:
            return rule, found.groupdict()
    return None


def _definition_line(at: _Lines, rule: str, kw: dict[str, str]) -> int:
    """The line of the entry a structural problem is about (as the plugin reports it)."""
    name, src = kw.get("name", ""), kw.get("src", "")
    where: dict[str, int] = {
        "no-start": at.of_attr("start"),
        "unknown-start": at.of_attr("start"),
        "no-edges": at.of_attr("edges"),
        "missing-entry": at.of_attr("edges"),
        "unknown-source": at.key("edges", name),
        "unknown-target": at.target("edges", src, name),
        "bad-successors": at.key("edges", src),
        "bad-route-key": at.route_key(src, kw.get("key", "")),
        "protocol-route-key": at.route_key(src, kw.get("key", "")),
        "not-a-node": at.of_field(name),
        "reserved": at.of_field(name),
        "unreachable": at.of_field(name),
        "unknown-fallback-source": at.key("on_failure", name),
        "unknown-fallback": at.target("on_failure", src, name),
        "bad-fallback": at.key("on_failure", src) if src != "*" else at.of_attr("on_failure"),
        "unknown-join": at.key("joins", name),
        "unknown-join-source": at.key("joins", name),
        "join-not-reached": at.key("joins", name),
        "join-is-source": at.key("joins", name),
        "bad-joins": at.of_attr("joins"),
    }
    return where.get(rule, at.cls)


def _definition_reports(error: WorkflowDefinitionError, path: str, stmt: ast.stmt) -> list[Report]:
    at = _lines_of_node(path, stmt) if isinstance(stmt, ast.ClassDef) else None
    first = stmt.lineno
    found: list[Report] = []
    for problem in error.problems:
        rule = _rule_of(problem)
        line = _definition_line(at, *rule) if at is not None and rule is not None else first
        code = CODES.get(rule[0], GRAPH) if rule is not None else GRAPH
        found.append(Report(path, line, "error", problem, code))
    return found


def _module_source(target: str) -> tuple[str, Path]:
    """The module name and file of MODULE (a dotted name or a path to a .py file)."""
    if target.endswith(".py") or "/" in target:
        path = Path(target).resolve()
        if not path.is_file():
            raise CliError(f"no such file: {target}")
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        return path.stem, path
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError) as e:
        raise CliError(f"cannot import {target}: {e}") from None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise CliError(f"no module named {target!r}")
    return target, Path(spec.origin)


def _load(target: str) -> tuple[types.ModuleType, list[Report]]:
    """Run the module's statements one by one, so one broken class hides nothing after it."""
    name, path = _module_source(target)
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, str(path))
    except SyntaxError as e:
        raise CliError(f"cannot import {target}: {e}") from None
    module = types.ModuleType(name)
    module.__file__ = str(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module.__spec__ = spec
    module.__package__ = name.rpartition(".")[0] if path.name != "__init__.py" else name
    previous = sys.modules.get(name)
    sys.modules[name] = module
    flags = 0
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            for alias in stmt.names:
                flags |= getattr(__future__, alias.name).compiler_flag
    found: list[Report] = []
    try:
        for stmt in tree.body:
            code = compile(
                ast.Module([stmt], []), str(path), "exec", flags=flags, dont_inherit=True
            )
            try:
                exec(code, module.__dict__)
            except WorkflowDefinitionError as e:
                found.extend(_definition_reports(e, str(path), stmt))
            except Exception as e:
                raise CliError(f"cannot import {target}: {type(e).__name__}: {e}") from None
    except BaseException:
        if previous is not None:
            sys.modules[name] = previous
        raise
    return module, found


def _workflows(module: types.ModuleType) -> Iterator[type]:
    for value in list(vars(module).values()):
        if (
            isinstance(value, type)
            and value.__module__ == module.__name__
            and isinstance(value.__dict__.get("__floxide_graph__"), Graph)
        ):
            yield value


def check_modules(targets: Sequence[str]) -> list[Report]:
    """Every report for the workflows of `targets`, in file and line order."""
    reports: list[Report] = []
    for target in targets:
        module, found = _load(target)
        reports.extend(found)
        for cls in _workflows(module):
            reports.extend(check_workflow(cls))
    return sorted(set(reports), key=lambda r: (r.path, r.line, r.severity, r.message))


# ---------------------------------------------------------------------- command line
def add_check_command(subparsers: Any) -> None:
    """`floxide check MODULE [MODULE ...] [--verbose]`."""
    check = subparsers.add_parser(
        "check", help="check the types of every workflow in MODULEs, without mypy"
    )
    check.add_argument("modules", nargs="+", metavar="MODULE")
    check.add_argument(
        "--verbose", "-v", action="store_true", help="also say which types were not judged"
    )


def run_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print every problem; 1 if there is any, 0 if none, 2 if a module cannot be imported."""
    try:
        reports = check_modules(args.modules)
    except CliError as e:
        print(f"floxide: error: {e}", file=err)
        return 2
    errors = 0
    for r in reports:
        if r.severity == "error":
            errors += 1
        elif not args.verbose:
            continue
        print(r, file=out)
    if args.verbose or errors:
        workflows = "no problems" if not errors else f"{errors} error{'s' * (errors != 1)}"
        print(f"floxide check: {workflows}", file=err)
    return 1 if errors else 0
