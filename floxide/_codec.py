"""The one codec: a run's values as JSON bytes, by their declared types, and back.

Checkpointed runs and distributed workers and orchestrators write the same layouts:

    work item     {"node", "input", "position", "scopes", "attempt"}  (stored under its id)
    context       the context itself, as the workflow's `Ctx`
    run input     the input itself, as the workflow's `In`
    contribution  {"join", "node", "position", "value"}  (a value collected for a join)
    output        {"node", "position", "value"}  (a terminal output)
    join scope    {"source", "joins", "position", "parent", "open"}

A work item's input is written as its node's `In`; an output or contribution as its
producer's `Out` (or, when that is not declared, the join's element type or the
workflow's `Out`); the context as the workflow's `Ctx` (`DeclaredTypes`). A fired join
item may carry `"collect"` (the key of the collection it reads its input from) instead of
`"input"`: backends store join values apart so that a step's commit never rewrites what a
join collected so far; checkpoints keep them with the join scope.

Stored data is untrusted: every decoder checks the layout and structures each value by
its declared type. Every failure, either way, raises the codec's `error` class
(`CheckpointError` for checkpoints, `PayloadError` for backends) naming the field path,
e.g. ``stored value does not fit int: ... @ $.items[3].input.value``.

Encoding is on the hot path of every durable step, so a `Codec` (one per run, worker or
orchestrator) looks up the converter's hook once per declared type (hooks registered
before it is made are honoured), writes the JSON around each value from text made once
per node, builds error paths only on failure, and uses serde's one compact encoder.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable
from operator import itemgetter
from typing import Any, ClassVar

import floxide.serde as serde
from floxide._errors import CheckpointError, FloxideError
from floxide._graph import Graph
from floxide._step import JoinScope, Position, ScopeRef, WorkItem, in_branch_order
from floxide._typeinfo import element_type, known
from floxide.serde import _encode_json

__all__ = ["Codec", "DeclaredTypes", "ItemPayload", "output_json"]

_Hook = Callable[[Any], Any]
_StructureHook = Callable[[Any, Any], Any]
_EMPTY_TAIL = ',"position":[],"scopes":[],"attempt":1}'
_JSON_ERRORS = serde._JSON_ERRORS
_UNKNOWN: Any = object()
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]
)
"""The JSON value at an index of a text, and where it ends (`json.loads` without its
whitespace handling: used on the compact JSON the codec writes)."""


class _Fields:
    """The required fields of one layout, read at once (`get`) in this order."""

    __slots__ = ("get", "names")

    def __init__(self, *names: str) -> None:
        self.names = names
        self.get: Callable[[Any], tuple[Any, ...]] = itemgetter(*names)


_ITEM = _Fields("node", "position", "scopes")  # and "attempt", "input" or "collect"
_CONTRIBUTION = _Fields("join", "node", "position", "value")
_OUTPUT = _Fields("node", "position", "value")
_SCOPE = _Fields("source", "joins", "position", "parent", "open")


class DeclaredTypes:
    """The types one graph's values are written as; built once per graph (`of`)."""

    _instances: ClassVar[dict[Graph, DeclaredTypes]] = {}

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.ctx_type, self.in_type, self.out_type = graph.workflow_types()
        self.node_in: dict[str, Any] = {}
        self.node_out: dict[str, Any] = {}
        for n in graph.node_names:
            _, self.node_in[n], self.node_out[n] = graph.node_types(n)
        self.join_element = {j: element_type(self.node_in[j]) for j in graph.joins}
        # and the JSON of each node's work items up to their input, made once per graph
        self.item_heads = {n: _item_head(n) for n in graph.node_names}

    @classmethod
    def of(cls, graph: Graph) -> DeclaredTypes:
        """The instance for `graph`, built on first use."""
        found = cls._instances.get(graph)
        if found is None:
            found = cls._instances[graph] = cls(graph)
        return found

    def value_type(self, producer: str, join: str | None = None) -> Any:
        """The type an output of `producer` (or its contribution to `join`) is written as."""
        tp = self.node_out.get(producer, Any)
        if known(tp):
            return tp
        return self.join_element.get(join, Any) if join is not None else self.out_type


class ItemPayload:
    """A decoded work item; `collect` names the collection a fired join reads its input
    from (the item's input is then None until it is read)."""

    __slots__ = ("collect", "item")

    def __init__(self, item: WorkItem, collect: str | None = None) -> None:
        self.item = item
        self.collect = collect


def output_json(raw: bytes, error: type[FloxideError] = CheckpointError) -> str:
    """The JSON text of a stored output's value, for showing it without the declared types."""
    data = serde.loads(raw, what="an output", error=error)
    if not (isinstance(data, dict) and "value" in data):
        raise error("required field missing @ $.output.value")
    return serde.dumps(data["value"], path="$.output.value", error=error).decode()


def _item_head(node: str) -> str:
    """The JSON of a work item of `node` up to its input."""
    return '{"node":' + _encode_json(node) + ',"input":'


def _tail(item: WorkItem) -> str:
    """The JSON of a work item after its input (or collection key); `_EMPTY_TAIL` is that
    of a first-attempt item on the root branch."""
    return (
        f',"position":{_encode_json(item.position)},"scopes":'
        f'{_encode_json(item.scopes)},"attempt":{_encode_json(item.attempt)}}}'
    )


def _of(run: str | None) -> str:
    return f" of run {run!r}" if run is not None else ""


class Codec:
    """Encodes and decodes the values of runs of one graph.

    Make one per run (checkpoints) or per worker / orchestrator: its hooks are looked up
    on first use of each type. `error` is what every failure raises.
    """

    def __init__(self, graph: Graph, error: type[FloxideError] = CheckpointError) -> None:
        self.graph = graph
        self.types = DeclaredTypes.of(graph)
        self.error = error
        self._hooks: dict[int, tuple[Any, _Hook]] = {}
        self._structure_hooks: dict[int, tuple[Any, _StructureHook | None]] = {}
        self._ctx_hook = self.hook(self.types.ctx_type)

    def hook(self, tp: Any) -> _Hook:
        """`serde.unstructure` for values declared `tp`, without its per-call dispatch."""
        found = self._hooks.get(id(tp))
        if found is not None:
            return found[1]
        converter = serde.converter
        hook: _Hook = converter.get_unstructure_hook(tp) if known(tp) else converter.unstructure
        self._hooks[id(tp)] = (tp, hook)  # holding `tp` keeps its id from being reused
        return hook

    def _data(self, value: object, tp: Any, path: Callable[[], str]) -> Any:
        try:
            return self.hook(tp)(value)
        except Exception as exc:
            raise serde._cannot_unstructure(value, tp, path(), exc, self.error) from exc

    # -- encoding -----------------------------------------------------------------------
    def context_text(self, ctx: object) -> str:
        """The context as JSON text (checkpoints compare it step to step)."""
        try:
            data = self._ctx_hook(ctx)
        except Exception as exc:
            raise serde._cannot_unstructure(
                ctx, self.types.ctx_type, "$.context", exc, self.error
            ) from exc
        if type(data) is dict and not data:
            return "{}"  # a context with no fields (or all of them unserialized)
        try:
            return _encode_json(data)
        except _JSON_ERRORS as exc:
            raise serde._cannot_dump("$.context", exc, self.error) from exc

    def encode_context(self, ctx: object, text: str | None = None) -> bytes:
        """The context as bytes (`text`: its `context_text`, when already made)."""
        try:
            return (self.context_text(ctx) if text is None else text).encode()
        except _JSON_ERRORS as exc:
            raise serde._cannot_dump("$.context", exc, self.error) from exc

    def encode_input(self, value: object) -> bytes:
        """A run's input, as the workflow's `In`."""
        data = self._data(value, self.types.in_type, lambda: "$.input")
        return serde.dumps(data, path="$.input", error=self.error)

    def encode_item(self, item: WorkItem, collect: str | None = None) -> bytes:
        """A work item; with `collect`, a fired join item that reads its input from there."""
        if collect is not None:
            return self._collecting_item(item, collect)
        node = item.node
        types = self.types
        tp = types.node_in.get(node, Any)
        found = self._hooks.get(id(tp))
        try:
            data = (found[1] if found is not None else self.hook(tp))(item.input)
        except Exception as exc:
            raise serde._cannot_unstructure(
                item.input, tp, f"$.items[{item.id}].input", exc, self.error
            ) from exc
        try:
            head = types.item_heads.get(node) or _item_head(node)
            if item.position or item.scopes or item.attempt != 1:
                return (head + _encode_json(data) + _tail(item)).encode()
            return (head + _encode_json(data) + _EMPTY_TAIL).encode()
        except _JSON_ERRORS as exc:
            raise serde._cannot_dump(f"$.items[{item.id}].input", exc, self.error) from exc

    def _collecting_item(self, item: WorkItem, collect: str) -> bytes:
        head = '{"node":' + _encode_json(item.node) + ',"collect":' + _encode_json(collect)
        try:
            return (head + _tail(item)).encode()
        except _JSON_ERRORS as exc:
            raise serde._cannot_dump(f"$.items[{item.id}]", exc, self.error) from exc

    def encode_contribution(self, producer: str, join: str, pos: Position, value: object) -> bytes:
        """A value `producer` contributed to `join` from branch `pos`."""
        tp = self.types.value_type(producer, join)
        data = self._data(value, tp, lambda: f"$.joins[{join}].value")
        try:
            return (
                f'{{"join":{_encode_json(join)},"node":{_encode_json(producer)},'
                f'"position":{_encode_json(pos)},"value":{_encode_json(data)}}}'
            ).encode()
        except _JSON_ERRORS as exc:
            raise serde._cannot_dump(f"$.joins[{join}].value", exc, self.error) from exc

    def encode_output(self, producer: str, pos: Position, value: object) -> bytes:
        """A terminal output of `producer` on branch `pos`."""
        tp = self.types.value_type(producer)
        data = self._data(value, tp, lambda: f"$.outputs[{producer}].value")
        try:
            return (
                f'{{"node":{_encode_json(producer)},"position":{_encode_json(pos)},'
                f'"value":{_encode_json(data)}}}'
            ).encode()
        except _JSON_ERRORS as exc:
            raise serde._cannot_dump(f"$.outputs[{producer}].value", exc, self.error) from exc

    def encode_scope(self, scope: JoinScope) -> bytes:
        """An open join scope (without what it collected: see contributions)."""
        return serde.dumps(
            {
                "source": scope.source,
                "joins": scope.joins,
                "position": scope.position,
                "parent": scope.parent,
                "open": scope.open,
            },
            error=self.error,
        )

    # -- decoding -----------------------------------------------------------------------
    # The happy path reads every field at once and checks types inline; messages and
    # field paths are made only when something does not fit.
    def _loads(self, raw: bytes | str, what: Callable[[], str]) -> Any:
        """`serde.loads`, faster on the compact JSON the codec writes."""
        try:
            text = raw if isinstance(raw, str) else raw.decode()
            data, end = _scan(text, 0)
            if end == len(text):
                return data
        except Exception:  # anything unusual: serde.loads decides and explains
            pass
        return serde.loads(raw, what=what(), error=self.error)

    def _structure(self, data: object, tp: Any, path: Callable[[], str]) -> Any:
        """`serde.structure`, the hook looked up once per type."""
        found = self._structure_hooks.get(id(tp))
        if found is None:
            hook = serde.converter.get_structure_hook(tp) if known(tp) else None
            found = self._structure_hooks[id(tp)] = (tp, hook)
        hook = found[1]
        if hook is None:
            return data
        try:
            return hook(data, tp)
        except Exception as exc:
            raise serde._cannot_structure(tp, path(), exc, self.error) from exc

    def _take(self, fields: _Fields, data: Any, where: Callable[[], str]) -> tuple[Any, ...]:
        """The values of `fields` in `data` (an object), in order."""
        try:
            return fields.get(data)
        except (KeyError, TypeError):  # TypeError: not an object
            pass
        path = where()
        if not isinstance(data, dict):
            raise self.error(f"expected an object @ {path}, got {type(data).__name__}")
        missing = next(n for n in fields.names if n not in data)
        raise self.error(f"required field missing @ {path}.{missing}")

    def _position(self, data: Any, path: Callable[[], str]) -> Position:
        if type(data) is list:
            for x in data:
                if type(x) is not int:
                    break
            else:
                return tuple(data)
        raise self.error(f"expected a branch position (list of integers) @ {path()}")

    def _refs(self, data: Any, path: Callable[[], str]) -> tuple[ScopeRef, ...]:
        if type(data) is not list:
            raise self.error(f"expected a list of join scopes @ {path()}")
        out: list[ScopeRef] = []
        for k, ref in enumerate(data):
            if not (
                type(ref) is list and len(ref) == 2 and type(ref[0]) is str and type(ref[1]) is str
            ):
                raise self.error(f"expected [scope id, node] @ {path()}[{k}]")
            out.append((ref[0], ref[1]))
        return tuple(out)

    def decode_context(self, raw: bytes | str, run: str | None = None) -> Any:
        """The context of run `run` (named in messages)."""
        data = self._loads(raw, lambda: f"the context{_of(run)}")
        return self._structure(data, self.types.ctx_type, lambda: "$.context")

    def decode_item(self, key: str, raw: bytes, run: str | None = None) -> WorkItem:
        """Work item `key` with its input (as checkpoints store every item)."""
        return self._item(key, raw, run, None, collected=False).item

    def decode_leased_item(
        self, key: str, raw: bytes, run: str | None, attempt: int
    ) -> ItemPayload:
        """Work item `key` as a backend leased it: its `attempt` is the backend's count, and
        a fired join item may name the collection its input is read from."""
        return self._item(key, raw, run, attempt, collected=True)

    def _item(
        self, key: str, raw: bytes, run: str | None, attempt: int | None, *, collected: bool
    ) -> ItemPayload:
        def path() -> str:
            return f"$.items[{key}]"

        data = self._loads(raw, lambda: f"work item {key!r}{_of(run)}")
        node, position, scopes = self._take(_ITEM, data, path)
        in_type = self.types.node_in.get(node, _UNKNOWN) if type(node) is str else _UNKNOWN
        if in_type is _UNKNOWN:
            raise self.error(f"work item {key!r}{_of(run)} names unknown node {node!r}")
        if attempt is None:
            attempt = data.get("attempt", _UNKNOWN)
            if type(attempt) is not int:
                if attempt is _UNKNOWN:
                    raise self.error(f"required field missing @ {path()}.attempt")
                raise self.error(f"expected an integer @ {path()}.attempt")
        collect = data.get("collect") if collected else None
        if collect is None:
            if "input" not in data:
                raise self.error(f"required field missing @ {path()}.input")
            value = self._structure(data["input"], in_type, lambda: f"{path()}.input")
        elif type(collect) is str:
            value = None
        else:
            raise self.error(f"expected a collection key (a string) @ {path()}.collect")
        item = WorkItem(
            key,
            node,
            value,
            self._position(position, lambda: f"{path()}.position"),
            self._refs(scopes, lambda: f"{path()}.scopes") if scopes else (),
            attempt,
        )
        return ItemPayload(item, collect)

    def decode_contribution(
        self, raw: bytes, path: str, run: str | None = None
    ) -> tuple[str, str, Position, Any]:
        """(join, producer, position, value) of a stored contribution; `path` is its field
        path in messages (`$.contributions[0]`)."""
        return self._contribution(raw, lambda: path, run)

    def _contribution(
        self, raw: bytes, path: Callable[[], str], run: str | None
    ) -> tuple[str, str, Position, Any]:
        data = self._loads(raw, lambda: f"a join contribution{_of(run)}")
        join, producer, position, value = self._take(_CONTRIBUTION, data, path)
        if type(join) is not str:
            raise self.error(f"expected a join name @ {path()}.join")
        producer = str(producer)
        tp = self.types.value_type(producer, join)
        return (
            join,
            producer,
            self._position(position, lambda: f"{path()}.position"),
            self._structure(value, tp, lambda: f"{path()}.value"),
        )

    def decode_collection(self, join: str, raws: list[bytes], run: str | None = None) -> list[Any]:
        """The values collected for `join` (stored contributions), in branch order."""
        entries = []
        for k, raw in enumerate(raws):

            def path(k: int = k) -> str:
                return f"$.joins[{join}][{k}]"

            named, _, position, value = self._contribution(raw, path, run)
            if named != join:
                raise self.error(f"expected a contribution to join {join!r} @ {path()}.join")
            entries.append((position, value))
        return in_branch_order(entries)

    def decode_output(self, raw: bytes, path: str, run: str | None = None) -> tuple[Position, Any]:
        """(position, value) of a stored terminal output; `path` as for contributions."""

        def where() -> str:
            return path

        data = self._loads(raw, lambda: f"an output{_of(run)}")
        producer, position, value = self._take(_OUTPUT, data, where)
        tp = self.types.value_type(str(producer))
        return (
            self._position(position, lambda: f"{path}.position"),
            self._structure(value, tp, lambda: f"{path}.value"),
        )

    def decode_scope(self, key: str, raw: bytes, run: str | None = None) -> JoinScope:
        """Open join scope `key` (what it collected is added from the contributions)."""

        def path() -> str:
            return f"$.scopes[{key}]"

        data = self._loads(raw, lambda: f"join scope {key!r}{_of(run)}")
        source, joins, position, parent, open_ = self._take(_SCOPE, data, path)
        if not (isinstance(joins, list) and all(j in self.graph.joins for j in joins)):
            raise self.error(f"expected a list of join nodes @ {path()}.joins")
        if type(open_) is not int or open_ < 1:
            raise self.error(f"expected a positive integer @ {path()}.open")
        return JoinScope(
            key,
            str(source),
            tuple(joins),
            self._position(position, lambda: f"{path()}.position"),
            self._refs(parent, lambda: f"{path()}.parent"),
            open_,
        )
