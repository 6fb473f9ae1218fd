"""Property: on random graphs the trio executor agrees with a tiny reference interpreter.

The graphs mix fan-outs (`NextAll`), class routes, `Hold`, failures with and without
fallbacks, and joins (nested ones too). Each node sleeps a pseudo-random time so the
executor's scheduling differs from the reference's strict FIFO order; the outputs (values
and their order) must not.

The reference tracks join scopes differently from the executor: it closes a scope when no
queued item carries it any more, instead of keeping counters.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any

import attrs
import trio
import trio.testing
from hypothesis import event, given
from hypothesis import strategies as st

from floxide import Hold, Next, NextAll, Node, NodeError, Transition, Workflow, workflow


class Small(int):
    """Route variant: an even value."""


class Large(int):
    """Route variant: an odd value."""


KINDS = ("map", "fan", "hold", "route", "fail")


def behave(kind: str, param: int, x: Any) -> Transition[Any]:
    """The pure behaviour of every node kind (raises for 'fail' on some inputs)."""
    if kind == "map":
        return Next((x * 3 + param) % 97)
    if kind == "fan":
        return NextAll([(x + i) % 97 for i in range(param % 4)])
    if kind == "hold":
        return Hold() if x % 3 == 0 else Next(x + 1)
    if kind == "route":
        return Next(Small(x) if x % 2 == 0 else Large(x))
    if kind == "fail":
        if x % 4 == 1:
            raise ValueError(f"fail on {x}")
        return Next(x + 2)
    if kind == "sum":
        return Next(sum(int(v) for v in x) % 97)
    raise AssertionError(kind)


@attrs.frozen
class Behave(Node[None, Any, Any]):
    kind: str
    param: int
    seed: int

    async def process(self, ctx: None, input: Any) -> Transition[Any]:
        digest = hashlib.blake2b(f"{self.seed}:{self.kind}:{input!r}".encode()).digest()
        await trio.sleep(digest[0] / 1000)
        return behave(self.kind, self.param, input)


@attrs.frozen
class Spec:
    kinds: list[str]
    params: list[int]
    succ: list[list[int]]  # fan-out list (non-route nodes)
    routes: list[tuple[list[int], list[int]]]  # (Small targets, Large targets) for route nodes
    fallback: list[list[int]]
    joins: dict[int, int]  # join node -> source node


@st.composite
def graphs(draw: st.DrawFn) -> Spec:
    n = draw(st.integers(2, 7))
    kinds = [draw(st.sampled_from(KINDS)) for _ in range(n)]
    params = [draw(st.integers(0, 50)) for _ in range(n)]
    succ: list[list[int]] = []
    routes: list[tuple[list[int], list[int]]] = []
    fallback: list[list[int]] = []
    for i in range(n):
        later = list(range(i + 1, n))
        pick = st.lists(st.sampled_from(later), max_size=2, unique=True) if later else st.just([])
        succ.append(draw(pick))
        routes.append((draw(pick), draw(pick)))
        fallback.append(draw(pick) if kinds[i] == "fail" else [])
    # Make every node reachable: give each node without a predecessor an earlier one.
    for j in range(1, n):
        reached = any(
            j in (routes[i][0] + routes[i][1] if kinds[i] == "route" else succ[i])
            or j in fallback[i]
            for i in range(j)
        )
        if not reached:
            i = draw(st.integers(0, j - 1))
            if kinds[i] == "route":
                routes[i][draw(st.integers(0, 1))].append(j)
            else:
                succ[i].append(j)
    spec = Spec(kinds, params, succ, routes, fallback, {})
    # Joins: a node j reachable from an earlier source s collects s's fan-out.
    for s in range(n):
        if draw(st.booleans()):
            candidates = sorted(_reach(spec, s) - {s} - set(spec.joins) - set(spec.joins.values()))
            candidates = [c for c in candidates if c not in spec.joins.values()]
            if candidates and s not in spec.joins:
                j = draw(st.sampled_from(candidates))
                spec.joins[j] = s
                spec.succ[j] = _targets(spec, j)
                spec.kinds[j] = "sum"
    return spec


def _targets(spec: Spec, i: int) -> list[int]:
    if spec.kinds[i] == "route":
        return spec.routes[i][0] + spec.routes[i][1]
    return spec.succ[i]


def _reach(spec: Spec, s: int) -> set[int]:
    seen, stack = set(), [s]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        stack.extend(_targets(spec, i) + spec.fallback[i])
    return seen


def build(spec: Spec, seed: int) -> Workflow[None, int, Any]:
    n = len(spec.kinds)
    name = [f"n{i}" for i in range(n)]
    edges: dict[str, Any] = {}
    for i in range(n):
        if spec.kinds[i] == "route":
            small, large = spec.routes[i]
            edges[name[i]] = {Small: [name[t] for t in small], Large: [name[t] for t in large]}
        else:
            edges[name[i]] = [name[t] for t in spec.succ[i]]
    ns: dict[str, Any] = {
        "__annotations__": {name[i]: Behave for i in range(n)},
        "__module__": __name__,
        "start": "n0",
        "edges": edges,
        "on_failure": {name[i]: [name[t] for t in fb] for i, fb in enumerate(spec.fallback) if fb},
        "joins": {name[j]: name[s] for j, s in spec.joins.items()},
    }
    cls = workflow(type("Random", (Workflow,), ns))
    nodes = {name[i]: Behave(spec.kinds[i], spec.params[i], seed) for i in range(n)}
    result: Workflow[None, int, Any] = cls(**nodes)
    return result


# ------------------------------------------------------------------ reference interpreter
FAIL = "FAIL"


def reference(spec: Spec, x: int) -> list[Any] | str:
    """Sequential FIFO interpreter with scope closing by scanning live items."""
    sources = {s: j for j, s in spec.joins.items()}  # source -> join (one join per source)
    queue: deque[tuple[int, Any, tuple[int, ...], tuple[tuple[int, int], ...]]] = deque(
        [(0, x, (), ())]
    )
    scopes: dict[int, dict[str, Any]] = {}
    outputs: list[tuple[tuple[int, ...], Any]] = []
    next_scope = 0

    def send(t: int, v: Any, p: tuple[int, ...], stack: tuple[tuple[int, int], ...]) -> bool:
        """Queue an item, or add it to the innermost open scope of its join's source."""
        if t in spec.joins:
            owner = [sid for sid, s in reversed(stack) if s == spec.joins[t]]
            if not owner:
                return False
            scopes[owner[0]]["got"].append((p, v))
        else:
            queue.append((t, v, p, stack))
        return True

    while queue:
        node, value, pos, stack = queue.popleft()
        kind = spec.kinds[node]
        try:
            tr = behave(kind, spec.params[node], value)
        except ValueError:
            fb = spec.fallback[node]
            if not fb:
                return FAIL
            for k, t in enumerate(fb):
                if not send(t, value, pos if len(fb) == 1 else (*pos, k), stack):
                    return FAIL
            tr = None
        if tr is not None and not isinstance(tr, Hold):
            values = [tr.value] if isinstance(tr, Next) else list(tr.values)  # type: ignore[union-attr]
            child_stack = stack
            if node in sources:
                sid = next_scope
                next_scope += 1
                scopes[sid] = {"source": node, "pos": pos, "parent": stack, "got": []}
                child_stack = (*stack, (sid, node))
            pairs = []
            for v in values:
                if kind == "route":
                    pairs.append((v, spec.routes[node][0 if isinstance(v, Small) else 1]))
                else:
                    pairs.append((v, spec.succ[node]))
            total = sum(len(t) or 1 for _, t in pairs)
            k = 0
            for v, targets in pairs:
                if not targets:
                    outputs.append((pos if total == 1 else (*pos, k), v))
                    k += 1
                    continue
                for t in targets:
                    p = pos if total == 1 else (*pos, k)
                    k += 1
                    if not send(t, v, p, child_stack):
                        return FAIL
        # Close every scope that no queued item carries any more (inner ones first).
        changed = True
        while changed:
            changed = False
            live = {sid for item in queue for sid, _ in item[3]}
            for sid in sorted(scopes, reverse=True):
                if sid not in live:
                    sc = scopes.pop(sid)
                    got = [v for _, v in sorted(sc["got"], key=lambda e: e[0])]
                    queue.append((sources[sc["source"]], got, sc["pos"], sc["parent"]))
                    changed = True
                    break
    outputs.sort(key=lambda e: e[0])
    return [v for _, v in outputs]


@given(spec=graphs(), x=st.integers(0, 96), seed=st.integers(0, 2**16))
def test_executor_agrees_with_reference(spec: Spec, x: int, seed: int) -> None:
    expected = reference(spec, x)
    event(f"joins: {len(spec.joins)}, failed: {expected == FAIL}")
    if expected != FAIL:
        event(f"outputs: {min(len(expected), 5)}+")
    wf = build(spec, seed)

    async def main() -> list[Any] | str:
        try:
            return await wf.run_all(None, x)
        except NodeError:
            return FAIL

    got = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert got == expected


@given(spec=graphs(), x=st.integers(0, 96))
def test_concurrency_bound_does_not_change_results(spec: Spec, x: int) -> None:
    wf = build(spec, 7)

    async def main(limit: int) -> list[Any] | str:
        try:
            return await wf.run_all(None, x, concurrency=limit)
        except NodeError:
            return FAIL

    clock = trio.testing.MockClock(autojump_threshold=0)
    assert trio.run(main, 1, clock=clock) == trio.run(main, 1000, clock=clock)
