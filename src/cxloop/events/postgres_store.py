"""PostgreSQL event store, for a one-database deployment.

Rows arrive as Arrow; they are streamed with COPY (CSV) into a temporary table and moved
into ``events`` with ON CONFLICT DO NOTHING, which gives idempotency on ``message_id``
without a round trip per row.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg.rows import dict_row

from cxloop.events.base import (
    EVENT_COLUMNS,
    EVENTS_ARROW_SCHEMA,
    JSON_COLUMNS,
    TOUCH_COLUMNS,
    TOUCH_SCHEMA,
    AppendResult,
    EventQuery,
)
from cxloop.events.sql import where_clause

_COLUMNS_SQL = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)

DDL = """
CREATE TABLE IF NOT EXISTS events (
    message_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    event TEXT,
    name TEXT,
    customer_id BIGINT NOT NULL,
    user_id TEXT,
    anonymous_id TEXT,
    "timestamp" TIMESTAMPTZ NOT NULL,
    original_timestamp TIMESTAMPTZ,
    sent_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL,
    channel TEXT,
    source TEXT,
    properties JSONB,
    traits JSONB,
    context JSONB,
    integrations JSONB,
    group_id TEXT,
    previous_id TEXT
);
CREATE INDEX IF NOT EXISTS ix_events_customer_ts ON events (customer_id, "timestamp");
CREATE INDEX IF NOT EXISTS ix_events_event_ts ON events (event, "timestamp");
CREATE INDEX IF NOT EXISTS ix_events_ts ON events ("timestamp");
"""


def _conninfo(url: str) -> str:
    """Accept SQLAlchemy-style URLs (postgresql+psycopg://) as psycopg conninfo."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class PostgresEventStore:
    backend = "postgres"

    def __init__(self, url: str) -> None:
        self._conninfo = _conninfo(url)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with psycopg.connect(self._conninfo, autocommit=True) as con:
            con.execute("SELECT pg_advisory_lock(727171)")
            try:
                con.execute(DDL)
            finally:
                con.execute("SELECT pg_advisory_unlock(727171)")

    def _connection(self) -> psycopg.Connection[Any]:
        con: psycopg.Connection[Any] | None = getattr(self._local, "con", None)
        if con is None or con.closed:
            con = psycopg.connect(self._conninfo, autocommit=True)
            self._local.con = con
        return con

    def append(
        self, table: pa.Table, *, before_commit: Callable[[], None] | None = None
    ) -> AppendResult:
        if table.num_rows == 0:
            return AppendResult(0, 0)
        buffer = io.BytesIO()
        pacsv.write_csv(
            table.select(list(EVENT_COLUMNS)),
            buffer,
            pacsv.WriteOptions(include_header=False, quoting_style="needed"),
        )
        con = self._connection()
        with self._write_lock, con.transaction(), con.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS incoming "
                "(LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with cur.copy(f"COPY incoming ({_COLUMNS_SQL}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(buffer.getvalue())
            cur.execute(
                f"INSERT INTO events ({_COLUMNS_SQL}) SELECT DISTINCT ON (message_id) "
                f"{_COLUMNS_SQL} FROM incoming ON CONFLICT (message_id) DO NOTHING"
            )
            inserted = cur.rowcount
            if before_commit is not None:
                before_commit()
        return AppendResult(inserted, table.num_rows - inserted)

    def move_customers(self, moves: dict[int, int]) -> int:
        if not moves:
            return 0
        con = self._connection()
        with self._write_lock, con.transaction(), con.cursor() as cur:
            cur.execute(
                "UPDATE events SET customer_id = m.dst FROM unnest(%s::bigint[], %s::bigint[]) "
                "AS m(src, dst) WHERE events.customer_id = m.src",
                [list(moves), list(moves.values())],
            )
            return cur.rowcount

    def query(self, query: EventQuery) -> list[dict[str, Any]]:
        where, params = where_clause(query, "%s")
        con = self._connection()
        with con.cursor(row_factory=dict_row) as cur:
            cur.execute(
                f"SELECT {_COLUMNS_SQL} FROM events{where} "
                f'ORDER BY "timestamp" DESC, message_id LIMIT %s OFFSET %s',
                [*params, query.limit, query.offset],
            )
            rows = cur.fetchall()
        for row in rows:
            for column in JSON_COLUMNS:
                row[column] = row[column] or {}
        return rows

    def ping(self) -> None:
        self._connection().execute("SELECT 1").fetchone()

    def count(self, query: EventQuery | None = None) -> int:
        where, params = where_clause(query, "%s")
        row = self._connection().execute(f"SELECT count(*) FROM events{where}", params).fetchone()
        return int(row[0]) if row else 0

    def events_per_day(self, timezone: str, days: int | None = None) -> list[tuple[date, int]]:
        since = ""
        params: list[Any] = [timezone]
        if days is not None:
            since = ' WHERE "timestamp" >= now() - make_interval(days => %s)'
            params.append(days)
        rows = (
            self._connection()
            .execute(
                f'SELECT ("timestamp" AT TIME ZONE %s)::date AS day, count(*) FROM events{since} '
                "GROUP BY 1 ORDER BY 1",
                params,
            )
            .fetchall()
        )
        return [(day, int(n)) for day, n in rows]

    def customer_events(
        self, customer_ids: Sequence[int] | None = None, *, batch_rows: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        # JSON columns come back as text, as the DuckDB store returns them.
        columns = ", ".join(
            f'"{c}"::text' if c in JSON_COLUMNS else f'"{c}"' for c in TOUCH_COLUMNS
        )
        where: str = ""
        params: list[Any] = []
        if customer_ids is not None:
            if not customer_ids:
                return
            where, params = " WHERE customer_id = ANY(%s)", [list(customer_ids)]
        sql = f'SELECT {columns} FROM events{where} ORDER BY customer_id, "timestamp", message_id'

        with psycopg.connect(self._conninfo) as con, con.cursor(name="cx_touches") as cur:
            cur.itersize = batch_rows
            cur.execute(sql, params)
            while True:
                rows = cur.fetchmany(batch_rows)
                if not rows:
                    break
                arrays = [
                    pa.array(list(values), TOUCH_SCHEMA.field(i).type)
                    for i, values in enumerate(zip(*rows, strict=True))
                ]
                yield pa.RecordBatch.from_arrays(arrays, schema=TOUCH_SCHEMA)

    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> pa.Table:
        """Run a read-only query; columns come back as Arrow, typed from their values."""
        values = params if isinstance(params, Mapping) else list(params)
        cur = self._connection().execute(query, values)
        names = [column.name for column in cur.description or ()]
        rows = cur.fetchall()
        return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})

    def all_events(
        self,
        *,
        batch_rows: int = 200_000,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Every stored event (with ``start <= timestamp < end``, when given), as
        EVENTS_ARROW_SCHEMA batches (JSON columns as text)."""
        columns = ", ".join(
            f'"{c}"::text' if c in JSON_COLUMNS else f'"{c}"' for c in EVENTS_ARROW_SCHEMA.names
        )
        where, params = where_clause(EventQuery(start=start, end=end), "%s")
        with psycopg.connect(self._conninfo) as con, con.cursor(name="cx_export") as cur:
            cur.itersize = batch_rows
            cur.execute(f"SELECT {columns} FROM events{where}", params)
            while rows := cur.fetchmany(batch_rows):
                yield pa.RecordBatch.from_arrays(
                    [
                        pa.array(list(values), EVENTS_ARROW_SCHEMA.field(i).type)
                        for i, values in enumerate(zip(*rows, strict=True))
                    ],
                    schema=EVENTS_ARROW_SCHEMA,
                )

    def customer_bounds(self) -> pa.Table:
        rows = (
            self._connection()
            .execute(
                'SELECT customer_id, min("timestamp"), max("timestamp"), count(*) FROM events '
                "GROUP BY customer_id"
            )
            .fetchall()
        )
        columns: list[Any] = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
        ts = pa.timestamp("us", tz="UTC")
        return pa.table(
            {
                "customer_id": pa.array(columns[0], pa.int64()),
                "first_seen": pa.array(columns[1], ts),
                "last_seen": pa.array(columns[2], ts),
                "events": pa.array(columns[3], pa.int64()),
            }
        )

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
