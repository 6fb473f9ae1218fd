"""The wording of every workflow-definition rule.

One list of rules, two enforcers, so a user sees the same sentence from `mypy` in CI and
from Python at import time. The structural rules are applied by `_structure` for both the
runtime validation (`_graph.py`) and the mypy plugin (`floxide_mypy`); the type rules only
the plugin can check fully, and it formats these same templates.
"""

from __future__ import annotations

from typing import Final

__all__ = ["RESERVED", "RULES"]

RESERVED: Final = frozenset({"start", "edges", "on_failure", "joins"})

RULES: Final[dict[str, str]] = {
    # structure (floxide-graph)
    "no-nodes": 'workflow "{wf}" declares no nodes',
    "not-a-node": 'field "{name}" of workflow "{wf}" is not a Node (annotated {annotation})',
    "reserved": (
        'node field "{name}" of workflow "{wf}" uses a reserved name '
        "(start, edges, on_failure and joins are reserved)"
    ),
    "no-start": 'workflow "{wf}" must declare start = "<node name>"',
    "unknown-start": 'start = "{name}" is not a node of workflow "{wf}"',
    "no-edges": 'workflow "{wf}" must declare edges = {{"<node>": [...], ...}}',
    "unknown-source": 'edges of workflow "{wf}" has an entry for "{name}", which is not a node',
    "unknown-target": 'edge "{src}" -> "{name}" of workflow "{wf}": "{name}" is not a node',
    "missing-entry": (
        'node "{name}" of workflow "{wf}" has no entry in edges '
        '(use "{name}": [] for a terminal node)'
    ),
    "bad-successors": (
        'edges["{src}"] of workflow "{wf}" must be a list of node names or a routing '
        "table {{variant: [names]}}, got {got}"
    ),
    "bad-route-key": (
        'route key {key} of "{src}" in workflow "{wf}" must be a class, an enum member '
        "or a literal (str, int, bool, bytes, None)"
    ),
    "protocol-route-key": (
        'route key {key} of "{src}" in workflow "{wf}" is a Protocol that is not '
        "@runtime_checkable: no output can be matched against it"
    ),
    "did-you-mean": ' (did you mean "{near}"?)',
    "unreachable": 'node "{name}" of workflow "{wf}" is unreachable from start "{start}"',
    "unknown-fallback-source": (
        'on_failure of workflow "{wf}" has an entry for "{name}", which is not a node'
    ),
    "unknown-fallback": 'fallback "{src}" -> "{name}" of workflow "{wf}": "{name}" is not a node',
    "bad-fallback": 'on_failure["{src}"] of workflow "{wf}" must be a list of node names',
    "unknown-join": 'joins of workflow "{wf}" names "{name}" as a join, which is not a node',
    "unknown-join-source": (
        'join "{name}" of workflow "{wf}" collects the fan-out of "{src}", which is not a node'
    ),
    "join-not-reached": (
        'join "{name}" of workflow "{wf}" collects the fan-out of "{src}", '
        'but "{src}" does not reach "{name}"'
    ),
    "join-is-source": 'join "{name}" of workflow "{wf}" cannot collect its own fan-out',
    "bad-joins": (
        'joins of workflow "{wf}" must map each join node to the node whose fan-out it '
        'collects ({{"<join>": "<source>"}}), got {got}'
    ),
    # types (floxide-edge / floxide-route); only the mypy plugin can check these fully
    "edge-type": (
        'edge "{src}" -> "{dst}" of workflow "{wf}": "{src}" outputs "{out}" '
        'but "{dst}" accepts "{inp}"'
    ),
    "missing-join": (
        'edge "{src}" -> "{dst}" of workflow "{wf}": "{dst}" accepts "{inp}", a Sequence of '
        'what "{src}" outputs ("{out}"): a joins entry is missing '
        '(joins = {{"{dst}": "<the node that fans out>"}})'
    ),
    "route-type": (
        'route {variant} of "{src}" -> "{dst}" in workflow "{wf}": '
        '"{dst}" accepts "{inp}", not "{out}"'
    ),
    "route-never": 'route {variant} of "{src}" in workflow "{wf}" can never match: "{src}" outputs "{out}"',
    "route-shadowed": (
        'route {variant} of "{src}" in workflow "{wf}" can never match: '
        'earlier routes already take every "{out}"'
    ),
    "route-missing": 'routing table of "{src}" in workflow "{wf}" is not exhaustive: unhandled {missing}',
    "start-type": 'start node "{name}" of workflow "{wf}" accepts "{inp}", but the workflow input is "{win}"',
    "terminal-type": (
        'terminal node "{name}" of workflow "{wf}" outputs "{out}", '
        'but the workflow output is "{wout}"'
    ),
    "context-type": 'node "{name}" needs context "{need}", but workflow "{wf}" provides "{have}"',
    "fallback-type": (
        'fallback "{src}" -> "{dst}" of workflow "{wf}": the fallback receives "{src}"\'s '
        'input "{inp}" but accepts "{accepts}"'
    ),
    "join-type": (
        'join "{name}" of workflow "{wf}" accepts "{inp}", but receives a Sequence of "{out}"'
    ),
    # static checking only: a node typed with Any, whose edges cannot be checked
    "any-node": (
        'node "{name}" of workflow "{wf}" is typed "{annotation}": edges around it are not '
        "type-checked (Any accepts and outputs anything)"
    ),
    # static checking only: a value mypy cannot read (the runtime still validates it)
    "not-static": (
        'mypy cannot check {what} of workflow "{wf}" ({why}); '
        "it is validated when the class is created"
    ),
}
