"""The context a step runs on and the change it commits (rule 7 of `floxide._step`).

Backends that store contributions (`stores_contributions`) keep a mergeable context as a
base plus the contributions of the steps since the last compaction. A step runs on their
fold (`fold_context`) and commits what it added (`floxide._merge.contribution`), so
concurrent steps of one run never conflict; a step that sees `COMPACT_AFTER` contributions
(a few more, staggered per worker: `compacts`) also sends the fold as the new base
(`Contribution.compact`). A worker caches, per run, the fold it made last and what it
folded, so a step decodes and merges only the contributions that are new to it (the base
is decoded once per compaction, not once per step; leases taken together share one read
of the contributions, folded once). The fold
is never handed to a step: the step gets a private copy (`private_copy`), and the fold is
what its change is measured against.

Any other context (no `merge`, or a backend without contributions) is decoded per step and
committed whole when it changed, as a `ContextUpdate` merged on a stale version.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs

from floxide._codec import Codec
from floxide._merge import contribution, private_copy
from floxide._step import COMPACT_AFTER, compacts, context_changed, fold_context
from floxide.backends._base import ContextUpdate, Contribution, RunContext

__all__ = ["StepContexts", "read_context"]

_GOLDEN = 0.6180339887498949

_MAX_RUNS = 256
"""Runs whose fold a worker keeps (forgotten all at once beyond that)."""


def _starts(whole: object, part: object) -> bool:
    """Whether tuple `whole` starts with the entries of tuple `part` (one read of the
    contributions holding another: an earlier one, read late, or a later one)."""
    if not (isinstance(whole, tuple) and isinstance(part, tuple)):
        return False
    return 0 < len(part) <= len(whole) and whole[: len(part)] == part


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
    read: object = None
    """The contributions of the read `seen` was last brought up to date with: a read
    handing the very same object (leases taken together), or a part it starts with (an
    older read), has nothing new; one extending it has only its further entries to look
    at."""


@attrs.frozen
class StepRead:
    """What a step read: the stored context, the step's own copy, and (contributions
    only) the fold the copy was made from."""

    run_id: str
    stored: RunContext
    ctx: Any
    fold: _Fold | None = None


class StepContexts:
    """Reads the context of each step and makes the change it commits."""

    def __init__(
        self, codec: Codec, contributions: bool, compact_after: int = COMPACT_AFTER
    ) -> None:
        self.codec = codec
        self.compact_after = compact_after
        ctx_type = codec.types.ctx_type
        self.contributions = contributions and callable(getattr(ctx_type, "merge", None))
        self._folds: dict[str, _Fold] = {}
        self._compacted: dict[str, tuple[int, int, _Fold]] = {}
        """Per run, the last compaction this worker sent: the version it was made at, how
        many contributions it folded, and the fold it makes the base (if it wins)."""
        self._salt = random.random()

    def read(self, run_id: str, stored: RunContext) -> StepRead:
        """The context a step of run `run_id` runs on (`PayloadError` if it cannot be read)."""
        if not self.contributions:
            return StepRead(run_id, stored, self.codec.decode_context(stored.data, run_id))
        fold = self._fold(run_id, stored)
        return StepRead(run_id, stored, private_copy(fold.value), fold)

    def _fold(self, run_id: str, stored: RunContext) -> _Fold:
        decode = self.codec.decode_context
        fold = self._folds.get(run_id)
        # A fold made from a later read (a higher version, or more contributions) serves
        # an earlier read too: all it holds was committed, and merging is idempotent.
        if (
            fold is None
            or fold.version < stored.version
            or (fold.version == stored.version and fold.base != stored.data)
        ):
            fold = self._after_compaction(run_id, stored) or _Fold(
                stored.version, stored.data, {}, decode(stored.data, run_id)
            )
        contributions = stored.contributions
        read = fold.read
        if read is not contributions and not _starts(read, contributions):
            seen = fold.seen
            # a read extending the last one (its entries, then more) has only those more
            # to look at: the last read's are all in `seen`
            if _starts(contributions, read):
                contributions = contributions[len(read) :]  # type: ignore[arg-type]
            new = [(k, v) for k, v in contributions if seen.get(k) != v]
            if new:
                value = fold_context(fold.value, [decode(v, run_id) for _, v in new])
                fold = _Fold(fold.version, fold.base, {**seen, **dict(new)}, value)
            fold.read = stored.contributions
        if len(self._folds) >= _MAX_RUNS and run_id not in self._folds:
            self._folds.clear()
            self._compacted.clear()
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
                compact = self._compaction(read.run_id, fold) if changed else None
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

    def _compaction(self, run_id: str, fold: _Fold) -> ContextUpdate | None:
        """The fold as the new base, when the step read enough contributions: sent once
        per version by this worker, again only once `COMPACT_AFTER` more have come."""
        n = len(fold.seen)
        if not compacts(n, self.compact_after, self._stagger(fold.version)):
            return None
        sent = self._compacted.get(run_id)
        if sent is not None and sent[0] == fold.version and n < sent[1] + self.compact_after:
            return None
        encoded = self.codec.encode_context(fold.value)
        after = _Fold(fold.version + 1, encoded, {}, fold.value)
        self._compacted[run_id] = (fold.version, n, after)
        return ContextUpdate(encoded, fold.version, None, tuple(fold.seen.items()))

    def _stagger(self, version: int) -> float:
        """This worker's `stagger` for a base at `version` (in [0, 1): the golden-ratio
        sequence from a random start, so workers differ and each base gets a new one)."""
        return (self._salt + version * _GOLDEN) % 1.0

    def _after_compaction(self, run_id: str, stored: RunContext) -> _Fold | None:
        """The fold this worker's compaction made the base, if `stored` has it (saves
        decoding it)."""
        sent = self._compacted.get(run_id)
        if sent is None:
            return None
        fold = sent[2]
        if fold.version != stored.version or fold.base != stored.data:
            return None
        return _Fold(fold.version, fold.base, {}, fold.value)

    def _same(self, ctx: Any, stored: bytes) -> bool:
        """Whether `ctx` equals the stored context (sets may serialize in another order)."""
        try:
            return bool(self.codec.decode_context(stored) == ctx)
        except Exception:
            return False
