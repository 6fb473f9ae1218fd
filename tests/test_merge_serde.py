"""How a Counter is written and read (`floxide._merge_serde`): one encoding for equal
counters whatever order merges built them in, and the bulk reader reading every input
exactly as cattrs' generated hook does (the same value, or the same refusal)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from cattrs.gen import make_dict_structure_fn
from hypothesis import given
from hypothesis import strategies as st

from floxide import Counter, Mergeable, serde
from floxide._errors import CheckpointError

keys = st.text(max_size=6)
counts = st.dictionaries(keys, st.integers(0, 10**12), max_size=12)
counters = st.builds(Counter, counts, counts)


@attrs.define
class Ctx(Mergeable):
    seen: Counter = attrs.field(factory=Counter)
    label: str = ""


def _text(value: Any, tp: Any) -> str:
    return json.dumps(serde.unstructure(value, tp))


@given(st.lists(counters, min_size=1, max_size=6), st.randoms())
def test_equal_counters_are_written_alike_whatever_the_merge_order(
    parts: list[Counter], rnd: Any
) -> None:
    def fold(order: list[Counter]) -> Counter:
        acc = order[0]
        for c in order[1:]:
            acc = acc.merge(c)
        return acc

    shuffled = list(parts)
    rnd.shuffle(shuffled)
    a, b = fold(parts), fold(shuffled)
    assert a == b
    assert _text(a, Counter) == _text(b, Counter)
    assert _text(Ctx(a), Ctx) == _text(Ctx(b), Ctx)


@given(counters)
def test_a_counter_round_trips_with_its_entries_in_key_order(c: Counter) -> None:
    data = serde.unstructure(c, Counter)
    assert list(data) == ["increments", "decrements"]
    assert list(data["increments"]) == sorted(c.increments)
    assert list(data["decrements"]) == sorted(c.decrements)
    back = serde.structure(json.loads(json.dumps(data)), Counter)
    assert back == c and type(back) is Counter
    assert back.value == c.value


_GENERIC_HOOK = make_dict_structure_fn(Counter, serde.converter)  # what cattrs would use

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
count_like = st.dictionaries(keys, st.integers(-2, 5) | json_values, max_size=4)
counter_like = st.fixed_dictionaries(
    {}, optional={"increments": count_like | json_values, "decrements": count_like}
) | st.dictionaries(st.sampled_from(["increments", "decrements", "other"]), count_like)


def _outcome(read: Any) -> tuple[str, Any]:
    try:
        value = read()
    except Exception as e:  # the kind of refusal is what must match
        return "error", type(e).__name__
    return "value", (value.increments, value.decrements)


@given(counter_like)
def test_the_bulk_reader_reads_what_cattrs_reads(data: dict[str, Any]) -> None:
    """Valid counters take the bulk path; anything else falls to cattrs' generated hook,
    so odd data is read (or refused) exactly as before."""
    fast = serde.converter.get_structure_hook(Counter)
    theirs = _outcome(lambda: _GENERIC_HOOK(data, Counter))
    mine = _outcome(lambda: fast(data, Counter))
    if theirs[0] == "value":
        assert mine == theirs
    else:
        assert mine[0] == "error"


def test_the_bulk_reader_keeps_no_reference_to_the_data() -> None:
    data = {"increments": {"a": 1}, "decrements": {}}
    c = serde.structure(data, Counter)
    data["increments"]["b"] = 2
    assert c.increments == {"a": 1}


def test_a_negative_count_or_a_list_is_refused_with_its_path() -> None:
    bad: dict[str, Any]
    for bad in ({"increments": {"a": -1}}, {"decrements": {"a": -2}}, {"increments": []}):
        with pytest.raises(CheckpointError, match="Counter"):
            serde.structure(bad, Counter, path="$.ctx")
