"""Reading the contributions of Redis replies against the run's earlier reply
(`floxide.backends._redis_reply.contributions`): the same pairs as reading them afresh,
whatever the earlier reply was."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floxide.backends._redis_reply import contributions

entries = st.lists(st.tuples(st.binary(max_size=3), st.binary(max_size=3)), max_size=6)


def _flat(pairs: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [x for pair in pairs for x in pair]


@given(entries, entries, st.integers(0, 6))
def test_read_against_an_earlier_reply_as_afresh(
    common: list[Any], more: list[Any], cut: int
) -> None:
    fresh, older = contributions(_flat(common + more))
    assert not older
    for earlier in (common, common + more, (common + more)[:cut], more):
        previous = (_flat(earlier), contributions(_flat(earlier))[0])
        got, older = contributions(_flat(common + more), previous)
        assert got == fresh
        if older:
            assert len(earlier) > len(common + more)


def test_an_older_reply_is_a_part_of_the_later_one() -> None:
    later = [b"a", b"1", b"b", b"2"]
    previous = (later, contributions(later)[0])
    assert contributions([b"a", b"1"], previous) == ((("a", b"1"),), True)
    assert contributions([], previous) == ((), False)


def test_garbled_contributions_are_refused() -> None:
    with pytest.raises(ValueError):
        contributions([b"a"])
    with pytest.raises(ValueError):
        contributions(b"a", None)
