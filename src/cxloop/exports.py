"""Getting data out, and a whole project into another: customer lists as CSV, the events
of a period as Parquet, and the full project (every table of the app database as JSON
Lines, the event stream as Parquet) with its import into an empty project.

A project export is a folder: ``manifest.json`` (the schema revision, the row count of
each file, when it was made), ``app/TABLE.jsonl`` for every table in foreign-key order
and ``events.parquet``. Rows keep their ids, so the imported project is the same project:
the reports read the same numbers (a test compares them on both backends). Dates are ISO
text, binary columns (staff photos) base64 and JSON columns as they are. Signed-in
sessions are left out (they belong to browsers, not to the data); users keep their argon2
hashes and webhooks their signing secrets, so **the export is as sensitive as the
database itself**.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from defusedcsv import csv  # the csv module, with formula-like cells escaped
from sqlalchemy import (
    JSON,
    Connection,
    Date,
    DateTime,
    Engine,
    LargeBinary,
    Table,
    func,
    insert,
    select,
    text,
)

from cxloop.customers.service import customers_t, segment_conditions
from cxloop.events.base import EVENTS_ARROW_SCHEMA, EventStore
from cxloop.segments import EXPORT_FIELDS
from cxloop.store.database import HEAD_REVISION
from cxloop.store.models import Base

FORMAT = "cxloop-project-export"
SKIPPED_TABLES = frozenset({"user_sessions"})
_BATCH = 5000
Progress = Callable[[str, int], None]


class ExportError(ValueError):
    """The folder cannot be written, or read back as an export."""


# -- customer lists and event periods -------------------------------------------------------


def customers_csv(conn: Connection, *, segment: str | None = None) -> Iterator[str]:
    """Every live customer (or a saved segment's members) as CSV, streamed in pages."""
    c = customers_t.c
    query = select(*[c[f] for f in EXPORT_FIELDS]).where(c.merged_into_id.is_(None))
    if segment is not None:
        from cxloop.segments import check_named

        check_named(conn, {"segment": segment}, "segment")
        query = query.where(*segment_conditions({"segment": segment}))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_FIELDS)
    last = 0
    while True:
        rows = conn.execute(query.where(c.id > last).order_by(c.id).limit(_BATCH)).all()
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(rows) < _BATCH:
            return
        last = int(rows[-1].id)


def events_parquet(
    events: EventStore, path: Path, *, start: datetime | None = None, end: datetime | None = None
) -> int:
    """The events with ``start <= timestamp < end`` written to one Parquet file (every
    column, JSON as text); returns how many."""
    import pyarrow.parquet as pq

    batches = getattr(events, "all_events", None)
    if batches is None:
        raise ExportError(f"the {events.backend} event store cannot be exported")
    if start is not None and end is not None and end <= start:
        raise ValueError("to: must be after from")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with pq.ParquetWriter(path, EVENTS_ARROW_SCHEMA) as out:
        for batch in batches(start=start, end=end):  # the store reads only the period
            out.write_batch(batch)
            written += batch.num_rows
    return written


# -- the whole project ----------------------------------------------------------------------


def _tables() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if t.name not in SKIPPED_TABLES]


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def export_project(
    engine: Engine, events: EventStore, directory: Path, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Write the project to ``directory`` (which must be empty or new)."""
    if directory.exists() and any(directory.iterdir()):
        raise ExportError(f"DIR: {directory} is not empty; give a new folder")
    (directory / "app").mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for table in _tables():
            key = [c for c in table.primary_key.columns]
            n = 0
            with (directory / "app" / f"{table.name}.jsonl").open("w", encoding="utf-8") as fh:
                result = conn.execution_options(yield_per=_BATCH).execute(
                    select(table).order_by(*key)
                )
                for row in result.mappings():
                    fh.write(
                        json.dumps(
                            {k: _encode(v) for k, v in row.items()},
                            ensure_ascii=False,
                            separators=(",", ":"),
                        )
                    )
                    fh.write("\n")
                    n += 1
            counts[table.name] = n
            if progress is not None:
                progress(table.name, n)
    counts["events"] = events_parquet(events, directory / "events.parquet")
    if progress is not None:
        progress("events", counts["events"])
    manifest = {
        "format": FORMAT,
        "version": 1,
        "schema_revision": HEAD_REVISION,
        "exported_at": datetime.now(UTC).isoformat(),
        "counts": counts,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {"directory": str(directory), **manifest}


def _manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        raise ExportError(f"DIR: {directory} holds no cxloop export (manifest.json)") from None
    if manifest.get("format") != FORMAT:
        raise ExportError(f"DIR: {directory}/manifest.json is not a cxloop project export")
    if manifest.get("schema_revision") != HEAD_REVISION:
        raise ExportError(
            f"DIR: the export has schema revision {manifest.get('schema_revision')}, this "
            f"cxloop {HEAD_REVISION}; import it with the cxloop version that made it, or "
            "export again"
        )
    return manifest


def _decoder(table: Table) -> Callable[[dict[str, Any]], dict[str, Any]]:
    kinds: dict[str, Callable[[Any], Any]] = {}
    for column in table.columns:
        kind = column.type
        if isinstance(kind, DateTime):
            kinds[column.name] = datetime.fromisoformat
        elif isinstance(kind, Date):
            kinds[column.name] = date.fromisoformat
        elif isinstance(kind, LargeBinary):
            kinds[column.name] = base64.b64decode
        elif isinstance(kind, JSON):
            continue

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        return {
            k: (kinds[k](v) if v is not None and k in kinds else v)
            for k, v in row.items()
            if k in table.c
        }

    return decode


def _is_empty(conn: Connection, events: EventStore) -> bool:
    return (
        conn.execute(select(func.count()).select_from(customers_t)).scalar_one() == 0
        and events.count() == 0
    )


def import_project(
    engine: Engine, events: EventStore, directory: Path, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Load an export into this project, which must be empty (no customers, no events).
    The export is the project: what the empty project held (its keys, its users) is
    replaced by the export's. The app database is loaded in one transaction, then the
    events are appended (idempotent on their ids, so an import cut off halfway can be run
    again once its app data is cleared)."""
    import pyarrow.parquet as pq

    manifest = _manifest(directory)
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        if not _is_empty(conn, events):
            raise ExportError("the project is not empty: import into a new CXLOOP_HOME or database")
        for table in reversed(_tables()):  # what a fresh project made by itself
            conn.execute(table.delete())
        for table in _tables():
            path = directory / "app" / f"{table.name}.jsonl"
            if not path.exists():
                raise ExportError(f"DIR: {path} is missing from the export")
            decode = _decoder(table)
            n = 0
            with path.open(encoding="utf-8") as fh:
                chunk: list[dict[str, Any]] = []
                for line in fh:
                    chunk.append(decode(json.loads(line)))
                    if len(chunk) == _BATCH:
                        conn.execute(insert(table), chunk)
                        n += len(chunk)
                        chunk = []
                if chunk:
                    conn.execute(insert(table), chunk)
                    n += len(chunk)
            counts[table.name] = n
            if progress is not None:
                progress(table.name, n)
        if conn.dialect.name == "postgresql":
            _reset_sequences(conn)
    stored = 0
    reader = pq.ParquetFile(directory / "events.parquet")
    for batch in reader.iter_batches(batch_size=200_000):
        stored += events.append(pa.Table.from_batches([batch]).cast(EVENTS_ARROW_SCHEMA)).inserted
        if progress is not None:
            progress("events", stored)
    counts["events"] = stored
    expected = manifest["counts"]
    differs = {k: (expected.get(k), v) for k, v in counts.items() if expected.get(k) != v}
    if differs:
        raise ExportError(f"the import does not match its manifest: {differs}")
    return {"directory": str(directory), "counts": counts}


def _reset_sequences(conn: Connection) -> None:
    """Ids were given with the rows; PostgreSQL's sequences must continue after them."""
    for table in _tables():
        if "id" not in table.c or not table.c.id.primary_key:
            continue
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                f"coalesce((SELECT max(id) FROM {table.name}), 0) + 1, false)"
            )
        )
