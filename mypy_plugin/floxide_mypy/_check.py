"""The checks run on every `@workflow` class, at type-check time.

The decorator's function hook receives the class once every type in the program is final,
so node types from other modules, generic nodes specialised in a field annotation, and
wrappers (`with_retry`, `BatchNode`, ...) are all resolved through
`map_instance_to_supertype` to their `Node[Ctx, In, Out]` arguments. The structure is
checked by the runtime's own rules (`floxide._structure`, over the outline `_outline` makes
of the class body); this module adds the type rules. All wording is `floxide._rules`'.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from mypy.checker import TypeChecker
from mypy.errorcodes import ErrorCode
from mypy.expandtype import expand_type_by_instance
from mypy.maptype import map_instance_to_supertype
from mypy.meet import meet_types
from mypy.messages import format_type_bare
from mypy.nodes import (
    AssignmentStmt,
    Context,
    Expression,
    IndexExpr,
    MemberExpr,
    NameExpr,
    OpExpr,
    TypeInfo,
    Var,
)
from mypy.plugin import CheckerPluginInterface, FunctionContext
from mypy.subtypes import is_subtype
from mypy.typeops import make_simplified_union, try_expanding_sum_type_to_union
from mypy.types import (
    AnyType,
    FunctionLike,
    Instance,
    LiteralType,
    NoneType,
    ProperType,
    Type,
    TypeOfAny,
    TypeType,
    TypeVarType,
    UninhabitedType,
    UnionType,
    get_proper_type,
)
from mypy.typevars import fill_typevars, fill_typevars_with_any

from floxide._rules import RESERVED, RULES
from floxide._structure import Field as PlainField
from floxide._structure import Problem, ProtocolKey, check_structure
from floxide_mypy._codes import EDGE, GRAPH, ROUTE
from floxide_mypy._declared import (
    Declared,
    EdgeEntry,
    Name,
    RouteRow,
    read_class_body,
    written,
)
from floxide_mypy._deps import record_dependencies
from floxide_mypy._outline import describe

__all__ = ["NODE", "WORKFLOW", "WORKFLOW_DECORATOR", "check_workflow"]

WORKFLOW_DECORATOR = "floxide._workflow.workflow"
WORKFLOW = "floxide._workflow.Workflow"
NODE = "floxide._node.Node"

_LITERAL_CLASSES = ("builtins.str", "builtins.int", "builtins.bool", "builtins.bytes")

_CODES: dict[str, ErrorCode] = {
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
_FIELD_RULES = ("not-a-node", "reserved", "no-nodes")  # checked first, before the graph


@dataclass(frozen=True)
class NodeTypes:
    """The `Node[Ctx, In, Out]` arguments of one node field."""

    ctx: Type
    inp: Type
    out: Type


@dataclass
class Field:
    """A field of the workflow class: where it is declared and its node types."""

    name: str
    where: Context
    types: NodeTypes | None  # None: not a node (reported), annotated `annotation`
    annotation: str | None = None
    declared: Type | None = None


@dataclass(frozen=True)
class _Key:
    """A route key as the type rules see it: its label, its type, a class row or not."""

    label: str
    type: ProperType
    is_class: bool


class _Unseen(enum.Enum):
    """A route key whose value mypy cannot see: noted (a plain enum or str), or Any."""

    NOTED = "noted"
    ANY = "any"


def check_workflow(ctx: FunctionContext) -> Type:
    """The function hook of `@workflow`: check the decorated class, change nothing."""
    arg = ctx.arg_types[0][0] if ctx.arg_types and ctx.arg_types[0] else None
    cls = get_proper_type(arg) if arg is not None else None
    info: TypeInfo | None = None
    if isinstance(cls, FunctionLike) and cls.is_type_obj():
        info = cls.type_object()
    elif isinstance(cls, TypeType) and isinstance(cls.item, Instance):
        info = cls.item.type  # `@workflow @register class W`: another decorator's `type[W]`
    if info is not None:
        base = next((b for b in info.mro if b.fullname == WORKFLOW), None)
        if base is not None and info is not base:
            try:
                _Checker(ctx.api, info, base, ctx.context).run()
            except Exception as error:  # never take mypy down: say what was not checked
                ctx.api.msg.note(
                    f'floxide_mypy could not check workflow "{info.name}" '
                    f"({type(error).__name__}: {error}); please report this",
                    ctx.context,
                    code=GRAPH,
                )
    return ctx.default_return_type


def _variants(t: Type) -> list[ProperType]:
    """The cases of an output type: union members, enum members and `True`/`False`."""
    p = get_proper_type(t)
    if isinstance(p, Instance) and any(b.fullname == "enum.Flag" for b in p.type.mro):
        return [p]  # a combination such as `R | W` is none of the members: not a sum
    p = get_proper_type(try_expanding_sum_type_to_union(t, None))
    if isinstance(p, UnionType):
        return [v for item in p.items for v in _variants(item)]
    return [p]


def _written_union(expr: Expression) -> str:
    """`Dog | Cat` as written (names as they are spelt in the source)."""
    if isinstance(expr, OpExpr) and expr.op == "|":
        return f"{_written_union(expr.left)} | {_written_union(expr.right)}"
    if isinstance(expr, (NameExpr, MemberExpr)):
        return expr.name
    return written(expr) or "?"


def _explicit_any(types: NodeTypes) -> bool:
    """A node whose input or output is written `Any` (not left unknown)."""
    return any(
        isinstance(p, AnyType) and p.type_of_any == TypeOfAny.explicit
        for p in map(get_proper_type, (types.inp, types.out))
    )


def _qualname(info: TypeInfo) -> str:
    prefix = info.module_name + "."
    return info.fullname[len(prefix) :] if info.fullname.startswith(prefix) else info.name


class _Checker:
    def __init__(
        self, api: CheckerPluginInterface, info: TypeInfo, base: TypeInfo, where: Context
    ) -> None:
        self.api = api
        self.info = info
        self.base = base
        self.where = where
        self.wf = info.name
        self.used_types: list[Type] = []

    # ------------------------------------------------------------------ reporting
    def fail(self, rule: str, where: Context, **kw: object) -> None:
        text = RULES[rule].format(wf=self.wf, **kw)
        self.api.fail(text, self.inside(where), code=_CODES.get(rule, GRAPH))

    def report(self, problem: Problem) -> None:
        """A structural problem, on the expression it is about (else on the class)."""
        where = problem.at if isinstance(problem.at, Context) else self.where
        self.api.fail(problem.message, self.inside(where), code=_CODES.get(problem.rule, GRAPH))

    def note(self, text: str, where: Context) -> None:
        self.api.msg.note(text, self.inside(where), code=GRAPH)

    def inside(self, where: Context) -> Context:
        """`where` if it is in this class's body, else the class itself.

        A problem found in what a class inherits (a base's `edges`, a base's field) is
        reported on the class that has it, not on the base, which may be fine alone.
        """
        defn = self.info.defn
        end = defn.end_line if defn.end_line is not None else defn.line
        if where is self.where or defn.line <= where.line <= end:
            return where
        return self.where

    def fmt(self, t: Type) -> str:
        return format_type_bare(t, self.api.options)

    def type_of(self, expr: Expression) -> Type | None:
        if isinstance(self.api, TypeChecker):
            found = self.api.lookup_type_or_none(expr)
            if found is not None:
                return found
        return self.api.get_expression_type(expr)

    def sub(self, left: Type, right: Type) -> bool:
        self.used_types.extend((left, right))
        return is_subtype(left, right)

    # ------------------------------------------------------------------ fields
    def node_types(self, t: Type) -> NodeTypes | None:
        p = get_proper_type(t)
        if isinstance(p, AnyType):
            return NodeTypes(p, p, p)
        if isinstance(p, Instance):
            node_info = next((b for b in p.type.mro if b.fullname == NODE), None)
            if node_info is not None:
                mapped = map_instance_to_supertype(p, node_info)
                if len(mapped.args) == 3:
                    return NodeTypes(*mapped.args)
                anyt = AnyType(TypeOfAny.from_error)
                return NodeTypes(anyt, anyt, anyt)
        if isinstance(p, UnionType):
            # `A | B`: either node may be given, so the field needs what both need, accepts
            # what both accept, and may output what either outputs.
            parts = [self.node_types(item) for item in p.items]
            if parts and all(part is not None for part in parts):
                known = [part for part in parts if part is not None]
                ctx, inp = known[0].ctx, known[0].inp
                for part in known[1:]:
                    ctx, inp = meet_types(ctx, part.ctx), meet_types(inp, part.inp)
                return NodeTypes(ctx, inp, make_simplified_union([k.out for k in known]))
        return None

    def field_names(self) -> list[str]:
        """Field names in order, inherited ones first (what `dataclass_transform` made)."""
        data = self.info.metadata.get("dataclass")
        if isinstance(data, dict) and isinstance(data.get("attributes"), list):
            return [
                a["name"]
                for a in data["attributes"]
                if isinstance(a, dict) and isinstance(a.get("name"), str)
            ]
        names: list[str] = []  # no dataclass_transform metadata: the annotated body names
        for stmt in self.info.defn.defs.body:
            if isinstance(stmt, AssignmentStmt) and stmt.type is not None:
                lvalue = stmt.lvalues[0]
                if isinstance(lvalue, NameExpr) and isinstance(lvalue.node, Var):
                    if not lvalue.node.is_classvar:
                        names.append(lvalue.name)
        return names

    def fields(self) -> list[Field]:
        found: list[Field] = []
        self_type = fill_typevars(self.info)
        for name in self.field_names():
            sym = self.info.get(name)
            var = sym.node if sym is not None else None
            if not isinstance(var, Var):
                continue
            where: Context = var if var.info is self.info and var.line > 0 else self.where
            t = var.type
            if t is None:
                anyt = AnyType(TypeOfAny.unannotated)
                found.append(Field(name, where, NodeTypes(anyt, anyt, anyt)))
                continue
            if var.info is not self.info and isinstance(self_type, Instance):
                owner = map_instance_to_supertype(self_type, var.info)
                t = expand_type_by_instance(t, owner)
            self.used_types.append(t)
            types = self.node_types(t)
            found.append(Field(name, where, types, self.fmt(t) if types is None else None, t))
        return found

    # ------------------------------------------------------------------ main
    def run(self) -> None:
        fields = self.fields()
        nodes = {f.name: f for f in fields}
        self_type = fill_typevars(self.info)
        if isinstance(self_type, Instance):
            w_ctx, w_in, w_out = map_instance_to_supertype(self_type, self.base).args
        else:  # pragma: no cover - a NamedTuple workflow is not a thing
            w_ctx = w_in = w_out = AnyType(TypeOfAny.special_form)
        self.used_types.extend((w_ctx, w_in, w_out))
        decl = read_class_body(self.info, WORKFLOW, self.type_of)
        plain = [PlainField(f.name, f.where, f.annotation) for f in fields]
        problems = check_structure(describe(self.wf, plain, decl, self.bad_route_key))
        graph = _Types(self, decl, nodes, (w_in, w_out))

        first = 0  # the fields' problems, then their context types, then the rest
        while first < len(problems) and problems[first].rule in _FIELD_RULES:
            self.report(problems[first])
            first += 1
        graph.check_contexts(w_ctx)
        for f in fields:
            if f.types is not None and f.name not in RESERVED and _explicit_any(f.types):
                t = f.types
                shown = (
                    "Any"
                    if isinstance(get_proper_type(f.declared), AnyType)
                    else f"Node[{self.fmt(t.ctx)}, {self.fmt(t.inp)}, {self.fmt(t.out)}]"
                )
                self.note(
                    RULES["any-node"].format(wf=self.wf, name=f.name, annotation=shown), f.where
                )
        for attr, cls in decl.inherited.items():
            self.note(
                RULES["not-static"].format(
                    wf=self.wf,
                    what=attr,
                    why=f'inherited from "{cls.name}" of another module',
                ),
                self.where,
            )
        for unseen in decl.unseen:
            self.note(
                RULES["not-static"].format(wf=self.wf, what=unseen.what, why="not a literal"),
                unseen.expr,
            )
        for problem in problems[first:]:
            self.report(problem)
        graph.check()
        record_dependencies(self.api, self.used_types)

    # ------------------------------------------------------------------ route keys
    def route_key(self, row: RouteRow) -> _Key | str | _Unseen:
        """The key of a route row; its text (`str`) when it is not a valid key kind."""
        if isinstance(row.key, OpExpr) and row.key.op == "|":
            return _written_union(row.key)  # `Dog | Cat`: isinstance takes it, a row does not
        t = self.type_of(row.key)
        p = get_proper_type(t) if t is not None else None
        if isinstance(row.key, IndexExpr):  # `list[int]`: isinstance cannot match on it
            alias: Type | None = p
            if isinstance(p, TypeType):
                alias = p.item
            elif isinstance(p, FunctionLike) and p.is_type_obj():
                alias = p.items[0].ret_type
            return self.fmt(alias) if alias else "?"
        if isinstance(p, TypeType) and isinstance(p.item, NoneType):  # type(None)
            return _Key("NoneType", p.item, True)
        if isinstance(p, FunctionLike) and p.is_type_obj():
            info = p.type_object()
            if info.is_protocol and not info.runtime_protocol:
                return ProtocolKey(_qualname(info))
            key = fill_typevars_with_any(info)
            if isinstance(key, Instance):
                return _Key(_qualname(info), key, True)
        if isinstance(p, TypeType) and isinstance(p.item, Instance):
            return _Key(_qualname(p.item.type), p.item, True)
        if isinstance(p, Instance) and p.last_known_value is not None:
            p = p.last_known_value
        if isinstance(p, LiteralType):
            if p.is_enum_literal():
                return _Key(f"{_qualname(p.fallback.type)}.{p.value}", p, False)
            return _Key(p.value_repr(), p, False)
        if isinstance(p, NoneType):
            return _Key("None", p, False)
        if isinstance(p, Instance) and (p.type.is_enum or p.type.fullname in _LITERAL_CLASSES):
            return _Unseen.NOTED
        if isinstance(p, AnyType):
            return _Unseen.ANY
        return written(row.key) or (
            row.key.name if isinstance(row.key, NameExpr) else self.fmt(p) if p else "?"
        )

    def bad_route_key(self, row: RouteRow) -> str | None:
        """The key of a route row, shown, when it is not a valid key kind."""
        key = self.route_key(row)
        return key if isinstance(key, str) else None


class _Types:
    """The type rules over the declared graph (its structure is checked in `run`)."""

    def __init__(
        self, chk: _Checker, decl: Declared, nodes: dict[str, Field], wf_io: tuple[Type, Type]
    ) -> None:
        self.chk = chk
        self.decl = decl
        self.nodes = nodes
        self.w_in, self.w_out = wf_io
        self.joins = {
            join.value
            for join, source in decl.joins
            if isinstance(source, Name) and join.value in nodes and source.value in nodes
        }
        self.incoming: dict[str, list[Type]] = {j: [] for j in self.joins}  # payloads reaching

    def types(self, name: str) -> NodeTypes | None:
        f = self.nodes.get(name)
        return f.types if f is not None and name not in RESERVED else None

    def known(self, names: Iterable[Name]) -> list[Name]:
        return [n for n in names if n.value in self.nodes]

    def check_contexts(self, w_ctx: Type) -> None:
        chk = self.chk
        for f in self.nodes.values():
            types = self.types(f.name)
            if types is not None and not chk.sub(w_ctx, types.ctx):
                chk.fail(
                    "context-type",
                    f.where,
                    name=f.name,
                    need=chk.fmt(types.ctx),
                    have=chk.fmt(w_ctx),
                )

    def check(self) -> None:
        chk, decl = self.chk, self.decl
        for entry in decl.edges:
            if entry.source.value in self.nodes:
                self.check_entry(entry)
        for src, _value, targets in decl.on_failure:
            if src.value in self.nodes and targets is not None:
                self.flow_fallback(src, self.known(targets))
        start = decl.start
        if start is not None and start.value in self.nodes:
            types = self.types(start.value)
            if types is not None and not chk.sub(self.w_in, types.inp):
                chk.fail(
                    "start-type",
                    start.expr,
                    name=start.value,
                    inp=chk.fmt(types.inp),
                    win=chk.fmt(self.w_in),
                )
        self.check_join_types()

    def check_entry(self, entry: EdgeEntry) -> None:
        src = entry.source
        types = self.types(src.value)
        if entry.routes is not None:
            self.check_routes(src, entry.routes, types)
        elif entry.fanout is not None and types is not None:
            for t in self.known(entry.fanout):
                self.flow(src.value, types.out, t, None)
            if not entry.fanout:
                self.terminal(src, types.out, src.expr)

    # ------------------------------------------------------------------ types
    def flow(self, src: str, payload: Type, target: Name, label: str | None) -> None:
        """`payload` goes from `src` to `target` (through route `label`, if any)."""
        chk = self.chk
        if target.value in self.joins:
            self.incoming[target.value].append(payload)
            return
        types = self.types(target.value)
        if types is None or chk.sub(payload, types.inp):
            return
        if label is None and chk.sub(
            chk.api.named_generic_type("typing.Sequence", [payload]), types.inp
        ):
            chk.fail(
                "missing-join",
                target.expr,
                src=src,
                dst=target.value,
                out=chk.fmt(payload),
                inp=chk.fmt(types.inp),
            )
        elif label is None:
            chk.fail(
                "edge-type",
                target.expr,
                src=src,
                dst=target.value,
                out=chk.fmt(payload),
                inp=chk.fmt(types.inp),
            )
        else:
            chk.fail(
                "route-type",
                target.expr,
                variant=label,
                src=src,
                dst=target.value,
                out=chk.fmt(payload),
                inp=chk.fmt(types.inp),
            )

    def flow_fallback(self, src: Name, targets: list[Name]) -> None:
        chk = self.chk
        src_types = self.types(src.value)
        if src_types is None:
            return
        for t in targets:
            if t.value in self.joins:
                self.incoming[t.value].append(src_types.inp)
                continue
            types = self.types(t.value)
            if types is not None and not chk.sub(src_types.inp, types.inp):
                chk.fail(
                    "fallback-type",
                    t.expr,
                    src=src.value,
                    dst=t.value,
                    inp=chk.fmt(src_types.inp),
                    accepts=chk.fmt(types.inp),
                )

    def terminal(self, src: Name, out: Type, where: Context) -> None:
        chk = self.chk
        if not chk.sub(out, self.w_out):
            chk.fail(
                "terminal-type",
                where,
                name=src.value,
                out=chk.fmt(out),
                wout=chk.fmt(self.w_out),
            )

    def check_join_types(self) -> None:
        chk = self.chk
        for join, _source in self.decl.joins:
            payloads = self.incoming.get(join.value)
            types = self.types(join.value)
            if not payloads or types is None:
                continue
            item = make_simplified_union(payloads)
            received = chk.api.named_generic_type("typing.Sequence", [item])
            if not chk.sub(received, types.inp):
                chk.fail(
                    "join-type",
                    join.expr,
                    name=join.value,
                    inp=chk.fmt(types.inp),
                    out=chk.fmt(item),
                )

    # ------------------------------------------------------------------ routes
    def check_routes(self, src: Name, rows: list[RouteRow], types: NodeTypes | None) -> None:
        chk = self.chk
        keyed: list[tuple[RouteRow, _Key, list[Name]]] = []
        exhaustive_known = True
        for row in rows:
            key = chk.route_key(row)
            if key is _Unseen.NOTED:
                chk.note(
                    RULES["not-static"].format(
                        wf=chk.wf, what=f'a route key of "{src.value}"', why="not a literal"
                    ),
                    row.key,
                )
            if not isinstance(key, _Key) or row.targets is None:
                exhaustive_known = False  # reported (bad key or shape) or not seen
                continue
            keyed.append((row, key, self.known(row.targets)))
        if types is None:
            return
        out = types.out
        variants = _variants(out)
        if any(isinstance(v, (AnyType, TypeVarType)) for v in variants):
            exhaustive_known = False  # unknown (or generic) output: only rows are checked
        remaining = list(variants)
        # The runtime matches value rows (enum members, literals) first, then class rows in
        # order; the first class row an output is an instance of takes it.
        ordered = [k for k in keyed if not k[1].is_class] + [k for k in keyed if k[1].is_class]
        for row, found, targets in ordered:
            label, key_type = found.label, found.type
            hits: list[Type] = []
            consumed: list[ProperType] = []
            for v in remaining:
                if isinstance(v, (AnyType, TypeVarType)):
                    hits.append(key_type)
                elif chk.sub(v, key_type):
                    hits.append(v)
                    consumed.append(v)
                elif chk.sub(key_type, v):
                    hits.append(key_type)  # narrower than this case: the case stays open
            remaining = [v for v in remaining if not any(v is c for c in consumed)]
            if not hits:
                earlier = [v for v in variants if chk.sub(v, key_type) or chk.sub(key_type, v)]
                if earlier and found.is_class:
                    chk.fail(
                        "route-shadowed",
                        row.key,
                        variant=label,
                        src=src.value,
                        out=chk.fmt(make_simplified_union(earlier)),
                    )
                else:
                    chk.fail("route-never", row.key, variant=label, src=src.value, out=chk.fmt(out))
                continue
            payload = make_simplified_union(hits)
            for t in targets:
                self.flow(src.value, payload, t, label)
            if not targets:
                self.terminal(src, payload, row.value)
        remaining = [v for v in remaining if not isinstance(v, (AnyType, UninhabitedType))]
        if exhaustive_known and remaining:
            missing = ", ".join(f'"{chk.fmt(v)}"' for v in remaining)
            chk.fail("route-missing", src.expr, src=src.value, missing=missing)
