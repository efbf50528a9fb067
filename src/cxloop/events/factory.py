"""Open the event store a URL names: duckdb:///file or postgresql://…"""

from __future__ import annotations

from cxloop.events.base import EventStore


class EventStoreUnavailable(RuntimeError):
    """The store cannot be opened by this process (another process holds the DuckDB file)."""


def open_event_store(url: str, *, read_only: bool = False) -> EventStore:
    if url.startswith("duckdb"):
        from cxloop.events.duckdb_store import DuckDBEventStore

        return DuckDBEventStore(url.split("///", 1)[-1] or ":memory:", read_only=read_only)
    if url.startswith(("postgresql", "postgres")):
        from cxloop.events.postgres_store import PostgresEventStore

        return PostgresEventStore(url)
    raise ValueError(f"events_url: unsupported scheme in {url!r}")
