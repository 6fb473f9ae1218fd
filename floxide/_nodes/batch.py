"""`BatchNode`: run a node over a sequence, a batch at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import attrs
import trio

from floxide._errors import BatchItemError
from floxide._node import Abort, Hold, Next, NextAll, Node, Transition
from floxide._running import current_item, enter_item, exit_item
from floxide._validators import a_node, positive_int

__all__ = ["BatchNode"]

C = TypeVar("C")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@attrs.frozen
class BatchNode(Node[C, Sequence[I], list[O]]):
    """Runs `inner` on every element of a sequence: a `Node[Ctx, Sequence[I], list[O]]`.

    The input is cut into batches of `batch_size`; the items of one batch run concurrently
    (one trio task each), batches one after another, so at most `batch_size` calls of
    `inner` run at once. The output keeps input order: an item's `Next(v)` contributes `v`,
    `NextAll(vs)` contributes each of `vs`, `Hold()` contributes nothing. A failing item
    (raised or `Abort`) cancels the rest of its batch and fails the node with
    `BatchItemError` naming the item's index; later batches do not run.

    Inside a run, element `k` runs as work item `"<item id>/<k>"` at position
    `item position + (k,)` (see `floxide.item_scope`), so merge values that branches of
    the batch write to are keyed per element, independent of scheduling.
    """

    inner: Node[C, I, O] = attrs.field(validator=a_node)
    batch_size: int = attrs.field(validator=positive_int)

    async def process(self, ctx: C, input: Sequence[I]) -> Transition[list[O]]:
        items = list(input)
        out: list[O] = []
        for start in range(0, len(items), self.batch_size):
            results = await self._batch(ctx, start, items[start : start + self.batch_size])
            for result in results:
                if isinstance(result, Next):
                    out.append(result.value)
                elif isinstance(result, NextAll):
                    out.extend(result.values)
                else:
                    assert isinstance(result, Hold)
        return Next(out)

    async def _batch(self, ctx: C, offset: int, batch: list[I]) -> list[Transition[O]]:
        """Run one batch concurrently; results in input order, or `BatchItemError`."""
        results: list[Transition[O]] = [Hold()] * len(batch)
        failures: dict[int, BaseException] = {}
        scoped = current_item() is not None

        async def one(k: int, item: I, cancel_scope: trio.CancelScope) -> None:
            token = enter_item(offset + k, (offset + k,)) if scoped else None
            try:
                result = await self.inner.process(ctx, item)
            except Exception as exc:
                failures[k] = exc
                cancel_scope.cancel()
                return
            finally:
                if token is not None:
                    exit_item(token)
            if isinstance(result, Abort):
                failures[k] = result.error
                cancel_scope.cancel()
                return
            results[k] = result

        async with trio.open_nursery() as nursery:
            for k, item in enumerate(batch):
                nursery.start_soon(one, k, item, nursery.cancel_scope)
        if failures:
            raise _batch_error(offset, failures)
        return results


def _batch_error(offset: int, failures: dict[int, BaseException]) -> BatchItemError:
    ordered = sorted(failures.items())
    first, cause = ordered[0]
    err = BatchItemError(offset + first, cause)
    err.others = [(offset + k, e) for k, e in ordered[1:]]
    return err
