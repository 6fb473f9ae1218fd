"""Property: random graphs give the same outputs locally and on every backend.

The graphs (fan-outs, class routes, `Hold`, failures with and without fallbacks, nested
joins) and the reference interpreter come from `test_properties`; here each graph runs in
process, then through an orchestrator and a worker pool on memory, SQLite and Redis.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import attrs
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floxide import NodeError, Transition, Workflow, workflow
from floxide._node import Node
from floxide.backends import Backend, open_backend
from floxide.distributed import Orchestrator, Worker
from tests.test_properties import FAIL, Large, Small, Spec, behave, graphs, reference


@attrs.frozen
class Quick(Node[None, Any, Any]):
    """The node behaviours of `test_properties`, without their scheduling sleeps."""

    kind: str
    param: int

    async def process(self, ctx: None, input: Any) -> Transition[Any]:
        await trio.sleep(0)
        return behave(self.kind, self.param, input)


def build(spec: Spec) -> Workflow[None, int, Any]:
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
        "__annotations__": {name[i]: Quick for i in range(n)},
        "__module__": __name__,
        "start": "n0",
        "edges": edges,
        "on_failure": {name[i]: [name[t] for t in fb] for i, fb in enumerate(spec.fallback) if fb},
        "joins": {name[j]: name[s] for j, s in spec.joins.items()},
    }
    cls = workflow(type(f"Random{uuid.uuid4().hex[:8]}", (Workflow,), ns))
    result: Workflow[None, int, Any] = cls(
        **{name[i]: Quick(spec.kinds[i], spec.params[i]) for i in range(n)}
    )
    return result


async def outcome_locally(wf: Workflow[None, int, Any], x: int) -> list[Any] | str:
    try:
        return await wf.run_all(None, x)
    except NodeError:
        return FAIL


async def outcome_distributed(
    wf: Workflow[None, int, Any], backend: Backend, x: int
) -> list[Any] | str:
    orch = Orchestrator(wf, backend)
    worker = Worker(wf, backend, concurrency=3, lease_seconds=5.0, idle_wait=0.1)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        run_id = await orch.start_run(None, x)
        try:
            return await orch.results(run_id, timeout=60)
        except NodeError:
            return FAIL
        finally:
            worker.stop()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=graphs(), x=st.integers(0, 96))
def test_same_outputs_locally_and_distributed(backend_url: str, spec: Spec, x: int) -> None:
    wf = build(spec)

    async def main() -> tuple[list[Any] | str, list[Any] | str]:
        backend = open_backend(backend_url)
        try:
            return await outcome_locally(wf, x), await outcome_distributed(wf, backend, x)
        finally:
            await backend.aclose()

    local, distributed = trio.run(main)
    assert local == reference(spec, x)
    assert distributed == local


def test_builder_uses_declared_nodes(tmp_path: Path) -> None:
    spec = Spec(["map", "map"], [1, 2], [[1], []], [([], []), ([], [])], [[], []], {})
    wf = build(spec)
    assert list(wf.graph.node_names) == ["n0", "n1"]
    assert trio.run(outcome_locally, wf, 3) == reference(spec, 3)
