"""The embedded event store: idempotent appends and the upgrade of older files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from cxloop.events.base import EVENTS_ARROW_SCHEMA, STAGE_MOVES_SCHEMA, EventQuery
from cxloop.events.duckdb_store import SCHEMA_VERSION, DuckDBEventStore

WHEN = datetime(2026, 3, 1, 12, tzinfo=UTC)


def rows(*ids: str, customer: int = 1, event: str = "Viewed") -> pa.Table:
    n = len(ids)
    data = {name: [None] * n for name in EVENTS_ARROW_SCHEMA.names}
    data.update(
        message_id=list(ids),
        type=["track"] * n,
        event=[event] * n,
        customer_id=[customer] * n,
        timestamp=[WHEN] * n,
        received_at=[WHEN] * n,
        properties=[f'{{"n": {i}}}' for i in range(n)],
    )
    return pa.Table.from_pydict(data, schema=EVENTS_ARROW_SCHEMA)


@pytest.fixture()
def store(tmp_path: Path) -> DuckDBEventStore:
    return DuckDBEventStore(str(tmp_path / "events.duckdb"))


def test_an_id_already_stored_is_not_stored_again(store: DuckDBEventStore) -> None:
    first = store.append(rows("a", "b", "c"))
    second = store.append(rows("b", "c", "d", event="Other"))
    assert (first.inserted, first.duplicates) == (3, 0)
    assert (second.inserted, second.duplicates) == (1, 2)
    stored = {r["message_id"]: r["event"] for r in store.query(EventQuery(limit=1000))}
    assert stored == {"a": "Viewed", "b": "Viewed", "c": "Viewed", "d": "Other"}


def test_an_id_repeated_within_one_batch_is_stored_once(store: DuckDBEventStore) -> None:
    result = store.append(rows("x", "y", "x", "x"))
    assert (result.inserted, result.duplicates) == (2, 2)
    assert store.count() == 2


def test_ids_sharing_a_key_are_both_kept(store: DuckDBEventStore) -> None:
    """The 64-bit key only narrows the join: two ids with the same key are two messages."""
    store.append(rows("first"))
    # Force a collision: give a second id the stored key of the first.
    store._con.execute("UPDATE events SET h = (md5_number('second') >> 64)::UBIGINT")
    result = store.append(rows("second"))
    assert result.inserted == 1
    assert {r["message_id"] for r in store.query(EventQuery(limit=1000))} == {"first", "second"}


def test_a_schema_1_file_is_upgraded_with_its_events(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE events (h UBIGINT PRIMARY KEY, message_id VARCHAR NOT NULL, "
        "type VARCHAR NOT NULL, event VARCHAR, name VARCHAR, customer_id BIGINT NOT NULL, "
        'user_id VARCHAR, anonymous_id VARCHAR, "timestamp" TIMESTAMPTZ NOT NULL, '
        "original_timestamp TIMESTAMPTZ, sent_at TIMESTAMPTZ, received_at TIMESTAMPTZ NOT NULL, "
        "channel VARCHAR, source VARCHAR, properties JSON, traits JSON, context JSON, "
        "integrations JSON, group_id VARCHAR, previous_id VARCHAR)"
    )
    con.execute("CREATE TABLE schema_info (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO schema_info VALUES ('events_schema', '1')")
    con.execute(
        "INSERT INTO events (h, message_id, type, event, customer_id, timestamp, received_at) "
        "VALUES ((md5_number('old') >> 64)::UBIGINT, 'old', 'track', 'Signed Up', 7, "
        "TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2025-01-01 00:00:00+00')"
    )
    con.close()

    store = DuckDBEventStore(str(path))
    assert store.count() == 1
    assert store.append(rows("old", "new")).inserted == 1
    version = store._con.execute(
        "SELECT value FROM schema_info WHERE key = 'events_schema'"
    ).fetchone()
    assert version == (SCHEMA_VERSION,)
    constraints = store._con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'events' "
        "AND constraint_type = 'PRIMARY KEY'"
    ).fetchone()
    assert constraints == (0,)
    store.close()


@pytest.mark.parametrize("first_open", [True, False])
def test_the_first_write_after_opening_may_be_a_merge(tmp_path: Path, first_open: bool) -> None:
    """`cxloop customers merge` moves events before anything else touches the store: the
    checks at opening must leave no unfinished result for it to trip over."""
    path = tmp_path / "events.duckdb"
    if not first_open:
        seed = DuckDBEventStore(str(path))
        seed.append(rows("a", "b", customer=2))
        seed.close()
    store = DuckDBEventStore(str(path))
    try:
        assert store.move_customers({2: 1}) == (0 if first_open else 2)
        store.write_stage_moves(1, [1, 2], STAGE_MOVES_SCHEMA.empty_table())  # registers too
    finally:
        store.close()
