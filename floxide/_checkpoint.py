"""Checkpointed runs: commit after every step, resume after a crash.

A checkpointed run is the local executor (`floxide._local.LocalRun`) with a commit after
each step: the item it consumed, the items it made (join items fired included), the
contributions and open counts of the join scopes it touched, its terminal outputs and the
context, written to a `CheckpointStore` in one atomic commit. A successor never runs before
the commit that created it is written, and commits are applied in the order the steps
finished, so the stored state is always one the run actually went through, and a crash
re-runs only the steps that were in flight.

Steps may finish concurrently. Their commits are queued and written by one task at a time;
steps that finished while a commit was being written go together in the next one (group
commit), which keeps fan-outs fast on a durable store.

Work item ids are deterministic strings derived from (parent id, k), so a step re-run after
a crash makes the same successor ids, and merge values keyed by item id
(`floxide.Counter`, ...) do not count it twice.

Values are written by the one codec (`floxide._codec`, the layouts distributed runs use
too) as their declared types; this module adds the run's header (format version, graph
fingerprint and description) and rebuilds a `Checkpoint` from a stored run.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Hashable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

import attrs
import trio

from floxide import serde
from floxide._codec import Codec
from floxide._errors import CheckpointError, NodeError
from floxide._graph import Graph
from floxide._local import LocalRun
from floxide._node import Node
from floxide._step import (
    ROOT_ID,
    Effects,
    JoinScope,
    Position,
    WorkItem,
    context_changed,
    derived_id,
    first_output,
    never_same,
)
from floxide.checkpoints import (
    CheckpointStatus,
    CheckpointStore,
    Commit,
    InMemoryCheckpointStore,
    RunInfo,
    SqliteCheckpointStore,
    StoredCheckpoint,
)

__all__ = [
    "FORMAT_VERSION",
    "ROOT_ID",
    "Checkpoint",
    "CheckpointStore",
    "InMemoryCheckpointStore",
    "RunInfo",
    "SqliteCheckpointStore",
    "item_id",
    "resume_checkpointed",
    "run_checkpointed",
]

C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)

FORMAT_VERSION = 1
"""Version of the checkpoint payloads; a run written by a newer floxide is refused."""


item_id = derived_id
"""The id of the k-th item made by executing a parent: the same on every re-run."""


# ------------------------------------------------------------------------- the model
@attrs.frozen(eq=False)
class Checkpoint(Generic[C]):
    """A checkpointed run as last committed, rebuilt with the declared types.

    `items` are the pending work items (id, node, input, branch position, open join scopes,
    attempt); `join_state` the open join scopes with what they collected so far; `outputs`
    the terminal outputs so far as (branch position, value). Load one with
    `Checkpoint.load(workflow, store, run_id)`.
    """

    run_id: str
    workflow: str
    fingerprint: str
    format_version: int
    status: CheckpointStatus
    steps: int
    context: C
    items: tuple[WorkItem, ...]
    join_state: Mapping[Hashable, JoinScope]
    outputs: tuple[tuple[Position, Any], ...]
    error: str | None = None
    timeout: float | None = None
    """The run's `timeout` in seconds (each resume gets it afresh); None without one."""

    @property
    def finished(self) -> bool:
        """True once the run completed (its outputs are final)."""
        return self.status == "finished"

    @staticmethod
    async def load(wf: Checkpointable[C], store: CheckpointStore, run_id: str) -> Checkpoint[C]:
        """Read and check run `run_id` of `wf` from `store` (changes nothing).

        Raises `CheckpointError` for an unknown run id, a run of another workflow or of
        a changed graph (saying what differs), a newer format, or corrupt data.
        """
        record = await store.load_run(run_id)
        return _decode(Codec(wf.graph), record)


class Checkpointable(Protocol[C_contra]):
    """What checkpointed runs read of a workflow (a `Workflow` is one)."""

    @property
    def graph(self) -> Graph: ...

    @property
    def nodes(self) -> Mapping[str, Node[Any, Any, Any]]: ...

    @property
    def max_concurrency(self) -> int: ...

    def run(
        self,
        ctx: C_contra,
        input: Any,
        *,
        timeout: float | None = None,
        concurrency: int | None = None,
    ) -> Awaitable[Any]: ...


# ------------------------------------------------------------------------- the format
_descriptions: dict[Graph, dict[str, object]] = {}


def _description(graph: Graph) -> dict[str, object]:
    """`graph.describe()`, made once per graph (it costs more than a short run's commits)."""
    found = _descriptions.get(graph)
    if found is None:
        found = _descriptions[graph] = graph.describe()
    return found


def _header(graph: Graph, run_id: str, timeout: float | None) -> bytes:
    """A run's header: the format version, the graph it was written for, its timeout."""
    return serde.dumps(
        {
            "format": FORMAT_VERSION,
            "workflow": graph.name,
            "module": graph.module,
            "fingerprint": graph.fingerprint,
            "graph": _description(graph),
            "run_id": run_id,
            "created": time.time(),
            "timeout": timeout,
        }
    )


def _timeout(meta: Mapping[str, Any], run_id: str) -> float | None:
    """The run's timeout from its header (None: no timeout, or written before timeouts
    were kept)."""
    timeout = meta.get("timeout")
    if timeout is None:
        return None
    if type(timeout) not in (int, float) or not (math.isfinite(timeout) and timeout > 0):
        raise CheckpointError(f"the header of run {run_id!r} is corrupt (timeout {timeout!r})")
    return float(timeout)


def _check_header(graph: Graph, record: StoredCheckpoint) -> dict[str, Any]:
    """The header of `record`, refused unless this floxide and `graph` can resume it."""
    rid = record.run_id
    meta = serde.loads(record.meta, what=f"the header of run {rid!r}")
    if not isinstance(meta, dict) or not isinstance(meta.get("format"), int):
        raise CheckpointError(f"the header of run {rid!r} is corrupt (no format version)")
    if meta["format"] > FORMAT_VERSION:
        raise CheckpointError(
            f"run {rid!r} was written in checkpoint format {meta['format']} by a newer "
            f"floxide; this one reads up to format {FORMAT_VERSION}"
        )
    name = meta.get("workflow")
    module = meta.get("module")
    # The module is informative only: a script's workflow lives in `__main__` when
    # run directly and under its own name when imported.
    if name != graph.name:
        raise CheckpointError(
            f"run {rid!r} belongs to workflow {name!r} (module {module!r}), not to "
            f"{graph.name!r} (module {graph.module!r})"
        )
    if meta.get("fingerprint") != graph.fingerprint:
        stored = meta.get("graph")
        why = (
            _explain(stored, _description(graph))
            if isinstance(stored, dict)
            else ["the stored graph description is missing"]
        )
        raise CheckpointError(
            f"the graph of workflow {graph.name!r} changed since run {rid!r} was "
            f"checkpointed, so it cannot resume safely: " + "; ".join(why)
        )
    return meta


def _explain(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between two `Graph.describe()` results, in words."""
    out: list[str] = []
    s_nodes, c_nodes = list(stored.get("nodes", [])), list(current.get("nodes", []))
    gone = [n for n in s_nodes if n not in c_nodes]
    new = [n for n in c_nodes if n not in s_nodes]
    if gone:
        out.append(f"nodes removed: {', '.join(gone)}")
    if new:
        out.append(f"nodes added: {', '.join(new)}")
    if stored.get("start") != current.get("start"):
        out.append(f"start was {stored.get('start')!r}, is now {current.get('start')!r}")
    for key, label in (
        ("edges", "edges of"),
        ("on_failure", "on_failure of"),
        ("joins", "join source of"),
        ("types", "declared type of"),
    ):
        s_map = stored.get(key) or {}
        c_map = current.get(key) or {}
        if not (isinstance(s_map, dict) and isinstance(c_map, dict)):
            continue
        for n in dict.fromkeys([*s_map, *c_map]):
            if n in gone or n in new:
                continue
            if s_map.get(n) != c_map.get(n):
                out.append(f"{label} {n!r}: was {s_map.get(n)!r}, is now {c_map.get(n)!r}")
    if not out:
        out.append("the graph description differs in a way floxide cannot name")
    return out


def _decode(codec: Codec, record: StoredCheckpoint) -> Checkpoint[Any]:
    """`record` rebuilt with the declared types (its header checked first)."""
    meta = _check_header(codec.graph, record)
    rid = record.run_id
    ctx = codec.decode_context(record.context, rid)
    items = [codec.decode_item(k, v, rid) for k, v in record.items.items()]
    items.sort(key=lambda it: (it.position, str(it.id)))
    join_state: dict[Hashable, JoinScope] = {
        k: codec.decode_scope(k, v, rid) for k, v in record.scopes.items()
    }
    for n, (scope_id, raw) in enumerate(record.contributions):
        join, _, position, value = codec.decode_contribution(raw, f"$.contributions[{n}]", rid)
        scope = join_state.get(scope_id)
        if scope is None or join not in scope.collected:
            raise CheckpointError(
                f"run {rid!r}: a contribution to join {join!r} names no open scope "
                f"({scope_id!r})"
            )
        scope.collected[join].append((position, value))
    outputs = [
        codec.decode_output(raw, f"$.outputs[{n}]", rid) for n, raw in enumerate(record.outputs)
    ]
    outputs.sort(key=lambda o: o[0])
    return Checkpoint(
        run_id=rid,
        workflow=codec.graph.name,
        fingerprint=str(meta["fingerprint"]),
        format_version=int(meta["format"]),
        status=record.status,
        steps=record.seq,
        context=ctx,
        items=tuple(items),
        join_state=join_state,
        outputs=tuple(outputs),
        error=record.error,
        timeout=_timeout(meta, rid),
    )


# ------------------------------------------------------------------------- committing
def _combine_commits(seq: int, batch: Sequence[Commit]) -> Commit:
    """Several consecutive steps' commits as one commit numbered `seq`; what one makes and
    another consumes within the batch never reaches the store."""
    if len(batch) == 1 and batch[0].seq == seq:
        return batch[0]
    items: dict[str, bytes] = {}
    done: list[str] = []
    scopes: dict[str, bytes] = {}
    closed: list[str] = []
    contributions: list[tuple[str, bytes]] = []
    outputs: list[bytes] = []
    context: bytes | None = None
    for d in batch:
        items.update(d.items)
        for k in d.done:
            if k in items:
                del items[k]
            else:
                done.append(k)
        scopes.update(d.scopes)
        for k in d.closed:
            scopes.pop(k, None)
            closed.append(k)
        contributions.extend(d.contributions)
        outputs.extend(d.outputs)
        if d.context is not None:
            context = d.context
    if closed:
        gone = set(closed)
        contributions = [c for c in contributions if c[0] not in gone]
    return Commit(
        seq=seq,
        items=tuple(items.items()),
        done=tuple(done),
        context=context,
        scopes=tuple(scopes.items()),
        contributions=tuple(contributions),
        closed=tuple(closed),
        outputs=tuple(outputs),
    )


def _store_error(run_id: str, exc: BaseException) -> CheckpointError | None:
    """A store's own failure (not a `CheckpointError`) as the `CheckpointError` to raise;
    None when `exc` is to be raised as it is."""
    if isinstance(exc, Exception) and not isinstance(exc, CheckpointError):
        return CheckpointError(
            f"run {run_id!r}: the checkpoint store failed to commit a step: "
            f"{type(exc).__name__}: {exc}"
        )
    return None


_Step: TypeAlias = tuple[
    Sequence[tuple[str, bytes]],
    Sequence[str],
    bytes | None,
    Sequence[tuple[str, bytes]],
    Sequence[tuple[str, bytes]],
    Sequence[str],
    Sequence[bytes],
]
"""One step's changes: a `Commit`'s fields from `items` to `outputs`, in order."""


class _Committer:
    """Encodes each finished step and commits it; one commit in flight at a time.

    A store whose commit never waits (`InMemoryCheckpointStore`) is written directly from
    the step hook: no queue, no task switch, one commit per step.
    """

    def __init__(
        self,
        encoder: Codec,
        store: CheckpointStore,
        run_id: str,
        seq: int,
        ctx: object,
        ctx_bytes: bytes,
        join_state: Mapping[Hashable, JoinScope],
    ) -> None:
        self.encoder = encoder
        self.store = store
        self.run_id = run_id
        self.seq = seq
        self.ctx = ctx
        self.ctx_text = ctx_bytes.decode(errors="replace")
        self.join_state = join_state
        self._apply = store._apply if type(store) is InMemoryCheckpointStore else None
        self._queue: list[Commit] = []
        self._flushed = trio.Event()
        self._flushing = False
        self._error: BaseException | None = None

    def encode(self, item: WorkItem, fx: Effects, fired: list[WorkItem]) -> _Step:
        """This step's changes: the fields of its `Commit` after `seq`."""
        enc = self.encoder
        items = []  # loops, not comprehensions: most steps make one item and no output
        for it in fx.items:
            items.append((str(it.id), enc.encode_item(it)))
        for it in fired:
            items.append((str(it.id), enc.encode_item(it)))
        scopes: list[tuple[str, bytes]] | tuple[()] = ()
        closed: list[str] | tuple[()] = ()
        contributions: list[tuple[str, bytes]] | tuple[()] = ()
        if item.scopes or fx.opened is not None:
            touched = [sid for sid, _ in item.scopes]
            if fx.opened is not None:
                touched.append(fx.opened.id)
            scopes, closed = [], []
            for sid in touched:
                scope = self.join_state.get(sid)
                if scope is None:
                    closed.append(str(sid))
                else:
                    scopes.append((str(sid), enc.encode_scope(scope)))
            gone = set(closed)
            contributions = [
                (str(sid), enc.encode_contribution(item.node, join, pos, value))
                for sid, join, pos, value in fx.contributions
                if str(sid) not in gone
            ]
        outputs = []
        for pos, value in fx.outputs:
            outputs.append(enc.encode_output(item.node, pos, value))
        # The context is compared as text every step: a change a node made is committed
        # with the step that made it.
        context = None
        ctx_text = enc.context_text(self.ctx)
        if context_changed(ctx_text, self.ctx_text, never_same):
            context = enc.encode_context(self.ctx, ctx_text)
            self.ctx_text = ctx_text
        return items, (str(item.id),), context, scopes, contributions, closed, outputs

    async def on_step(self, item: WorkItem, fx: Effects, fired: list[WorkItem]) -> None:
        """The executor's step hook: encode now (state is exactly this step's), then commit."""
        if self._error is not None:
            await trio.sleep_forever()  # the run is failing: its error is raised elsewhere
        try:
            step = self.encode(item, fx, fired)
        except BaseException as exc:
            self._error = exc  # no later step may commit on top of this one
            raise
        apply = self._apply
        if apply is None:
            await self.submit(Commit(self.seq + 1, *step))
            return
        try:
            apply(self.run_id, self.seq + 1, *step)
        except BaseException as exc:
            self._error = exc
            wrapped = _store_error(self.run_id, exc)
            if wrapped is not None:
                raise wrapped from exc
            raise
        self.seq += 1

    async def submit(self, commit: Commit) -> None:
        """Queue `commit`; return once a commit holding it is written.

        The first waiting step writes commits until the queue is empty; steps finishing
        meanwhile wait for it. When a commit fails, its writer raises (once, for the run)
        and the waiting steps sleep until the run's cancellation reaches them.
        """
        self._queue.append(commit)
        if self._flushing:
            await self._flushed.wait()
            if self._error is not None:
                await trio.sleep_forever()
            return
        self._flushing = True
        try:
            # Shielded: a commit, once started, is finished and accounted for, so the run's
            # bookkeeping (`seq`) always matches the store.
            with trio.CancelScope(shield=True):
                while self._queue:
                    batch, self._queue = self._queue, []
                    done, self._flushed = self._flushed, trio.Event()
                    try:
                        await self.store.commit(self.run_id, _combine_commits(self.seq + 1, batch))
                    except BaseException as exc:
                        self._error = exc
                        done.set()
                        self._flushed.set()
                        wrapped = _store_error(self.run_id, exc)
                        if wrapped is not None:
                            raise wrapped from exc
                        raise
                    self.seq += 1
                    done.set()
        finally:
            self._flushing = False

    async def finish(self, status: CheckpointStatus, error: str | None = None) -> None:
        """Record how the run ended (shielded, so it is written even while cancelling)."""
        with trio.CancelScope(shield=True):
            await self.store.commit(
                self.run_id, Commit(seq=self.seq + 1, status=status, error=error)
            )
            self.seq += 1


async def _execute(
    wf: Checkpointable[Any],
    encoder: Codec,
    store: CheckpointStore,
    run_id: str,
    ctx: object,
    ctx_bytes: bytes,
    seq: int,
    items: Sequence[WorkItem],
    join_state: Mapping[Hashable, JoinScope],
    outputs: Sequence[tuple[Position, Any]],
    timeout: float | None,
) -> Any:
    run = LocalRun(
        wf.graph,
        wf.nodes,
        ctx,
        concurrency=wf.max_concurrency,
        run_id=run_id,
        new_id=item_id,
    )
    run.join_state.scopes.update(join_state)
    run.outputs.extend(outputs)
    run.ready.extend(items)
    committer = _Committer(encoder, store, run_id, seq, ctx, ctx_bytes, run.join_state.scopes)
    run.on_step = committer.on_step
    try:
        result = await run.execute(timeout)
    except NodeError as err:
        if committer._error is None:
            await committer.finish("failed", str(err))
        raise
    await committer.finish("finished")
    return first_output(wf.graph.name, result)


async def run_checkpointed(
    wf: Checkpointable[C],
    ctx: C,
    input: object,
    *,
    store: CheckpointStore,
    run_id: str | None,
    timeout: float | None,
) -> Any:
    """`Workflow.run_with_checkpoint`: a new run committed to `store` after every step.

    The run's first commit (the context and the first work item) is written before any
    node runs; a run id that already exists in `store` raises `CheckpointError`.
    """
    codec = Codec(wf.graph)
    rid = run_id if run_id is not None else uuid.uuid4().hex
    ctx_bytes = codec.encode_context(ctx)
    root = WorkItem(ROOT_ID, wf.graph.start, input)
    root_bytes = codec.encode_item(root)
    # Refuse, before anything is stored, a context or input that could not be read back.
    codec.decode_context(ctx_bytes, rid)
    codec.decode_item(ROOT_ID, root_bytes, rid)
    record = StoredCheckpoint(
        run_id=rid,
        workflow=wf.graph.name,
        meta=_header(wf.graph, rid, timeout),
        context=ctx_bytes,
        items={ROOT_ID: root_bytes},
    )
    await store.create_run(record)
    return await _execute(wf, codec, store, rid, ctx, ctx_bytes, 0, [root], {}, [], timeout)


async def resume_checkpointed(
    wf: Checkpointable[Any], store: CheckpointStore, run_id: str, timeout: float | None
) -> Any:
    """`Workflow.resume`: finish run `run_id` from its last commit.

    A finished run returns its outputs without running anything. A run that failed is
    retried from the item that failed (fix the cause first). The run's own `timeout`
    applies again, from the resume (`timeout` here replaces it for this resume). Unknown
    run ids, runs of other workflows or changed graphs, newer formats and corrupt data
    raise `CheckpointError` and leave the store unchanged.
    """
    codec = Codec(wf.graph)
    record = await store.load_run(run_id)
    cp = _decode(codec, record)
    if cp.finished:
        return first_output(wf.graph.name, list(cp.outputs))
    if timeout is None:
        timeout = cp.timeout
    seq = record.seq
    if cp.status != "running":
        await store.commit(run_id, Commit(seq=seq + 1, status="running"))
        seq += 1
    return await _execute(
        wf,
        codec,
        store,
        run_id,
        cp.context,
        record.context,
        seq,
        cp.items,
        cp.join_state,
        cp.outputs,
        timeout,
    )
