"""The context a step runs on and the change it commits (rule 7 of `floxide._step`).

Backends that store contributions (`stores_contributions`) keep a mergeable context as a
base plus the contributions of the steps since the last compaction. A step runs on their
fold (`fold_context`) and commits what it added (`floxide._merge.contribution`), so
concurrent steps of one run never conflict; a step that sees `COMPACT_AFTER` contributions
also sends the fold as the new base (`Contribution.compact`). A worker caches, per run, the
fold it made last and what it folded, so a step decodes and merges only the contributions
that are new to it (the base is decoded once per compaction, not once per step). The fold
is never handed to a step: the step gets a private copy (`private_copy`), and the fold is
what its change is measured against.

Any other context (no `merge`, or a backend without contributions) is decoded per step and
committed whole when it changed, as a `ContextUpdate` merged on a stale version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from floxide._codec import Codec
from floxide._merge import contribution, private_copy
from floxide._step import COMPACT_AFTER, compacts, context_changed, fold_context
from floxide.backends._base import ContextUpdate, Contribution, RunContext

__all__ = ["StepContexts", "read_context"]

_MAX_RUNS = 256
"""Runs whose fold a worker keeps (forgotten all at once beyond that)."""


def read_context(codec: Codec, stored: RunContext, run_id: str) -> Any:
    """A run's context as stored: its base merged with its contributions, if any."""
    base = codec.decode_context(stored.data, run_id)
    if not stored.contributions:
        return base
    return fold_context(base, [codec.decode_context(c, run_id) for _, c in stored.contributions])


@attrs.define
class _Fold:
    """A run's context as one read gave it: base, contributions, and their fold."""

    version: int
    base: bytes
    seen: dict[str, bytes]
    value: Any
    encoded: bytes | None = None
    compacting: bool = False
    """True once a step of this worker sent this fold as a compaction."""


@attrs.frozen
class StepRead:
    """What a step read: the stored context, the step's own copy, and (contributions
    only) the fold the copy was made from."""

    stored: RunContext
    ctx: Any
    fold: _Fold | None = None


class StepContexts:
    """Reads the context of each step and makes the change it commits."""

    def __init__(self, codec: Codec, contributions: bool) -> None:
        self.codec = codec
        ctx_type = codec.types.ctx_type
        self.contributions = contributions and callable(getattr(ctx_type, "merge", None))
        self._folds: dict[str, _Fold] = {}

    def read(self, run_id: str, stored: RunContext) -> StepRead:
        """The context a step of run `run_id` runs on (`PayloadError` if it cannot be read)."""
        if not self.contributions:
            return StepRead(stored, self.codec.decode_context(stored.data, run_id))
        fold = self._fold(run_id, stored)
        return StepRead(stored, private_copy(fold.value), fold)

    def _fold(self, run_id: str, stored: RunContext) -> _Fold:
        decode = self.codec.decode_context
        fold = self._folds.get(run_id)
        given = dict(stored.contributions)
        if (
            fold is None
            or fold.version != stored.version
            or fold.base != stored.data
            or any(given.get(k) != v for k, v in fold.seen.items())
        ):
            fold = _Fold(stored.version, stored.data, {}, decode(stored.data, run_id))
        new = [(k, v) for k, v in given.items() if k not in fold.seen]
        if new:
            value = fold_context(fold.value, [decode(v, run_id) for _, v in new])
            fold = _Fold(stored.version, stored.data, given, value)
        if len(self._folds) >= _MAX_RUNS and run_id not in self._folds:
            self._folds.clear()
        self._folds[run_id] = fold
        return fold

    def change(
        self, read: StepRead, ctx: Any
    ) -> tuple[ContextUpdate | None, Contribution | None]:
        """What the step that left `ctx` commits: a whole context, a contribution, or
        nothing (`FloxideError` when it cannot be serialized)."""
        fold = read.fold
        if fold is not None:
            got = contribution(fold.value, ctx)
            if got is not None:
                delta, changed = got
                data = self.codec.encode_context(delta) if changed else None
                compact = self._compaction(fold) if changed else None
                return None, (Contribution(data, compact) if data is not None else None)
        codec = self.codec
        stored = read.stored
        mine = codec.encode_context(ctx)
        if fold is None and not context_changed(
            mine, stored.data, lambda: self._same(ctx, stored.data)
        ):
            return None, None
        merge: Callable[[bytes], bytes] | None = None
        if callable(getattr(ctx, "merge", None)):

            def merge(base: bytes) -> bytes:
                return codec.encode_context(codec.decode_context(base).merge(ctx))

        return ContextUpdate(mine, stored.version, merge, stored.contributions), None

    def _compaction(self, fold: _Fold) -> ContextUpdate | None:
        """The fold as the new base, when the step read enough contributions (sent once
        per fold by this worker, and again at every further `COMPACT_AFTER`)."""
        n = len(fold.seen)
        if not compacts(n) or (fold.compacting and n % COMPACT_AFTER):
            return None
        if fold.encoded is None:
            fold.encoded = self.codec.encode_context(fold.value)
        fold.compacting = True
        return ContextUpdate(fold.encoded, fold.version, None, tuple(fold.seen.items()))

    def _same(self, ctx: Any, stored: bytes) -> bool:
        """Whether `ctx` equals the stored context (sets may serialize in another order)."""
        try:
            return bool(self.codec.decode_context(stored) == ctx)
        except Exception:
            return False
