"""The Redis backend's key names, and run ids as its keys and queue members hold them.

A run's keys are `P:{S}:run:R...` (S the queue shard it is pinned to, `shard_of`), its
queue entries `R\x1fT\x1fI`: escaping `%`, `:` and the member separator in R (`rid`)
means no run id, whatever it holds ("a", "a:done", "a\x1fb", "a%3Adone", "{a}"), can name
another run's keys or members. The hash tag `{S}` comes first in every key (a prefix
holds no braces on a cluster), so all keys of a run and of its queue shard share a slot.
"""

from __future__ import annotations

import re
import zlib

__all__ = ["SEP", "Keys", "rid", "shard_of", "unrid"]

SEP = "\x1f"
"""The separator of a queue member's run id and item id."""

_ESCAPES = {"%": "%25", ":": "%3A", SEP: "%1F"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}
_ESCAPED = re.compile("|".join(map(re.escape, _ESCAPES)))
_UNESCAPED = re.compile("|".join(_UNESCAPES))


def rid(run_id: str) -> str:
    """A run id as keys and queue members hold it: `%`, `:` and the member separator
    escaped, so that no run's keys (`P:run:R:done`, ...) or members (`R\x1fI`) can be
    another run's (run ids "a" and "a:done", "a\x1fb"). Most ids are left as they are."""
    if "%" in run_id or ":" in run_id or SEP in run_id:
        return _ESCAPED.sub(lambda m: _ESCAPES[m.group()], run_id)
    return run_id


def unrid(stored: str) -> str:
    """The run id `rid` escaped."""
    return _UNESCAPED.sub(lambda m: _UNESCAPES[m.group()], stored) if "%" in stored else stored


def shard_of(stored: str, shards: int) -> int:
    """The queue shard a run is pinned to (by its id as keys hold it): the same on every
    client of a deployment, since every client uses the same number of shards."""
    return zlib.crc32(stored.encode("utf-8", "surrogatepass")) % shards if shards > 1 else 0


class Keys:
    """The key names of one deployment (prefix P, S shards): a run's keys and its queue
    shard's keys share the hash tag `{S}`, so each script touches one slot of a cluster."""

    def __init__(self, prefix: str, shards: int) -> None:
        self.prefix = prefix
        self.shards = shards
        self.workers = f"{prefix}:workers"
        self._runs: dict[tuple[str, str, int], tuple[str, ...]] = {}

    def tag(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard}}}"

    def shard(self, stored: str) -> int:
        return shard_of(stored, self.shards)

    def run(self, stored: str) -> str:
        """The run record's key (`stored`: the run id as keys hold it)."""
        return f"{self.tag(self.shard(stored))}:run:{stored}"

    def leases(self, shard: int) -> str:
        return f"{self.tag(shard)}:leases"

    def runs(self, shard: int) -> str:
        return f"{self.tag(shard)}:runs"

    def wake(self, shard: int, queue: str) -> str:
        return f"{self.tag(shard)}:q:{queue}:wake"

    def wake_all(self, queue: str) -> str:
        """A queue's wake-up list outside every shard: on a cluster, idle workers block on
        it and the client pushes it after a script made items ready (`WAKE`)."""
        return f"{self.prefix}:q:{queue}:wake"

    def script_keys(self, stored: str, queue: str, shard: int | None = None) -> tuple[str, ...]:
        """KEYS of a run script (see `_redis_lua`); `shard` defaults to the run's."""
        if shard is None:
            shard = self.shard(stored)
        cached = self._runs.get((stored, queue, shard))
        if cached is not None:
            return cached
        tag = self.tag(shard)
        rk = f"{tag}:run:{stored}"
        q = f"{tag}:q:{queue}"
        keys = (
            rk,
            f"{rk}:items",
            f"{rk}:scopes",
            f"{rk}:fired",
            f"{rk}:col",
            f"{rk}:outputs",
            f"{rk}:errors",
            f"{rk}:done",
            f"{tag}:leases",
            f"{q}:ready",
            f"{q}:delayed",
            f"{q}:wake",
            f"{tag}:runs",
            f"{tag}:expiring",
            f"{rk}:contrib",
        )
        if len(self._runs) >= 4096:  # bounded: drop the oldest
            del self._runs[next(iter(self._runs))]
        self._runs[(stored, queue, shard)] = keys
        return keys
