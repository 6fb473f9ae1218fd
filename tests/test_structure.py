"""The structural rules (`floxide._structure`) on plain outlines: one test per rule.

The runtime validation and the mypy plugin both run these rules; here they are checked
alone, without classes or mypy. Every name carries a marker as its `at`, so each test also
shows which name or value a problem points at (the line the plugin reports it on).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from floxide import _structure
from floxide._rules import RULES
from floxide._structure import (
    UNSEEN,
    Entry,
    Fallback,
    Field,
    Join,
    Malformed,
    Name,
    Outline,
    Problem,
    RouteRow,
    Table,
    Unseen,
    check_structure,
)

WF = "Flow"
Edges = Table[Entry] | Malformed | Unseen | None


def fields(*names: str, not_nodes: Mapping[str, str] | None = None) -> list[Field]:
    shown = not_nodes or {}
    return [Field(n, ("field", n), shown.get(n)) for n in names]


def name(value: str, role: str) -> Name:
    return Name(value, (role, value))


def fanout(src: str, *targets: str) -> Entry:
    return Entry(name(src, "source"), [name(t, "target") for t in targets])


def routes(src: str, *rows: RouteRow) -> Entry:
    return Entry(name(src, "source"), list(rows))


def row(*targets: str, bad_key: str | None = None) -> RouteRow:
    return RouteRow([name(t, "target") for t in targets], bad_key, ("key", bad_key))


def edges(*entries: Entry, complete: bool = True) -> Table[Entry]:
    return Table(entries, complete, "edges")


def fallbacks(
    spec: Mapping[str, Sequence[str] | Malformed], complete: bool = True
) -> Table[Fallback]:
    return Table(
        [
            Fallback(
                name(src, "fallback-source"),
                targets
                if isinstance(targets, Malformed)
                else [name(t, "fallback") for t in targets],
            )
            for src, targets in spec.items()
        ],
        complete,
        "on_failure",
    )


def joins(spec: Mapping[str, str | Malformed]) -> Table[Join]:
    return Table(
        [
            Join(
                name(join, "join"),
                source if isinstance(source, Malformed) else name(source, "join-source"),
            )
            for join, source in spec.items()
        ],
        True,
        "joins",
    )


def check(
    field_list: Sequence[Field] = (),
    start: Name | Malformed | Unseen | None = None,
    edge_table: Edges = None,
    on_failure: Table[Fallback] | Malformed | Unseen | None = None,
    join_table: Table[Join] | Malformed | Unseen | None = None,
) -> list[tuple[str, str, object]]:
    outline = Outline(WF, field_list, start, edge_table, on_failure, join_table)
    return [(p.rule, p.message, p.at) for p in check_structure(outline)]


def chain(*names: str) -> Table[Entry]:
    """`a -> b -> ... -> last -> []`."""
    pairs = zip(names, (*names[1:], None), strict=True)
    return edges(*(fanout(n, *([nxt] if nxt else [])) for n, nxt in pairs))


START = name("a", "start")


# --------------------------------------------------------------------------- valid
def test_a_valid_outline_has_no_problems() -> None:
    assert check(fields("a", "b", "c"), START, chain("a", "b", "c")) == []


def test_routes_fallbacks_and_joins_that_are_valid_have_no_problems() -> None:
    assert (
        check(
            fields("a", "b", "c", "total", "rescue"),
            START,
            edges(
                routes("a", row("b"), row("c"), row()),
                fanout("b", "total"),
                fanout("c", "total"),
                fanout("total"),
                fanout("rescue"),
            ),
            fallbacks({"a": ["rescue"]}),
            joins({"total": "a"}),
        )
        == []
    )


def test_problem_defaults_to_the_class() -> None:
    assert Problem("no-nodes", "text").at is None


# --------------------------------------------------------------------------- fields
def test_not_a_node() -> None:
    assert check(
        fields("a", "count", not_nodes={"count": "int"}), START, chain("a", "count")
    ) == [
        (
            "not-a-node",
            'field "count" of workflow "Flow" is not a Node (annotated int)',
            ("field", "count"),
        )
    ]


def test_reserved() -> None:
    assert check(fields("a", "edges"), START, chain("a", "edges")) == [
        (
            "reserved",
            'node field "edges" of workflow "Flow" uses a reserved name '
            "(start, edges, on_failure and joins are reserved)",
            ("field", "edges"),
        )
    ]


def test_a_reserved_field_is_not_also_reported_as_not_a_node() -> None:
    found = check(fields("a", "joins", not_nodes={"joins": "int"}), START, chain("a"))
    assert [rule for rule, _, _ in found] == ["reserved"]


def test_no_nodes() -> None:
    assert check((), START, edges()) == [
        ("no-nodes", 'workflow "Flow" declares no nodes', None),
        ("unknown-start", 'start = "a" is not a node of workflow "Flow"', ("start", "a")),
    ]


# --------------------------------------------------------------------------- start
def test_no_start() -> None:
    assert check(fields("a"), None, chain("a")) == [
        ("no-start", 'workflow "Flow" must declare start = "<node name>"', None)
    ]


def test_a_start_that_is_not_a_name_is_no_start_on_its_value() -> None:
    assert check(fields("a"), Malformed("1", "start"), chain("a")) == [
        ("no-start", 'workflow "Flow" must declare start = "<node name>"', "start")
    ]


def test_unknown_start() -> None:
    assert check(fields("a"), name("x", "start"), chain("a")) == [
        ("unknown-start", 'start = "x" is not a node of workflow "Flow"', ("start", "x"))
    ]


# --------------------------------------------------------------------------- edges
MISSING_A = (
    "missing-entry",
    'node "a" of workflow "Flow" has no entry in edges (use "a": [] for a terminal node)',
)


def test_no_edges() -> None:
    no_edges = ("no-edges", 'workflow "Flow" must declare edges = {"<node>": [...], ...}')
    assert check(fields("a"), START, None) == [(*no_edges, None), (*MISSING_A, None)]
    assert check(fields("a"), START, Malformed("[]", "edges")) == [
        (*no_edges, "edges"),
        (*MISSING_A, "edges"),
    ]


def test_unknown_source() -> None:
    assert check(fields("a"), START, edges(fanout("a"), fanout("z"))) == [
        (
            "unknown-source",
            'edges of workflow "Flow" has an entry for "z", which is not a node',
            ("source", "z"),
        )
    ]


def test_unknown_target() -> None:
    message = 'edge "a" -> "x" of workflow "Flow": "x" is not a node'
    assert check(fields("a"), START, edges(fanout("a", "x"))) == [
        ("unknown-target", message, ("target", "x"))
    ]
    assert check(fields("a"), START, edges(routes("a", row("x")))) == [
        ("unknown-target", message, ("target", "x"))
    ]


def test_missing_entry() -> None:
    assert check(fields("a", "b"), START, edges(fanout("a", "b"))) == [
        (
            "missing-entry",
            'node "b" of workflow "Flow" has no entry in edges (use "b": [] for a terminal '
            "node)",
            "edges",
        )
    ]


def test_reserved_fields_need_no_entry() -> None:
    assert [rule for rule, _, _ in check(fields("a", "joins"), START, chain("a"))] == [
        "reserved"
    ]


def test_bad_successors() -> None:
    message = (
        'edges["a"] of workflow "Flow" must be a list of node names or a routing table '
        "{variant: [names]}, got 3"
    )
    entry = Entry(name("a", "source"), Malformed("3", "value"))
    assert check(fields("a"), START, edges(entry)) == [("bad-successors", message, "value")]
    table = routes("a", RouteRow(Malformed("3", "row")), row())
    assert check(fields("a"), START, edges(table)) == [("bad-successors", message, "row")]


def test_bad_route_key() -> None:
    assert check(
        fields("a", "b"), START, edges(routes("a", row("b", bad_key="1.5")), fanout("b"))
    ) == [
        (
            "bad-route-key",
            'route key 1.5 of "a" in workflow "Flow" must be a class, an enum member or a '
            "literal (str, int, bool, bytes, None)",
            ("key", "1.5"),
        )
    ]


def test_a_misspelt_name_comes_first_with_the_nearest_name_and_hides_its_consequences() -> None:
    found = check(
        fields("fetch", "stock", "ship"),
        name("fetch", "start"),
        edges(fanout("fetch", "stok"), fanout("ship"), fanout("stock", "ship")),
    )
    assert [message for _, message, _ in found] == [
        'edge "fetch" -> "stok" of workflow "Flow": "stok" is not a node (did you mean "stock"?)',
    ]


def test_a_protocol_key_that_is_not_runtime_checkable() -> None:
    key = _structure.ProtocolKey("Named")
    assert check(
        fields("a", "b"), START, edges(routes("a", row("b", bad_key=key)), fanout("b"))
    ) == [
        (
            "protocol-route-key",
            'route key Named of "a" in workflow "Flow" is a Protocol that is not '
            "@runtime_checkable: no output can be matched against it",
            ("key", "Named"),
        )
    ]


def test_a_row_with_a_bad_key_still_has_its_targets_checked() -> None:
    bad_shape = RouteRow(Malformed("'b'", "row"), "1.5", "key")
    found = check(
        fields("a", "b"), START, edges(routes("a", bad_shape, row("x", bad_key="2.5")))
    )
    assert [(rule, at) for rule, _, at in found] == [
        ("bad-route-key", "key"),
        ("bad-successors", "row"),
        ("bad-route-key", ("key", "2.5")),
        ("unknown-target", ("target", "x")),
        ("missing-entry", "edges"),
        ("unreachable", ("field", "b")),
    ]


# --------------------------------------------------------------------------- reachability
def test_unreachable() -> None:
    assert check(fields("a", "b"), START, edges(fanout("a"), fanout("b"))) == [
        (
            "unreachable",
            'node "b" of workflow "Flow" is unreachable from start "a"',
            ("field", "b"),
        )
    ]


def test_routes_and_fallbacks_count_for_reachability() -> None:
    outline = (
        fields("a", "b", "c"),
        START,
        edges(routes("a", row("b")), fanout("b"), fanout("c")),
        fallbacks({"b": ["c"]}),
    )
    assert check(*outline) == []


def test_a_node_without_an_entry_still_reaches_its_fallbacks() -> None:
    """Even a reserved field (reported, and needing no entry) passes reachability on."""
    start = name("joins", "start")
    found = check(fields("joins", "b"), start, edges(fanout("b")), fallbacks({"joins": ["b"]}))
    assert [rule for rule, _, _ in found] == ["reserved"]


# --------------------------------------------------------------------------- on_failure
def test_unknown_fallback_source() -> None:
    assert check(fields("a"), START, chain("a"), fallbacks({"zed": ["a"]})) == [
        (
            "unknown-fallback-source",
            'on_failure of workflow "Flow" has an entry for "zed", which is not a node',
            ("fallback-source", "zed"),
        )
    ]


def test_unknown_fallback() -> None:
    assert check(fields("a"), START, chain("a"), fallbacks({"a": ["ghost"]})) == [
        (
            "unknown-fallback",
            'fallback "a" -> "ghost" of workflow "Flow": "ghost" is not a node',
            ("fallback", "ghost"),
        )
    ]


def test_bad_fallback() -> None:
    message = 'on_failure["{}"] of workflow "Flow" must be a list of node names'
    entry = fallbacks({"a": Malformed("'b'", "value")})
    assert check(fields("a"), START, chain("a"), entry) == [
        ("bad-fallback", message.format("a"), "value")
    ]
    whole = Malformed("['a']", "on_failure")
    assert check(fields("a"), START, chain("a"), whole) == [
        ("bad-fallback", message.format("*"), "on_failure")
    ]


def test_a_malformed_on_failure_still_leaves_reachability_checked() -> None:
    found = check(fields("a", "b"), START, edges(fanout("a"), fanout("b")), Malformed("[]"))
    assert [rule for rule, _, _ in found] == ["bad-fallback", "unreachable"]


# --------------------------------------------------------------------------- joins
JOIN_FIELDS = fields("a", "b", "total")
JOIN_EDGES = edges(fanout("a", "b", "total"), fanout("b"), fanout("total"))


def test_unknown_join() -> None:
    assert check(JOIN_FIELDS, START, JOIN_EDGES, None, joins({"ghost": "a"})) == [
        (
            "unknown-join",
            'joins of workflow "Flow" names "ghost" as a join, which is not a node',
            ("join", "ghost"),
        )
    ]


def test_unknown_join_source() -> None:
    assert check(JOIN_FIELDS, START, JOIN_EDGES, None, joins({"total": "nobody"})) == [
        (
            "unknown-join-source",
            'join "total" of workflow "Flow" collects the fan-out of "nobody", which is not '
            "a node",
            ("join-source", "nobody"),
        )
    ]


def test_bad_joins() -> None:
    shape = (
        'joins of workflow "Flow" must map each join node to the node whose fan-out it '
        'collects ({"<join>": "<source>"}), got '
    )
    whole = Malformed("[('total', 'a')]", "joins")
    assert check(JOIN_FIELDS, START, JOIN_EDGES, None, whole) == [
        ("bad-joins", shape + "[('total', 'a')]", "joins")
    ]
    entry = joins({"total": Malformed("['a']", "value")})
    assert check(JOIN_FIELDS, START, JOIN_EDGES, None, entry) == [
        ("bad-joins", shape + "{'total': ['a']}", "value")
    ]


def test_an_unknown_join_is_reported_before_the_shape_of_its_source() -> None:
    found = check(JOIN_FIELDS, START, JOIN_EDGES, None, joins({"ghost": Malformed("['a']")}))
    assert [rule for rule, _, _ in found] == ["unknown-join"]


def test_join_is_source() -> None:
    assert check(JOIN_FIELDS, START, JOIN_EDGES, None, joins({"total": "total"})) == [
        (
            "join-is-source",
            'join "total" of workflow "Flow" cannot collect its own fan-out',
            ("join", "total"),
        )
    ]


def test_join_not_reached() -> None:
    assert check(JOIN_FIELDS, START, JOIN_EDGES, None, joins({"total": "b"})) == [
        (
            "join-not-reached",
            'join "total" of workflow "Flow" collects the fan-out of "b", but "b" does not '
            'reach "total"',
            ("join-source", "b"),
        )
    ]


def test_a_join_reached_through_a_loop_back_to_its_source() -> None:
    looped = edges(fanout("a", "b"), fanout("b", "a", "total"), fanout("total"))
    assert check(JOIN_FIELDS, START, looped, None, joins({"total": "a"})) == []


# --------------------------------------------------------------------------- unseen values
def test_unseen_values_skip_the_rules_that_need_them() -> None:
    broken = edges(fanout("a", "x"))  # an unknown target; "b" has no entry, is unreachable
    two = fields("a", "b")
    assert [r for r, _, _ in check(two, START, broken)] == [
        "unknown-target",
        "missing-entry",
        "unreachable",
    ]
    # Some entry of edges not seen: what is seen is checked, nothing is guessed.
    partial = edges(fanout("a", "x"), complete=False)
    assert [r for r, _, _ in check(two, START, partial)] == ["unknown-target"]
    # edges not seen at all: not even "no edges".
    assert check(two, START, UNSEEN) == []
    # start not seen: no reachability.
    assert [r for r, _, _ in check(two, UNSEEN, broken)] == ["unknown-target", "missing-entry"]
    # Some fallback not seen: no reachability either.
    partial_fallbacks = fallbacks({}, complete=False)
    found = check(two, START, edges(fanout("a"), fanout("b")), partial_fallbacks)
    assert found == []
    assert check(two, START, edges(fanout("a"), fanout("b")), UNSEEN) == []
    assert [r for r, _, _ in check(two, START, chain("a", "b"), None, UNSEEN)] == []


# --------------------------------------------------------------------------- order
def test_every_problem_in_a_fixed_order() -> None:
    """Fields, start, on_failure, edges, missing entries, joins, then reachability."""
    outline = Outline(
        WF,
        fields("a", "b", "c", "size", "edges", not_nodes={"size": "int"}),
        name("q", "start"),
        edges(fanout("a", "ghost"), fanout("b"), fanout("zz"), fanout("size"), fanout("edges")),
        fallbacks({"a": ["nope"]}),
        joins({"nobody": "a"}),
    )
    assert [p.rule for p in check_structure(outline)] == [
        "not-a-node",
        "reserved",
        "unknown-start",
        "unknown-fallback",
        "unknown-target",
        "unknown-source",
        "missing-entry",
        "unknown-join",
    ]
    found = check(fields("a", "b", "c"), START, edges(fanout("a", "ghost"), fanout("b")))
    assert [message for _, message, _ in found] == [
        'edge "a" -> "ghost" of workflow "Flow": "ghost" is not a node',
        'node "c" of workflow "Flow" has no entry in edges (use "c": [] for a terminal node)',
        'node "b" of workflow "Flow" is unreachable from start "a"',
        'node "c" of workflow "Flow" is unreachable from start "a"',
    ]


# --------------------------------------------------------------------------- the module
SOURCE = Path(_structure.__file__).read_text()


def test_every_rule_the_module_applies_has_a_test_here() -> None:
    applied = set(re.findall(r'self\.(?:say|unknown)\(\s*"([a-z-]+)"', SOURCE))
    assert applied <= set(RULES)
    tests = Path(__file__).read_text().split("# " + "-" * 75 + " the module")[0]
    tested = set(re.findall(r'"([a-z-]+)"', tests)) & applied
    assert applied == tested
    structural = {
        "no-nodes", "not-a-node", "reserved", "no-start", "unknown-start", "no-edges",
        "unknown-source", "unknown-target", "missing-entry", "bad-successors",
        "bad-route-key", "protocol-route-key", "unreachable", "unknown-fallback-source",
        "unknown-fallback", "bad-fallback", "unknown-join", "unknown-join-source",
        "join-not-reached",
        "join-is-source", "bad-joins",
    }  # fmt: skip
    assert applied == structural


def test_the_module_is_a_leaf() -> None:
    """The plugin runs it inside mypy: it imports only the standard library and `_rules`."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(SOURCE)):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    floxide_imports = {m for m in imported if m.split(".")[0] == "floxide"}
    assert floxide_imports == {"floxide._rules"}
    assert imported - floxide_imports <= {
        "__future__",
        "collections.abc",
        "dataclasses",
        "difflib",
        "enum",
        "typing",
    }


@pytest.mark.parametrize("value", [UNSEEN, None])
def test_nothing_declared_but_fields(value: Unseen | None) -> None:
    found = [r for r, _, _ in check(fields("a"), value, value)]
    assert found == ([] if value is UNSEEN else ["no-start", "no-edges", "missing-entry"])
