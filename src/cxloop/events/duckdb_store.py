"""DuckDB event store: one columnar file, written by one process, appended as Arrow.

Idempotency on ``messageId`` is an anti-join, not a primary key: an ART index costs two to
three times the append itself and grows with the table (and must fit in memory), while a
hash join of the incoming batch against a 64-bit key column (the top half of the id's MD5)
is a scan DuckDB runs in parallel. The key only narrows the join; the id text decides, so
a hash collision never drops a distinct message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from cxloop.events.base import (
    EVENT_COLUMNS,
    EVENTS_ARROW_SCHEMA,
    JSON_COLUMNS,
    STAGE_MOVES_SCHEMA,
    TOUCH_COLUMNS,
    TOUCH_SCHEMA,
    AppendResult,
    EventQuery,
)
from cxloop.events.factory import EventStoreUnavailable
from cxloop.events.sequences import SequenceIndex, Sequences
from cxloop.events.sql import where_clause

_COLUMNS_SQL = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
_KEY = "(md5_number(message_id) >> 64)::UBIGINT"
SCHEMA_VERSION = "2"

_EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    h UBIGINT NOT NULL,
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
"""
_STAGE_MOVES_TABLE = """
CREATE TABLE IF NOT EXISTS stage_moves (
    model_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    seq INTEGER NOT NULL,
    cycle INTEGER NOT NULL,
    kind VARCHAR NOT NULL,
    to_stage VARCHAR,
    "at" TIMESTAMPTZ NOT NULL,
    reason VARCHAR,
    skipped VARCHAR[],
    next_kind VARCHAR,
    next_at TIMESTAMPTZ
);
"""
_LINK_NEXT = """
UPDATE stage_moves m SET next_kind = n.next_kind, next_at = n.next_at
FROM (
  SELECT customer_id, seq,
         lead(kind) OVER w AS next_kind, lead("at") OVER w AS next_at
  FROM stage_moves
  WHERE model_id = ? AND customer_id IN (SELECT DISTINCT customer_id FROM incoming_moves)
  WINDOW w AS (PARTITION BY customer_id ORDER BY seq)
) n
WHERE m.model_id = ? AND m.customer_id = n.customer_id AND m.seq = n.seq
  AND (m.next_kind IS DISTINCT FROM n.next_kind OR m.next_at IS DISTINCT FROM n.next_at)
"""
STAGE_MOVES_VERSION = "2"
DDL = _EVENTS_TABLE.format(name="events") + (
    "CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR);\n"
    f"INSERT OR IGNORE INTO schema_info VALUES ('events_schema', '{SCHEMA_VERSION}');\n"
)


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
        # Bumped after each write, so the sequence index knows what it has to catch up on.
        self._appends = self._moves = 0
        self._sequences = SequenceIndex(self.sql)
        if not read_only:
            self._con.execute(DDL)
            _upgrade(self._con)
            _stage_moves_table(self._con)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for the calling thread (DuckDB connections are not shared)."""
        return self._con.cursor()

    def append(
        self, table: pa.Table, *, before_commit: Callable[[], None] | None = None
    ) -> AppendResult:
        if table.num_rows == 0:
            return AppendResult(0, 0)
        batch = table.select(list(EVENT_COLUMNS))
        # A batch normally holds each id once; only when it does not is the costlier
        # first-of-each-id step added to the insert.
        repeats = len(pc.unique(batch["message_id"])) < batch.num_rows
        with self._write_lock:
            con = self._con
            con.execute("BEGIN")
            try:
                con.register("incoming", batch)
                row = con.execute(_insert_sql("incoming", first_of_each_id=repeats)).fetchone()
                con.unregister("incoming")
                if before_commit is not None:
                    before_commit()
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._appends += 1
        inserted = int(row[0]) if row else 0
        return AppendResult(inserted, batch.num_rows - inserted)

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
                self._moves += 1
        return int(row[0]) if row else 0

    def sequences(self) -> Sequences | None:
        """The sequence index, up to date with every write of this process (the only one
        that can write the file)."""
        return self._sequences.current(self._appends, self._moves)

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

    # -- the stage-history copy (see cxloop.lifecycle.mirror) --------------------------------

    def write_stage_moves(
        self, model_id: int, clear: Sequence[int] | None, moves: pa.Table
    ) -> None:
        """Forget the moves of ``clear`` (every customer when None), then add ``moves``."""
        with self._write_lock:
            con = self._con
            con.execute("BEGIN")
            try:
                if clear is None:
                    con.execute("DELETE FROM stage_moves WHERE model_id = ?", [model_id])
                elif clear:
                    con.register("cleared", pa.table({"id": pa.array(list(clear), pa.int64())}))
                    con.execute(
                        "DELETE FROM stage_moves WHERE model_id = ? "
                        "AND customer_id IN (SELECT id FROM cleared)",
                        [model_id],
                    )
                    con.unregister("cleared")
                if moves.num_rows:
                    con.register("incoming_moves", moves.select(STAGE_MOVES_SCHEMA.names))
                    columns = ", ".join(f'"{c}"' for c in STAGE_MOVES_SCHEMA.names)
                    con.execute(
                        f"INSERT INTO stage_moves ({columns}) SELECT {columns} FROM incoming_moves"
                    )
                    # Each move knows the customer's next one, so reports need no window.
                    con.execute(_LINK_NEXT, [model_id, model_id])
                    con.unregister("incoming_moves")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def stage_move_counts(self) -> dict[int, int]:
        rows = (
            self._cursor()
            .execute("SELECT model_id, count(*) FROM stage_moves GROUP BY 1")
            .fetchall()
        )
        return {int(m): int(n) for m, n in rows}

    def sql(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] = (), **tables: pa.Table
    ) -> pa.Table:
        """Run a read-only query (with Arrow tables registered under the given names)."""
        cur = self._cursor()
        for name, table in tables.items():
            cur.register(name, table)
        values = dict(params) if isinstance(params, Mapping) else list(params)
        return cur.sql(query, params=values).to_arrow_table()

    def customer_bounds(self) -> pa.Table:
        return (
            self._cursor()
            .sql(
                'SELECT customer_id, min("timestamp") AS first_seen, '
                'max("timestamp") AS last_seen, count(*) AS events FROM events GROUP BY 1'
            )
            .to_arrow_table()
        )

    def customer_events(
        self, customer_ids: Sequence[int] | None = None, *, batch_rows: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        cur = self._cursor()
        columns = ", ".join(f'e."{c}"' for c in TOUCH_COLUMNS)
        order = ' ORDER BY e.customer_id, e."timestamp", e.message_id'
        if customer_ids is None:
            relation = cur.sql(f"SELECT {columns} FROM events e{order}")
        else:
            if not customer_ids:
                return
            cur.register("wanted", pa.table({"id": pa.array(list(customer_ids), pa.int64())}))
            relation = cur.sql(
                f"SELECT {columns} FROM events e SEMI JOIN wanted w ON e.customer_id = w.id{order}"
            )
        reader = relation.to_arrow_reader(batch_rows)
        for batch in reader:
            yield batch.cast(TOUCH_SCHEMA) if batch.schema != TOUCH_SCHEMA else batch

    def all_events(
        self,
        *,
        batch_rows: int = 200_000,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Every stored event (with ``start <= timestamp < end``, when given), as
        EVENTS_ARROW_SCHEMA batches (JSON columns as text)."""
        where, params = where_clause(EventQuery(start=start, end=end), "?")
        reader = (
            self._cursor()
            .sql(f"SELECT {_COLUMNS_SQL} FROM events{where}", params=params)
            .to_arrow_reader(batch_rows)
        )
        for batch in reader:
            yield batch.cast(EVENTS_ARROW_SCHEMA) if batch.schema != EVENTS_ARROW_SCHEMA else batch

    def close(self) -> None:
        self._con.close()


def _decode_row(row: dict[str, Any]) -> dict[str, Any]:
    for column in JSON_COLUMNS:
        value = row.get(column)
        row[column] = msgspec.json.decode(value) if value else {}
    return row


def _insert_sql(relation: str, *, first_of_each_id: bool) -> str:
    """Rows whose id is not stored yet (the key narrows the join, the id decides)."""
    source = f"SELECT {_KEY} AS h, {_COLUMNS_SQL} FROM {relation}"
    if first_of_each_id:
        source += " QUALIFY row_number() OVER (PARTITION BY message_id) = 1"
    return (
        f"INSERT INTO events (h, {_COLUMNS_SQL}) SELECT i.h, {_cols('i')} FROM ({source}) i "
        "WHERE NOT EXISTS (SELECT 1 FROM events e "
        "WHERE e.h = i.h AND e.message_id = i.message_id)"
    )


def _cols(alias: str) -> str:
    return ", ".join(f'{alias}."{c}"' for c in EVENT_COLUMNS)


def _stage_moves_table(con: duckdb.DuckDBPyConnection) -> None:
    """The copy of the stage history is derived data: a table of another layout is dropped
    and created afresh (the project copies the moves again when it opens)."""
    # fetchall, not fetchone: DuckDB 2.0.1 refuses to register an Arrow table on a
    # connection whose last SELECT was not read to its end
    row = next(
        iter(con.execute("SELECT value FROM schema_info WHERE key = 'stage_moves'").fetchall()),
        None,
    )
    if row is not None and row[0] == STAGE_MOVES_VERSION:
        return
    con.execute("DROP TABLE IF EXISTS stage_moves")
    con.execute(_STAGE_MOVES_TABLE)
    con.execute(
        "INSERT OR REPLACE INTO schema_info VALUES ('stage_moves', ?)", [STAGE_MOVES_VERSION]
    )


def _upgrade(con: duckdb.DuckDBPyConnection) -> None:
    """Files of schema 1 keyed ``h`` as a primary key: copy them into the key-less table."""
    row = next(
        iter(con.execute("SELECT value FROM schema_info WHERE key = 'events_schema'").fetchall()),
        None,
    )
    if row is None or row[0] == SCHEMA_VERSION:
        return
    con.execute("BEGIN")
    try:
        con.execute(_EVENTS_TABLE.format(name="events_v2"))
        con.execute(f"INSERT INTO events_v2 SELECT h, {_COLUMNS_SQL} FROM events").fetchall()
        con.execute("DROP TABLE events")
        con.execute("ALTER TABLE events_v2 RENAME TO events")
        con.execute(
            "UPDATE schema_info SET value = ? WHERE key = 'events_schema'", [SCHEMA_VERSION]
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
