"""Running a file import: read chunks, store them, count, and keep the rejects.

The storage side is a target: the pipeline of this process, or the project's running
server (so an import can run while `cxloop serve` owns the embedded event store).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from cxloop.domain.messages import InvalidMessage, Message, from_dict, normalise
from cxloop.ingest.files import open_import, rejects_path_for, write_rejects
from cxloop.ingest.files_model import ImportOptions, MessageChunk, Reject, TableChunk
from cxloop.ingest.pipeline import IngestPipeline

STORE_ROWS = 1_000_000


@dataclass
class StoreOutcome:
    """What a target did with one chunk."""

    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (index, field, reason)


class ImportTarget(Protocol):
    def events(self, table: pa.Table, source: str) -> StoreOutcome: ...

    def customers(self, table: pa.Table, source: str) -> StoreOutcome: ...

    def messages(self, messages: list[dict[str, Any]], source: str) -> StoreOutcome: ...


@dataclass
class ImportSummary:
    kind: str
    path: str
    rows_read: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejects_file: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the reader changed, once each

    @property
    def rows_per_s(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "read": self.rows_read,
            "imported": self.imported,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "rejects_file": self.rejects_file,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s),
            "notes": self.notes,
        }


def run_import(
    path: Path,
    options: ImportOptions,
    target: ImportTarget,
    *,
    on_start: Callable[[int | None], None] = lambda total: None,
    on_progress: Callable[[int], None] = lambda rows: None,
) -> ImportSummary:
    """Import ``path``; rejected rows end up in ``<name>.rejects.csv`` beside it."""
    started = time.perf_counter()
    source = f"import:{path.name}"
    summary = ImportSummary(kind=options.kind, path=str(path))
    rejects: list[Reject] = []
    with open_import(path, options) as source_file:
        if source_file.dialect is not None:
            summary.notes.extend(source_file.dialect.renamed)
        on_start(source_file.total_rows)
        for chunk in _coalesced(source_file.chunks()):
            rejects.extend(chunk.rejects)
            if isinstance(chunk, TableChunk):
                outcome = _store_table(chunk, options, target, source)
            else:
                outcome = _store_messages(chunk, target, source, rejects)
            summary.rows_read += chunk.rows_read
            summary.imported += outcome.imported
            summary.updated += outcome.updated
            summary.unchanged += outcome.unchanged
            on_progress(chunk.rows_read)
    summary.rejected = len(rejects)
    rejects_file = rejects_path_for(path)
    if rejects:
        rejects.sort(key=lambda r: r.row)
        write_rejects(rejects_file, rejects)
        summary.rejects_file = str(rejects_file)
    else:
        rejects_file.unlink(missing_ok=True)
    summary.seconds = time.perf_counter() - started
    return summary


def _coalesced(
    chunks: Iterable[TableChunk | MessageChunk],
) -> Iterator[TableChunk | MessageChunk]:
    """Join small table chunks into large ones: each store call resolves every customer it
    sees once, so fewer, larger calls do less work for the same rows."""
    pending: list[TableChunk] = []
    rows = 0
    for chunk in chunks:
        if isinstance(chunk, MessageChunk):
            if pending:
                yield _join(pending)
                pending, rows = [], 0
            yield chunk
            continue
        pending.append(chunk)
        rows += chunk.table.num_rows
        if rows >= STORE_ROWS:
            yield _join(pending)
            pending, rows = [], 0
    if pending:
        yield _join(pending)


def _join(chunks: list[TableChunk]) -> TableChunk:
    if len(chunks) == 1:
        return chunks[0]
    return TableChunk(
        table=pa.concat_tables([c.table for c in chunks]),
        rejects=[r for c in chunks for r in c.rejects],
        rows_read=sum(c.rows_read for c in chunks),
    )


def _store_table(
    chunk: TableChunk, options: ImportOptions, target: ImportTarget, source: str
) -> StoreOutcome:
    if chunk.table.num_rows == 0:
        return StoreOutcome()
    if options.kind == "events":
        return target.events(chunk.table, source)
    return target.customers(chunk.table, source)


def _store_messages(
    chunk: MessageChunk, target: ImportTarget, source: str, rejects: list[Reject]
) -> StoreOutcome:
    if not chunk.messages:
        return StoreOutcome()
    outcome = target.messages(chunk.messages, source)
    for index, field_name, reason in outcome.rejected:
        rejects.append(Reject(chunk.rows[index], field_name, reason, chunk.messages[index]))
    return outcome


def decode_messages(
    items: list[dict[str, Any]], received_at: datetime
) -> tuple[list[Message], list[tuple[int, str, str]]]:
    """Validate Segment messages of an import; the bad ones come back as (index, field, why)."""
    messages: list[Message] = []
    rejected: list[tuple[int, str, str]] = []
    for index, item in enumerate(items):
        try:
            messages.append(normalise(from_dict(item), received_at=received_at))
        except InvalidMessage as exc:
            rejected.append((index, exc.field, exc.reason))
    return messages, rejected


class LocalTarget:
    """Store through this process's pipeline (it holds the event store)."""

    def __init__(self, pipeline: IngestPipeline) -> None:
        self.pipeline = pipeline

    def events(self, table: pa.Table, source: str) -> StoreOutcome:
        result = self.pipeline.ingest_table(table, source=source)
        return StoreOutcome(imported=result.stored, unchanged=result.duplicates)

    def customers(self, table: pa.Table, source: str) -> StoreOutcome:
        result = self.pipeline.upsert_customers(table, source=source)
        return StoreOutcome(
            imported=result.created, updated=result.updated, unchanged=result.unchanged
        )

    def messages(self, messages: list[dict[str, Any]], source: str) -> StoreOutcome:
        valid, rejected = decode_messages(messages, datetime.now(UTC))
        result = self.pipeline.ingest(valid, source=source)
        return StoreOutcome(imported=result.stored, unchanged=result.duplicates, rejected=rejected)


def arrow_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()
