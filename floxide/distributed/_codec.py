"""Encoding a distributed run's values for a backend, by the workflow's declared types.

Work items carry their node's `In`; outputs and join contributions their producer's `Out`
(or the join's element type when the producer's is not declared); the context the
workflow's `Ctx`. A fired join item is stored without its input: it names the collection
its values were appended to, and the worker that leases it reads them then, so a step's
commit never rewrites what a join has collected so far.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import attrs

from floxide import serde
from floxide._errors import PayloadError
from floxide._step import ROOT_ID, Position, ScopeRef, WorkItem, derived_id
from floxide._typeinfo import DeclaredTypes

if TYPE_CHECKING:
    pass

__all__ = ["ROOT_ID", "Codec", "collection_key", "item_id"]

item_id = derived_id
"""The id of the k-th item made by executing a parent: the same on every re-run."""


def collection_key(scope_id: Hashable, join: str) -> str:
    """The backend key of the values join `join` collects in scope `scope_id`."""
    return f"{scope_id}|{join}"


def _refs(data: Any) -> tuple[ScopeRef, ...]:
    return tuple((str(sid), str(src)) for sid, src in data)


@attrs.frozen
class ItemPayload:
    """A decoded work item; `collect` names the collection a fired join reads its input from."""

    item: WorkItem
    collect: str | None = None


class Codec(DeclaredTypes):
    """Encoder/decoder of one workflow class's run values (`Codec.of(wf)`, cached per class)."""

    # -- context / input ----------------------------------------------------------------
    def encode_context(self, ctx: object) -> bytes:
        return serde.dumps(
            serde.unstructure(ctx, self.ctx_type, path="$.context", error=PayloadError)
        )

    def decode_context(self, raw: bytes) -> Any:
        data = serde.loads(raw, what="the run's context", error=PayloadError)
        return serde.structure(data, self.ctx_type, path="$.context", error=PayloadError)

    def encode_input(self, value: object) -> bytes:
        return serde.dumps(
            serde.unstructure(value, self.in_type, path="$.input", error=PayloadError)
        )

    # -- items --------------------------------------------------------------------------
    def encode_item(self, item: WorkItem, collect: str | None = None) -> bytes:
        data: dict[str, Any] = {
            "node": item.node,
            "position": item.position,
            "scopes": item.scopes,
        }
        if collect is not None:
            data["collect"] = collect
        else:
            tp = self.node_in.get(item.node, Any)
            data["input"] = serde.unstructure(
                item.input, tp, path=f"$.items[{item.id}].input", error=PayloadError
            )
        return serde.dumps(data)

    def decode_item(self, item_id: str, raw: bytes, attempt: int) -> ItemPayload:
        data = serde.loads(raw, what=f"work item {item_id!r}", error=PayloadError)
        node = data.get("node") if isinstance(data, dict) else None
        if node not in self.node_in:
            raise PayloadError(f"work item {item_id!r} names unknown node {node!r}")
        collect = data.get("collect")
        value = None
        if collect is None:
            value = serde.structure(
                data.get("input"),
                self.node_in[node],
                path=f"$.items[{item_id}].input",
                error=PayloadError,
            )
        item = WorkItem(
            item_id, node, value, tuple(data["position"]), _refs(data["scopes"]), attempt
        )
        return ItemPayload(item, collect)

    # -- joins --------------------------------------------------------------------------
    def encode_contribution(self, producer: str, join: str, pos: Position, value: object) -> bytes:
        tp = self.value_type(producer, join)
        return serde.dumps(
            {
                "node": producer,
                "position": pos,
                "value": serde.unstructure(
                    value, tp, path=f"$.joins[{join}].value", error=PayloadError
                ),
            }
        )

    def decode_collection(self, join: str, raws: list[bytes]) -> list[Any]:
        """The values a join collected, in branch order."""
        entries = []
        for raw in raws:
            data = serde.loads(raw, what=f"a value collected for join {join!r}", error=PayloadError)
            tp = self.value_type(data["node"], join)
            value = serde.structure(
                data["value"], tp, path=f"$.joins[{join}].value", error=PayloadError
            )
            entries.append((tuple(data["position"]), value))
        entries.sort(key=lambda e: e[0])
        return [v for _, v in entries]

    # -- outputs ------------------------------------------------------------------------
    def encode_output(self, producer: str, value: object) -> bytes:
        tp = self.value_type(producer)
        return serde.dumps(
            serde.unstructure(value, tp, path=f"$.outputs[{producer}]", error=PayloadError)
        )

    def decode_output(self, producer: str, raw: bytes) -> Any:
        data = serde.loads(raw, what=f"an output of node {producer!r}", error=PayloadError)
        return serde.structure(
            data, self.value_type(producer), path=f"$.outputs[{producer}]", error=PayloadError
        )
