"""Run ids as the Redis backend's keys and queue members hold them.

A run's keys are `P:run:R...` and `P:item:R:I`, its queue members `R\x1fI`: escaping `%`,
`:` and the member separator in R (`rid`) means no run id, whatever it holds ("a",
"a:done", "a\x1fb", "a%3Adone"), can name another run's keys or members.
"""

from __future__ import annotations

import re

__all__ = ["SEP", "rid", "unrid"]

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
