"""Event store: the append-only stream of customer events, on DuckDB or PostgreSQL."""

from cxloop.events.base import EVENT_COLUMNS, EVENTS_ARROW_SCHEMA, EventQuery, EventStore
from cxloop.events.factory import open_event_store

__all__ = ["EVENTS_ARROW_SCHEMA", "EVENT_COLUMNS", "EventQuery", "EventStore", "open_event_store"]
