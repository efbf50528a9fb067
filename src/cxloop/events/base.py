"""What every event-store backend offers, and the one row layout they share."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

_TS = pa.timestamp("us", tz="UTC")

# The column layout of an event, as the ingestion pipeline builds it and readers return it.
EVENTS_ARROW_SCHEMA = pa.schema(
    [
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("event", pa.string()),
        pa.field("name", pa.string()),
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("anonymous_id", pa.string()),
        pa.field("timestamp", _TS, nullable=False),
        pa.field("original_timestamp", _TS),
        pa.field("sent_at", _TS),
        pa.field("received_at", _TS, nullable=False),
        pa.field("channel", pa.string()),
        pa.field("source", pa.string()),
        pa.field("properties", pa.string()),
        pa.field("traits", pa.string()),
        pa.field("context", pa.string()),
        pa.field("integrations", pa.string()),
        pa.field("group_id", pa.string()),
        pa.field("previous_id", pa.string()),
    ]
)
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENTS_ARROW_SCHEMA.names)
JSON_COLUMNS = ("properties", "traits", "context", "integrations")
# A copy of the app database's stage_transitions, kept where reports can scan it fast.
STAGE_MOVES_SCHEMA = pa.schema(
    [
        pa.field("model_id", pa.int64(), nullable=False),
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("seq", pa.int32(), nullable=False),
        pa.field("cycle", pa.int32(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("to_stage", pa.string()),
        pa.field("at", _TS, nullable=False),
        pa.field("reason", pa.string()),
        pa.field("skipped", pa.list_(pa.string())),
    ]
)
# What the lifecycle engine reads of an event.
TOUCH_COLUMNS = (
    "customer_id",
    "timestamp",
    "message_id",
    "type",
    "event",
    "name",
    "properties",
    "traits",
)
TOUCH_SCHEMA = pa.schema([EVENTS_ARROW_SCHEMA.field(c) for c in TOUCH_COLUMNS])


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_datetimes(values: pa.Array | pa.ChunkedArray) -> list[datetime | None]:
    """Aware UTC datetimes of a timestamp column. Arrow's own ``to_pylist`` builds time-zone
    objects value by value (microseconds each); integers plus a timedelta cost a tenth."""
    micros = pc.cast(values.cast(pa.timestamp("us", tz="UTC")), pa.int64()).to_pylist()
    return [None if v is None else _EPOCH + timedelta(microseconds=v) for v in micros]


@dataclass(frozen=True)
class AppendResult:
    inserted: int
    duplicates: int


@dataclass(frozen=True)
class EventQuery:
    """A page of events, newest first, narrowed by customer, name and time."""

    customer_ids: tuple[int, ...] | None = None
    event: str | None = None
    type: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 100
    offset: int = 0


class EventStore(Protocol):
    """A backend of the event store; one instance per process owns its connections."""

    backend: str

    def append(
        self, table: pa.Table, *, before_commit: Callable[[], None] | None = None
    ) -> AppendResult:
        """Store the rows durably, skipping message ids already stored.

        ``before_commit`` runs after the rows are written and before they commit; if it
        raises, nothing is stored. It lets a caller write the app database at the same time
        and still never leave events behind for customers that were not created.
        """
        ...

    def move_customers(self, moves: dict[int, int]) -> int:
        """Re-point every event of each merged customer (key) to its survivor (value)."""
        ...

    def query(self, query: EventQuery) -> list[dict[str, Any]]: ...

    def count(self, query: EventQuery | None = None) -> int: ...

    def ping(self) -> None:
        """Raise if the store cannot answer a trivial query (it is down, not the data bad)."""
        ...

    def events_per_day(self, timezone: str, days: int | None = None) -> list[tuple[date, int]]: ...

    def customer_bounds(self) -> pa.Table:
        """customer_id, first_seen, last_seen, events — derived from the stream."""
        ...

    def customer_events(
        self, customer_ids: Sequence[int] | None = None, *, batch_rows: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """Every event of these customers (all customers when None) as TOUCH_SCHEMA
        batches, ordered by customer, timestamp and message id; a customer's events may
        span two batches."""
        ...

    def close(self) -> None: ...
