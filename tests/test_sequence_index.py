"""The sequence index stays what a fresh read of the store gives, through appends (in any
order of times and customers), new names, identity merges and ties in time; and a funnel
read from it gets the rows the store's query returns."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from cxloop.analytics.funnel import _rows_query
from cxloop.analytics.funnel_spec import FunnelSpec, date_range
from cxloop.analytics.indexed import _local_days, funnel_rows
from cxloop.analytics.paths import PathsSpec, run_paths
from cxloop.analytics.periods import (
    RetentionSpec,
    TrendsSpec,
    _indexed_cohorts,
    _indexed_trend,
    _queried_cohorts,
    _queried_trend,
)
from cxloop.analytics.sql import DIALECTS
from cxloop.events.base import EVENT_COLUMNS
from cxloop.events.duckdb_store import DuckDBEventStore
from cxloop.events.sequences import SequenceIndex, Sequences

T0 = datetime(2026, 3, 2, tzinfo=UTC)
NAMES = ["A", "B", "C", "D"]


def batch(rows: list[tuple[int, int, str, str | None]], start: int) -> pa.Table:
    """Events (customer, seconds after T0, type, name) as the store takes them."""
    n = len(rows)
    columns: dict[str, list[object]] = {c: [None] * n for c in EVENT_COLUMNS}
    columns["message_id"] = [f"m{start + i:06d}" for i in range(n)]
    columns["type"] = [kind for _, _, kind, _ in rows]
    columns["event"] = [name if kind == "track" else None for _, _, kind, name in rows]
    columns["name"] = [name if kind != "track" else None for _, _, kind, name in rows]
    columns["customer_id"] = [c for c, _, _, _ in rows]
    columns["timestamp"] = [T0 + timedelta(seconds=s) for _, s, _, _ in rows]
    columns["received_at"] = [T0] * n
    return pa.table(columns)


def random_rows(
    rng: random.Random, n: int, customers: int
) -> list[tuple[int, int, str, str | None]]:
    out = []
    for _ in range(n):
        kind = rng.choice(["track", "track", "track", "page", "identify"])
        name = rng.choice([*NAMES, None]) if kind == "page" else rng.choice(NAMES)
        out.append((rng.randrange(customers), rng.randrange(100_000), kind, name))
    return out


def as_read(seqs: Sequences) -> list[tuple[int, int, str | None, bool]]:
    labels = seqs.labels
    return [
        (int(c), int(a), labels[k], k != 0)
        for c, a, k in zip(seqs.customer, seqs.at, seqs.code, strict=True)
    ]


def fresh(store: DuckDBEventStore) -> list[tuple[int, int, str | None, bool]]:
    """What a new index of the same store holds."""
    seqs = SequenceIndex(store.sql).current(0, 0)
    assert seqs is not None
    return as_read(seqs)


def test_the_index_follows_appends_merges_and_ties(tmp_path: Path) -> None:
    rng = random.Random(7)
    store = DuckDBEventStore(str(tmp_path / "events.duckdb"))
    try:
        sent = 0
        for round_ in range(8):
            rows = random_rows(rng, rng.choice([1, 30, 300]), customers=40 + 10 * round_)
            if round_ == 3:  # an event at the very time of one already held
                held = store.sql(
                    'SELECT customer_id, epoch_us("timestamp") AS at FROM events LIMIT 1'
                )
                c, at = held.column("customer_id")[0].as_py(), held.column("at")[0].as_py()
                rows.append((c, (at - int(T0.timestamp() * 1e6)) // 1_000_000, "track", "NEW"))
            store.append(batch(rows, sent))
            sent += len(rows)
            if round_ == 5:
                assert store.move_customers({1: 2, 3: 4}) > 0
            seqs = store.sequences()
            assert seqs is not None
            assert as_read(seqs) == fresh(store)
            assert np.array_equal(
                seqs.offsets[:-1], np.flatnonzero(np.r_[True, np.diff(seqs.customer) != 0])
            )
    finally:
        store.close()


def test_funnel_rows_from_the_index_are_the_querys_rows(tmp_path: Path) -> None:
    rng = random.Random(11)
    store = DuckDBEventStore(str(tmp_path / "events.duckdb"))
    try:
        sent = 0
        for _ in range(4):
            rows = random_rows(rng, 400, customers=60)
            store.append(batch(rows, sent))
            sent += len(rows)
        seqs = store.sequences()
        assert seqs is not None
        for order in ("ordered", "strict", "unordered"):
            spec = FunnelSpec.model_validate(
                {
                    "steps": [{"event": "A"}, {"event": "B"}, {"event": "C"}],
                    "order": order,
                    "exclusions": [{"event": "D"}] if order != "unordered" else [],
                }
            )
            queried = store.sql(*_rows_query(spec, DIALECTS["duckdb"]))
            indexed = funnel_rows(spec, seqs)
            key = ["customer_id", "at", "steps", "exclusions"]
            assert indexed.num_rows == queried.num_rows > 0
            by = [(k, "ascending") for k in key]
            assert (
                indexed.select(key).sort_by(by).to_pylist()
                == queried.select(key).sort_by(by).to_pylist()
            )
    finally:
        store.close()


def test_local_days_follow_the_zones_rules_across_offset_changes() -> None:
    rng = random.Random(5)
    # A year around DST changes, and an hour either side of a change at a tight spacing.
    spring = int(datetime(2026, 3, 8, 7, 0, tzinfo=UTC).timestamp() * 1_000_000)
    times = [rng.randrange(1_767_225_600, 1_798_761_600) * 1_000_000 for _ in range(3000)]
    times += [spring + k * 60_000_000 for k in range(-90, 90)]
    at = np.array(sorted(times), dtype=np.int64)
    for name in ("UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"):
        zone = ZoneInfo(name)
        expected = [
            (datetime.fromtimestamp(t / 1e6, tz=zone).date() - date(1970, 1, 1)).days
            for t in at.tolist()
        ]
        assert _local_days(at, zone).tolist() == expected, name


def test_trends_and_retention_from_the_index_are_the_querys(tmp_path: Path) -> None:
    rng = random.Random(3)
    store = DuckDBEventStore(str(tmp_path / "events.duckdb"))
    try:
        rows = [(c, rng.randrange(0, 120 * 86400), kind, name)
                for c, _, kind, name in random_rows(rng, 3000, customers=80)]  # fmt: skip
        store.append(batch(rows, 0))
        seqs = store.sequences()
        assert seqs is not None
        for zone in (ZoneInfo("UTC"), ZoneInfo("America/New_York")):
            for interval in ("day", "week", "month"):
                trend = TrendsSpec.model_validate({"event": {"event": "A"}, "interval": interval})
                start, end = date_range("2026-03-10", "2026-05-01", zone)
                got = _indexed_trend(trend, seqs, zone, start, end)
                want = _queried_trend(trend, store, zone, start, end)[:3]
                order = np.lexsort((want[1], want[0]))
                assert [g.tolist() for g in got] == [w[order].tolist() for w in want]
                for returning in ("on", "on_or_after"):
                    spec = RetentionSpec.model_validate(
                        {
                            "start_event": {"event": "B"},
                            "period": interval,
                            "periods": 6,
                            "returning": returning,
                            "date_from": "2026-03-05",
                        }
                    )
                    customers, cohort, back = _indexed_cohorts(spec, seqs, zone)
                    queried = _queried_cohorts(spec, store, zone)[:3]
                    mine = sorted(
                        zip(customers.tolist(), cohort.tolist(), back.tolist(), strict=True)
                    )
                    theirs = sorted(zip(*(a.tolist() for a in queried), strict=True))
                    assert mine == theirs and len(mine) > 10
    finally:
        store.close()


def test_days_before_1970_and_far_off_dates_are_counted_as_the_query_counts(
    tmp_path: Path,
) -> None:
    store = DuckDBEventStore(str(tmp_path / "events.duckdb"))
    try:
        epoch = -int(T0.timestamp())  # seconds after T0 of 1970-01-01T00:00Z
        far = int((datetime(2300, 7, 1, tzinfo=UTC) - T0).total_seconds())
        rows = [(1, epoch, "track", "A"), (2, 0, "track", "A"), (3, far, "track", "A")]
        store.append(batch(rows, 0))
        seqs = store.sequences()
        assert seqs is not None
        zone = ZoneInfo("America/New_York")
        trend = TrendsSpec.model_validate({"event": {"event": "A"}, "interval": "day"})
        got = _indexed_trend(trend, seqs, zone, None, None)
        want = _queried_trend(trend, store, zone, None, None)[:3]
        order = np.lexsort((want[1], want[0]))
        assert [g.tolist() for g in got] == [w[order].tolist() for w in want]
        assert got[0].tolist()[0] == -1  # 1969-12-31 in New York
    finally:
        store.close()


def test_paths_of_an_anchor_nobody_did_are_empty_on_both_paths(tmp_path: Path) -> None:
    store = DuckDBEventStore(str(tmp_path / "events.duckdb"))
    try:
        store.append(batch([(1, 0, "track", "A"), (1, 5, "identify", None)], 0))
        spec = PathsSpec.model_validate({"event": {"event": "Nope"}})
        zone = ZoneInfo("UTC")
        assert run_paths(spec, store, zone)["paths"] == []  # from the index
        filtered = PathsSpec.model_validate(
            {"event": {"event": "Nope", "filters": [{"property": "p", "op": "eq", "value": "x"}]}}
        )
        assert run_paths(filtered, store, zone)["paths"] == []  # by query
    finally:
        store.close()
