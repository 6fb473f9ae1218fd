"""What a `@workflow` class body declares, read from its syntax tree.

`start`, `edges`, `on_failure` and `joins` are plain class attributes; the plugin reads
their literal values (dicts, lists, strings, `Final` string constants) and remembers the
expression of every name and key, so each problem is reported on the line that causes it.
A value mypy cannot see (a call, a non-`Final` variable, `**spread`) is recorded as
unseen: the checker then says so in a note instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mypy.nodes import (
    AssignmentStmt,
    BytesExpr,
    ClassDef,
    DictExpr,
    Expression,
    FloatExpr,
    IntExpr,
    ListExpr,
    NameExpr,
    RefExpr,
    StrExpr,
    TempNode,
    TupleExpr,
    TypeInfo,
    Var,
)
from mypy.types import Instance, LiteralType, Type, get_proper_type

from floxide._structure import Malformed

__all__ = [
    "Declared",
    "EdgeEntry",
    "Name",
    "RouteRow",
    "Unseen",
    "read_class_body",
    "written",
]

TypeOf = Callable[[Expression], Type | None]
"""Looks up the inferred type of an expression of the class body."""


@dataclass(frozen=True)
class Name:
    """A node name written in the class body, with the expression that wrote it."""

    value: str
    expr: Expression


@dataclass(frozen=True)
class Unseen:
    """A value mypy cannot see statically, and where it is."""

    what: str
    expr: Expression


@dataclass
class RouteRow:
    """One row of a routing table: `key: [targets]`; `targets` None when not a name list."""

    key: Expression
    value: Expression
    targets: list[Name] | None


@dataclass
class EdgeEntry:
    """`edges["src"]`: a fan-out list, a routing table, or something else (`bad`)."""

    source: Name
    value: Expression
    fanout: list[Name] | None = None
    routes: list[RouteRow] | None = None
    bad: str | None = None  # a literal that is neither (shown as written), e.g. `"b"`


@dataclass
class Declared:
    """Everything the class body says about the graph, as far as mypy can see it.

    `*_expr` is the assigned expression (None when the class does not assign it);
    `*_seen` is False when the value exists but is not a literal mypy can read.
    """

    start: Name | None = None
    start_expr: Expression | None = None
    start_bad: bool = False
    edges: list[EdgeEntry] = field(default_factory=list)
    edges_expr: Expression | None = None
    edges_complete: bool = True
    on_failure: list[tuple[Name, Expression, list[Name] | None]] = field(default_factory=list)
    on_failure_expr: Expression | None = None
    on_failure_complete: bool = True
    joins: list[tuple[Name, Name | Malformed]] = field(default_factory=list)
    joins_expr: Expression | None = None
    joins_complete: bool = True
    joins_bad: Malformed | None = None  # a literal that is not a mapping
    unseen: list[Unseen] = field(default_factory=list)
    bad: list[tuple[str, Expression]] = field(default_factory=list)  # a literal, wrong shape
    inherited: dict[str, TypeInfo] = field(default_factory=dict)


def literal_str(expr: Expression, type_of: TypeOf) -> str | None:
    """The string an expression stands for: a literal or a `Final` string constant."""
    if isinstance(expr, StrExpr):
        return expr.value
    if isinstance(expr, RefExpr) and isinstance(expr.node, Var):
        final = expr.node.final_value  # `X: Final[str] = "x"`: its type is plain `str`
        if expr.node.is_final and isinstance(final, str):
            return final
    typ = type_of(expr)
    if typ is None:
        return None
    p = get_proper_type(typ)
    if isinstance(p, Instance) and p.last_known_value is not None:
        p = p.last_known_value
    if isinstance(p, LiteralType) and isinstance(p.value, str):
        if p.fallback.type.fullname == "builtins.str":
            return p.value
    return None


def written(expr: Expression) -> str | None:
    """How a literal is written (as `repr` shows it), for messages about a wrong shape."""
    if isinstance(expr, StrExpr):
        return repr(expr.value)
    if isinstance(expr, (IntExpr, FloatExpr)):
        return repr(expr.value)
    if isinstance(expr, BytesExpr):
        return f"b'{expr.value}'"
    if isinstance(expr, NameExpr) and expr.fullname in (
        "builtins.None",
        "builtins.True",
        "builtins.False",
    ):
        return expr.name
    if isinstance(expr, (ListExpr, TupleExpr)):
        items = [written(i) for i in expr.items]
        if all(i is not None for i in items):
            inner = ", ".join(i for i in items if i is not None)
            if isinstance(expr, ListExpr):
                return f"[{inner}]"
            return f"({inner},)" if len(items) == 1 else f"({inner})"
    return None


def _other_literal(expr: Expression) -> str | None:
    """A literal that is not a string, shown as `str()` shows its value (`1`, `None`)."""
    if isinstance(expr, StrExpr):
        return None
    shown = written(expr)
    if shown is None or isinstance(expr, (ListExpr, TupleExpr)):
        return None
    return shown


class _Reader:
    def __init__(self, type_of: TypeOf, out: Declared) -> None:
        self.type_of = type_of
        self.out = out

    def unseen(self, what: str, expr: Expression) -> None:
        self.out.unseen.append(Unseen(what, expr))

    def name(self, expr: Expression, what: str) -> Name | None:
        """The name an expression stands for; a non-string literal (`1`) names no node."""
        value = literal_str(expr, self.type_of)
        if value is None:
            value = _other_literal(expr)
        if value is None:
            self.unseen(what, expr)
            return None
        return Name(value, expr)

    def names(self, expr: Expression, what: str) -> list[Name] | bool | None:
        """A list/tuple of names; None when it is not one; False when some name is unseen."""
        if not isinstance(expr, (ListExpr, TupleExpr)):
            return None
        if any(_other_literal(item) is not None for item in expr.items):
            return None  # a literal list, but not of names: the wrong shape
        found: list[Name] = []
        ok = True
        for item in expr.items:
            n = self.name(item, what)
            if n is None:
                ok = False
            else:
                found.append(n)
        return found if ok else False

    def start(self, expr: Expression) -> None:
        self.out.start_expr = expr
        if _other_literal(expr) is not None or isinstance(expr, (ListExpr, TupleExpr, DictExpr)):
            self.out.start_bad = True  # a literal, but not a string
            return
        self.out.start = self.name(expr, "start")

    def edges(self, expr: Expression) -> None:
        self.out.edges_expr = expr
        if not isinstance(expr, DictExpr):
            self.out.edges_complete = False
            if written(expr) is not None:
                self.out.bad.append(("edges", expr))
            else:
                self.unseen("edges", expr)
            return
        for key, value in expr.items:
            if key is None:
                self.out.edges_complete = False
                self.unseen("edges (a ** entry)", value)
                continue
            src = self.name(key, "an edges key")
            if src is None:
                self.out.edges_complete = False
                continue
            entry = EdgeEntry(src, value)
            targets = self.names(value, f'edges["{src.value}"]')
            if targets is False:
                self.out.edges_complete = False
                continue
            if isinstance(targets, list):
                entry.fanout = targets
            elif isinstance(value, DictExpr):
                entry.routes = self.routes(src, value)
            elif (shown := written(value)) is not None:
                entry.bad = shown
            else:
                self.out.edges_complete = False
                self.unseen(f'edges["{src.value}"]', value)
                continue
            self.out.edges.append(entry)

    def routes(self, src: Name, table: DictExpr) -> list[RouteRow]:
        rows: list[RouteRow] = []
        for key, value in table.items:
            if key is None:
                self.out.edges_complete = False
                self.unseen(f'the routing table of "{src.value}" (a ** entry)', value)
                continue
            targets = self.names(value, f'a route target of "{src.value}"')
            if targets is False:
                self.out.edges_complete = False
                continue
            if targets is None and written(value) is None:
                self.out.edges_complete = False
                self.unseen(f'a route of "{src.value}"', value)
                continue
            rows.append(RouteRow(key, value, targets if isinstance(targets, list) else None))
        return rows

    def on_failure(self, expr: Expression) -> None:
        self.out.on_failure_expr = expr
        if not isinstance(expr, DictExpr):
            self.out.on_failure_complete = False
            if written(expr) is not None:
                self.out.bad.append(("on_failure", expr))
            else:
                self.unseen("on_failure", expr)
            return
        for key, value in expr.items:
            if key is None:
                self.out.on_failure_complete = False
                self.unseen("on_failure (a ** entry)", value)
                continue
            src = self.name(key, "an on_failure key")
            if src is None:
                self.out.on_failure_complete = False
                continue
            targets = self.names(value, f'on_failure["{src.value}"]')
            if targets is False:
                self.out.on_failure_complete = False
                continue
            if targets is None and written(value) is None:
                self.out.on_failure_complete = False
                self.unseen(f'on_failure["{src.value}"]', value)
                continue
            self.out.on_failure.append(
                (src, value, targets if isinstance(targets, list) else None)
            )

    def joins(self, expr: Expression) -> None:
        self.out.joins_expr = expr
        if not isinstance(expr, DictExpr):
            if (shown := written(expr)) is not None:
                self.out.joins_bad = Malformed(shown, expr)  # the run-time check takes no joins
            else:
                self.out.joins_complete = False
                self.unseen("joins", expr)
            return
        for key, value in expr.items:
            if key is None:
                self.out.joins_complete = False
                self.unseen("joins (a ** entry)", value)
                continue
            join = self.name(key, "a joins key")
            if (
                join is not None
                and isinstance(value, (ListExpr, TupleExpr))
                and (shown := written(value)) is not None
            ):
                self.out.joins.append((join, Malformed(shown, value)))
                continue
            source = self.name(value, f'joins["{join.value}"]' if join else "a joins value")
            if join is None or source is None:
                self.out.joins_complete = False
                continue
            self.out.joins.append((join, source))


RESERVED_ATTRS = ("start", "edges", "on_failure", "joins")


def _assignments(defn: ClassDef) -> dict[str, Expression]:
    """The last top-level `name = value` of each reserved attribute in a class body."""
    found: dict[str, Expression] = {}
    for stmt in defn.defs.body:
        if not isinstance(stmt, AssignmentStmt) or len(stmt.lvalues) != 1:
            continue
        if isinstance(stmt.rvalue, TempNode) and stmt.rvalue.no_rhs:
            continue  # `name: T` without a value declares a field, not the attribute
        lvalue = stmt.lvalues[0]
        if isinstance(lvalue, NameExpr) and lvalue.name in RESERVED_ATTRS:
            found[lvalue.name] = stmt.rvalue
    return found


def read_class_body(info: TypeInfo, workflow_base: str, type_of: TypeOf) -> Declared:
    """Read `start`, `edges`, `on_failure` and `joins` of the workflow class `info`.

    A value inherited from another workflow class of the same module is read from that
    class's body; one inherited from another module is recorded in `inherited` (its body
    is not available when mypy loads that module from its cache, so it is never read, to
    keep results the same with and without a cache).
    """
    out = Declared()
    reader = _Reader(type_of, out)
    readers: dict[str, Callable[[Expression], None]] = {
        "start": reader.start,
        "edges": reader.edges,
        "on_failure": reader.on_failure,
        "joins": reader.joins,
    }
    bodies: dict[str, dict[str, Expression]] = {}
    for attr, read in readers.items():
        for cls in info.mro:
            if cls.fullname == workflow_base:
                break  # the base only declares it (or gives the empty default)
            if cls.module_name != info.module_name:
                if attr in cls.names:
                    out.inherited[attr] = cls
                    break
                continue
            if cls.fullname not in bodies:
                bodies[cls.fullname] = _assignments(cls.defn)
            if attr in bodies[cls.fullname]:
                read(bodies[cls.fullname][attr])
                break
    return out
