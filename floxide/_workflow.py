"""Workflows: `Workflow[Ctx, In, Out]` and the `@workflow` class decorator.

A workflow class names its nodes as annotated fields and wires them with the class
attributes `start`, `edges`, `on_failure` and `joins`. `@workflow` makes it a frozen attrs
class (typed constructor through `dataclass_transform`) and validates the graph once.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast, get_origin

import attrs
from typing_extensions import dataclass_transform

from floxide import _params
from floxide._checkpoint import resume_checkpointed, run_checkpointed
from floxide._errors import WorkflowDefinitionError
from floxide._graph import Graph, build_graph
from floxide._local import LocalRun
from floxide._node import Node
from floxide._rules import RULES
from floxide._step import WorkItem, first_output
from floxide._typeinfo import is_node_annotation, node_types, resolve
from floxide.checkpoints import CheckpointStore
from floxide.serde import check_exact

__all__ = ["Workflow", "workflow"]

Ctx = TypeVar("Ctx")
In = TypeVar("In")
Out = TypeVar("Out")
W = TypeVar("W", bound="Workflow[Any, Any, Any]")

Successors = Sequence[str] | Mapping[Any, Sequence[str]]


class Workflow(Generic[Ctx, In, Out]):
    """Base of every workflow: `Workflow[Ctx, In, Out]`; decorate subclasses with `@workflow`.

    Class attributes: `start` (the first node's name), `edges` (one entry per node: a list
    of successors, `[]` for a terminal, or a routing table `{Variant: [names]}`),
    `on_failure` (fallbacks, given the failing node's input), `joins` (`{join: source}`)
    and `max_concurrency` (bound on concurrently running items in one process).
    """

    start: ClassVar[str]
    edges: ClassVar[Mapping[str, Successors]]
    on_failure: ClassVar[Mapping[str, Sequence[str]]] = {}
    joins: ClassVar[Mapping[str, str]] = {}
    max_concurrency: ClassVar[int] = 1000
    __floxide_graph__: ClassVar[Graph]

    @property
    def graph(self) -> Graph:
        """The validated graph of this workflow's class."""
        return type(self).__floxide_graph__

    @property
    def nodes(self) -> Mapping[str, Node[Any, Any, Any]]:
        """Node instances by field name."""
        found: dict[str, Node[Any, Any, Any]] | None = self.__dict__.get("_floxide_nodes")
        if found is None:
            found = {n: getattr(self, n) for n in self.graph.node_names}
            object.__setattr__(self, "_floxide_nodes", found)
        return found

    def __attrs_post_init__(self) -> None:
        graph = type(self).__dict__.get("__floxide_graph__")
        if graph is None:
            raise WorkflowDefinitionError(
                type(self).__name__, [f'decorate "{type(self).__name__}" with @workflow']
            )
        bad = [
            RULES["not-a-node"].format(wf=graph.name, name=n, annotation=repr(getattr(self, n)))
            for n in graph.node_names
            if not isinstance(getattr(self, n), Node)
        ]
        if bad:
            raise WorkflowDefinitionError(graph.name, bad)

    def _local_run(self, ctx: Ctx, concurrency: int | None) -> LocalRun:
        run = LocalRun(
            self.graph,
            self.nodes,
            ctx,
            concurrency=concurrency if concurrency is not None else self.max_concurrency,
        )
        return run

    def _check_call(self, input: object, timeout: float | None) -> None:
        """Refuse, before any node runs, an input that does not fit `In` exactly and a
        timeout that is no number of seconds (`ValueError` / `TypeError`)."""
        _params.timeout("timeout", timeout)
        check_exact(input, self.graph.workflow_types()[1], what=f"input of {self.graph.name}")

    async def run(
        self,
        ctx: Ctx,
        input: In,
        *,
        timeout: float | None = None,
        concurrency: int | None = None,
    ) -> Out:
        """Run every branch to completion; return the first terminal output in branch order.

        Raises `NodeError` when a node fails without a fallback, `NoOutputError` when no
        branch reached a terminal node, and `RunTimeoutError` after `timeout` seconds.
        """
        self._check_call(input, timeout)
        run = self._local_run(ctx, concurrency)
        run.ready.append(WorkItem(0, self.graph.start, input))
        outputs = await run.execute(timeout)
        result: Out = first_output(self.graph.name, outputs)
        return result

    async def run_all(
        self,
        ctx: Ctx,
        input: In,
        *,
        timeout: float | None = None,
        concurrency: int | None = None,
    ) -> list[Out]:
        """Run every branch to completion; return every terminal output in branch order."""
        self._check_call(input, timeout)
        run = self._local_run(ctx, concurrency)
        run.ready.append(WorkItem(0, self.graph.start, input))
        outputs = await run.execute(timeout)
        return [value for _, value in outputs]

    async def run_with_checkpoint(
        self,
        ctx: Ctx,
        input: In,
        *,
        store: CheckpointStore,
        run_id: str | None = None,
        timeout: float | None = None,
    ) -> Out:
        """Like `run`, committing the run's state to `store` after every step."""
        _params.timeout("timeout", timeout)
        result: Out = await run_checkpointed(
            self, ctx, input, store=store, run_id=run_id, timeout=timeout
        )
        return result

    async def resume(
        self, store: CheckpointStore, run_id: str, *, timeout: float | None = None
    ) -> Out:
        """Finish the checkpointed run `run_id` from its last commit (after a crash).

        The run's own `timeout` (given when it started) applies again, counted from the
        resume; `timeout` here replaces it for this resume.
        """
        result: Out = await resume_checkpointed(self, store, run_id, timeout)
        return result

    def to_dot(self) -> str:
        """The graph in Graphviz DOT."""
        return self.graph.to_dot()

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart."""
        return self.graph.to_mermaid()


def _is_classvar(annotation: object, module: str) -> bool:
    if isinstance(annotation, str):
        return annotation.replace("typing.", "").startswith("ClassVar")
    return get_origin(annotation) is ClassVar


def _not_nodes(module: str, annotations: Mapping[str, Any]) -> dict[str, str]:
    """The fields whose annotation is a class that is not a Node, with that annotation shown."""
    found: dict[str, str] = {}
    for field, annotation in annotations.items():
        tp = resolve(annotation, module)
        if tp is not Any and not is_node_annotation(tp, Node):
            found[field] = _show(annotation)
    return found


def _show(annotation: object) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return str(annotation)


@dataclass_transform(frozen_default=True, field_specifiers=(attrs.field,))
def workflow(cls: type[W]) -> type[W]:
    """Make `cls` a frozen attrs class whose node fields are constructor arguments, and
    validate its graph; raises `WorkflowDefinitionError` listing every problem."""
    if not (isinstance(cls, type) and issubclass(cls, Workflow)):
        raise WorkflowDefinitionError(
            getattr(cls, "__name__", repr(cls)), ["@workflow decorates subclasses of Workflow"]
        )
    name, module = cls.__name__, cls.__module__
    own = {
        k: v
        for k, v in inspect.get_annotations(cls).items()
        if not _is_classvar(v, module)
    }
    not_nodes = _not_nodes(module, own)
    declared = {
        k: getattr(cls, k) for k in ("start", "edges", "on_failure", "joins") if hasattr(cls, k)
    }
    new = attrs.frozen(cls, slots=False)
    attributes = attrs.fields(cast(Any, new))
    fields = [f.name for f in attributes]
    annotations = {f.name: f.type for f in attributes}
    graph = build_graph(
        name,
        module,
        fields,
        annotations,
        declared,
        not_nodes,
        workflow_types=lambda: node_types(new, Workflow),
    )
    new.__floxide_graph__ = graph
    return new
