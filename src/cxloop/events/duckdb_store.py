"""DuckDB event store: one columnar file, written by one process, appended as Arrow.

Idempotency on ``messageId`` uses a 64-bit key (the top half of the message id's MD5) as
the primary key: an ART index on eight bytes is about twice as fast to maintain as one on
the id text. A true hash collision is detected (the stored id differs) and the newcomer is
stored under a salted key, so no distinct message is ever dropped as a duplicate.
"""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from cxloop.events.base import EVENT_COLUMNS, JSON_COLUMNS, AppendResult, EventQuery
from cxloop.events.factory import EventStoreUnavailable
from cxloop.events.sql import where_clause

_COLUMNS_SQL = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
_KEY = "(md5_number({expr}) >> 64)::UBIGINT"

DDL = """
CREATE TABLE IF NOT EXISTS events (
    h UBIGINT PRIMARY KEY,
    message_id VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    event VARCHAR,
    name VARCHAR,
    customer_id BIGINT NOT NULL,
    user_id VARCHAR,
    anonymous_id VARCHAR,
    "timestamp" TIMESTAMPTZ NOT NULL,
    original_timestamp TIMESTAMPTZ,
    sent_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL,
    channel VARCHAR,
    source VARCHAR,
    properties JSON,
    traits JSON,
    context JSON,
    integrations JSON,
    group_id VARCHAR,
    previous_id VARCHAR
);
CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR);
INSERT OR IGNORE INTO schema_info VALUES ('events_schema', '1');
"""


class DuckDBEventStore:
    backend = "duckdb"

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(path, read_only=read_only)
            self._con.execute("SET TimeZone = 'UTC'")
            if not read_only:
                # Checkpoints rewrite table and index blocks and stall appends for a while;
                # fewer, larger ones cost less in total (the WAL replays on the next open).
                self._con.execute("SET checkpoint_threshold = '256MB'")
        except duckdb.IOException as exc:
            raise EventStoreUnavailable(
                f"the event store {path} is in use by another process ({exc})"
            ) from exc
        self._write_lock = threading.Lock()
        if not read_only:
            self._con.execute(DDL)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for the calling thread (DuckDB connections are not shared)."""
        return self._con.cursor()

    def append(self, table: pa.Table) -> AppendResult:
        if table.num_rows == 0:
            return AppendResult(0, 0)
        batch = table.select(list(EVENT_COLUMNS))
        with self._write_lock:
            con = self._con
            con.execute("BEGIN")
            try:
                con.register("incoming", batch)
                inserted = self._insert(con, "incoming", _KEY.format(expr="message_id"))
                if inserted < batch.num_rows:
                    inserted += self._store_collisions(con)
                con.unregister("incoming")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return AppendResult(inserted, batch.num_rows - inserted)

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, relation: str, key_sql: str) -> int:
        row = con.execute(
            f"INSERT OR IGNORE INTO events (h, {_COLUMNS_SQL}) "
            f"SELECT {key_sql}, {_COLUMNS_SQL} FROM {relation}"
        ).fetchone()
        return int(row[0]) if row else 0

    def _store_collisions(self, con: duckdb.DuckDBPyConnection) -> int:
        """Rows the insert skipped whose key belongs to a different message id."""
        clashes = con.execute(
            f"SELECT i.message_id FROM incoming i JOIN events e "
            f"ON e.h = {_KEY.format(expr='i.message_id')} WHERE e.message_id <> i.message_id"
        ).fetchall()
        stored = 0
        for (message_id,) in clashes:
            salt = 1
            while True:
                key_sql = _KEY.format(expr=f"(message_id || '#{salt}')")
                found = con.execute(
                    f"SELECT e.message_id FROM events e WHERE e.h = "
                    f"(SELECT {key_sql} FROM incoming WHERE message_id = ? LIMIT 1)",
                    [message_id],
                ).fetchone()
                if found is None:
                    con.execute(
                        f"INSERT INTO events (h, {_COLUMNS_SQL}) SELECT {key_sql}, {_COLUMNS_SQL} "
                        f"FROM incoming WHERE message_id = ? LIMIT 1",
                        [message_id],
                    )
                    stored += 1
                    break
                if found[0] == message_id:
                    break
                salt += 1
        return stored

    def move_customers(self, moves: dict[int, int]) -> int:
        if not moves:
            return 0
        mapping = pa.table(
            {"src": pa.array(list(moves), pa.int64()), "dst": pa.array(moves.values(), pa.int64())}
        )
        with self._write_lock:
            con = self._con
            con.register("moves", mapping)
            try:
                row = con.execute(
                    "UPDATE events SET customer_id = moves.dst FROM moves "
                    "WHERE events.customer_id = moves.src"
                ).fetchone()
            finally:
                con.unregister("moves")
        return int(row[0]) if row else 0

    def query(self, query: EventQuery) -> list[dict[str, Any]]:
        where, params = where_clause(query, "?")
        cur = self._cursor()
        rows = cur.execute(
            f"SELECT {_COLUMNS_SQL} FROM events{where} "
            f'ORDER BY "timestamp" DESC, message_id LIMIT ? OFFSET ?',
            [*params, query.limit, query.offset],
        ).fetchall()
        names = [d[0] for d in cur.description or []]
        return [_decode_row(dict(zip(names, row, strict=True))) for row in rows]

    def ping(self) -> None:
        self._cursor().execute("SELECT 1").fetchone()

    def count(self, query: EventQuery | None = None) -> int:
        where, params = where_clause(query, "?")
        row = self._cursor().execute(f"SELECT count(*) FROM events{where}", params).fetchone()
        return int(row[0]) if row else 0

    def events_per_day(self, timezone: str, days: int | None = None) -> list[tuple[date, int]]:
        cur = self._cursor()
        since = ""
        params: list[Any] = [timezone]
        if days is not None:
            since = ' WHERE "timestamp" >= now() - to_days(?)'
            params.append(days)
        rows = cur.execute(
            f'SELECT CAST(timezone(?, "timestamp") AS DATE) AS day, count(*) FROM events'
            f"{since} GROUP BY 1 ORDER BY 1",
            params,
        ).fetchall()
        return [(day, int(n)) for day, n in rows]

    def customer_bounds(self) -> pa.Table:
        return (
            self._cursor()
            .sql(
                'SELECT customer_id, min("timestamp") AS first_seen, '
                'max("timestamp") AS last_seen, count(*) AS events FROM events GROUP BY 1'
            )
            .to_arrow_table()
        )

    def close(self) -> None:
        self._con.close()


def _decode_row(row: dict[str, Any]) -> dict[str, Any]:
    for column in JSON_COLUMNS:
        value = row.get(column)
        row[column] = msgspec.json.decode(value) if value else {}
    return row
