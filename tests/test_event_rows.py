"""Event-store rows built from validated messages: exact times, whatever their zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from cxloop.ingest.rows import _timestamps

TS = pa.timestamp("us", tz="UTC")
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
)
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones
)


@settings(deadline=None)  # the first example pays pyarrow's warm-up
@given(st.lists(st.one_of(st.none(), moments), max_size=40), st.data())
def test_timestamps_match_arrows_own_conversion(
    values: list[datetime | None], data: st.DataObject
) -> None:
    # Runs of one repeated object, as a request's receive time is, and equal values that
    # are different objects.
    repeated = data.draw(st.lists(st.integers(0, 4), min_size=len(values), max_size=len(values)))
    expanded = [value for value, times in zip(values, repeated, strict=True) for _ in range(times)]
    assert _timestamps(expanded, TS).equals(pa.array(expanded, TS))


def test_a_repeated_object_after_a_different_one_is_converted_again() -> None:
    first = datetime(2026, 1, 1, tzinfo=UTC)
    second = datetime(2026, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    values = [first, first, None, None, second, first]
    assert _timestamps(values, TS).to_pylist() == [first, first, None, None, first, first]
