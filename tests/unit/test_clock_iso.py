"""``iso`` keeps the text of the last second it formatted (a saga stamps a dozen records):
it must be, character for character, what ``datetime`` writes, its microseconds rounded
half to even before the milliseconds are cut, across seconds, days and 1970."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import iso


def reference(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


EDGES = [0.0, -0.0, 1e-7, 0.9999995, 0.9999994999, 0.9999996, -0.5, -1e-7, -0.9999996,
         1.0000005, 1796233505.9999995, 1796233505.9995, 2**31 + 0.4999995,
         253402300799.9994, 86399.9999996, 1796169599.9996]


def test_the_edges_of_the_rounding_and_of_the_second() -> None:
    assert [iso(w) for w in EDGES] == [reference(w) for w in EDGES]


@settings(max_examples=3000)
@given(st.floats(min_value=-1e9, max_value=4e9, allow_nan=False))
def test_any_time_is_written_as_datetime_writes_it(wall: float) -> None:
    assert iso(wall) == reference(wall)


@given(st.floats(min_value=0, max_value=4e9), st.lists(
    st.floats(min_value=0, max_value=2.5), min_size=1, max_size=50))
def test_stamps_a_moment_apart_whatever_came_before(start: float, steps: list[float]) -> None:
    wall = start
    for step in steps:  # the cached second is another one now and then, or the same
        wall += step
        assert iso(wall) == reference(wall)
