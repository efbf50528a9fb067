"""From mapped Arrow batches to the chunks handed to the caller.

Two things happen after the SQL: ids of repeated events are corrected (only rows whose
content repeats are touched), and rejects are split off each batch, with rows the parser
set aside joining the chunk that covers their row number.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import duckdb
import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cxloop.ingest.files_model import Reject, TableChunk
from cxloop.ingest.files_sql import (
    CONTENT_HASH,
    RAW,
    REJECT_FIELD,
    REJECT_REASON,
    ROW,
    duplicate_ids_sql,
)

_decode_raw = msgspec.json.Decoder(dict[str, Any]).decode


def fix_duplicate_ids(
    con: duckdb.DuckDBPyConnection, batches: list[pa.RecordBatch]
) -> list[pa.RecordBatch]:
    """Every event is mapped before the first chunk leaves, since a row's id depends on
    how often its content appeared before it; the mapped batches wait here as Arrow."""
    if not batches:
        return batches
    table = pa.Table.from_batches(batches)
    repeated = _repeated(table.column(CONTENT_HASH))
    if len(repeated) == 0:
        return batches
    con.register("__cx_events", table)
    con.register("__cx_repeated", pa.table({"h": repeated}))
    fixes = con.sql(duplicate_ids_sql("__cx_events", "__cx_repeated")).to_arrow_table()
    con.unregister("__cx_events")
    con.unregister("__cx_repeated")
    return [_patch_ids(batch, fixes) for batch in batches] if fixes.num_rows else batches


def _repeated(hashes: pa.ChunkedArray) -> npt.NDArray[np.uint64]:
    """Hash values seen more than once: a sort of 64-bit integers, far cheaper than
    grouping a million id strings when (as usual) nothing repeats."""
    values = np.sort(pc.drop_null(hashes.combine_chunks()).to_numpy())
    return np.unique(values[1:][values[1:] == values[:-1]])


def _patch_ids(batch: pa.RecordBatch, fixes: pa.Table) -> pa.RecordBatch:
    rows = fixes.column(ROW).combine_chunks()
    mask = pc.is_in(batch.column(ROW), value_set=rows)
    if not pc.any(mask).as_py():
        return batch
    ids = fixes.column("message_id").combine_chunks()
    mine = ids.filter(pc.is_in(rows, value_set=batch.column(ROW)))
    index = batch.schema.get_field_index("message_id")
    patched = pc.replace_with_mask(batch.column(index), mask, mine)
    return batch.set_column(index, "message_id", patched)


def assemble(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, early: Sequence[Reject]
) -> Iterator[TableChunk]:
    """Chunks as DuckDB streams them; rows set aside before mapping join the chunk that
    covers their row number. One chunk is held back so leftovers have a home."""
    pending = deque(sorted(early, key=lambda r: r.row))
    held: TableChunk | None = None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        chunk = _chunk(batch, schema)
        last_row = batch.column(ROW)[-1].as_py()
        while pending and pending[0].row <= last_row:
            chunk.rejects.append(pending.popleft())
            chunk.rows_read += 1
        chunk.rejects.sort(key=lambda r: r.row)
        if held is not None:
            yield held
        held = chunk
    if pending:
        held = held or TableChunk(schema.empty_table(), [], 0)
        held.rejects.extend(pending)
        held.rows_read += len(pending)
    if held is not None:
        yield held


def _raw_dict(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        return _decode_raw(raw)
    except msgspec.DecodeError:  # pragma: no cover - json_object output is valid JSON
        return {"_raw": raw}


def _chunk(batch: pa.RecordBatch, schema: pa.Schema) -> TableChunk:
    verdicts = batch.column(REJECT_FIELD)
    rejects: list[Reject] = []
    good = batch
    if verdicts.null_count < batch.num_rows:
        keep = pc.is_null(verdicts)
        good = batch.filter(keep)
        bad = batch.filter(pc.invert(keep))
        rejects = [
            Reject(int(row), str(fld), str(why), _raw_dict(raw))
            for row, fld, why, raw in zip(
                bad.column(ROW).to_pylist(),
                bad.column(REJECT_FIELD).to_pylist(),
                bad.column(REJECT_REASON).to_pylist(),
                bad.column(RAW).to_pylist(),
                strict=True,
            )
        ]
    table = pa.Table.from_batches([good]).select(schema.names).cast(schema)
    return TableChunk(table, rejects, batch.num_rows)
