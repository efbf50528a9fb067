"""The Parquet lake: the event stream and the customers, as files any engine can read.

``cxloop export parquet DIR`` writes ``DIR/events/year=YYYY/month=M/*.parquet`` (the event
stream, partitioned by the month of each event, JSON columns as text) and
``DIR/customers.parquet`` (one row per customer, traits as JSON text), the dimension the
analytics join against. Spark, DuckDB, pandas or a warehouse read it as it is.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, Table, select

from cxloop.events.base import EVENTS_ARROW_SCHEMA, EventStore
from cxloop.store.models import Customer

customers_t = cast(Table, Customer.__table__)
_PARTITIONS = pa.schema([pa.field("year", pa.int16()), pa.field("month", pa.int8())])
_CUSTOMER_COLUMNS = (
    "id", "name", "email", "gender", "birth_year", "age_band", "education", "city", "region",
    "country", "profession", "relationship_status", "income_band", "channel", "first_seen",
    "last_seen", "created_at",
)  # fmt: skip


class LakeError(ValueError):
    """The directory cannot take the lake (it holds files and overwriting was not asked)."""


def export_parquet(
    events: EventStore, engine: Engine, directory: Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Write the lake; returns how many events and customers it holds."""
    # Loaded here, not at import: pyarrow.dataset brings pandas, slow for every command.
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    batches = getattr(events, "all_events", None)
    if batches is None:
        raise LakeError(f"the {events.backend} event store cannot be exported")
    if directory.exists() and any(directory.iterdir()):
        if not overwrite:
            raise LakeError(f"{directory} is not empty (add --overwrite to replace it)")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counted = {"events": 0}

    def with_month() -> Iterator[pa.RecordBatch]:
        for batch in batches():
            counted["events"] += batch.num_rows
            stamp = batch.column("timestamp")
            yield pa.RecordBatch.from_arrays(
                [*batch.columns, pc.year(stamp).cast(pa.int16()), pc.month(stamp).cast(pa.int8())],
                schema=EVENTS_ARROW_SCHEMA.append(_PARTITIONS.field(0)).append(
                    _PARTITIONS.field(1)
                ),
            )

    schema = pa.schema([*EVENTS_ARROW_SCHEMA, *_PARTITIONS])
    ds.write_dataset(
        with_month(),
        directory / "events",
        schema=schema,
        format="parquet",
        partitioning=ds.partitioning(_PARTITIONS, flavor="hive"),
        existing_data_behavior="overwrite_or_ignore",
    )
    customers = _customers(engine)
    pq.write_table(customers, directory / "customers.parquet")
    return {
        "directory": str(directory),
        "events": counted["events"],
        "customers": customers.num_rows,
    }


def _customers(engine: Engine) -> pa.Table:
    columns = [customers_t.c[name] for name in _CUSTOMER_COLUMNS]
    rows: dict[str, list[Any]] = {name: [] for name in (*_CUSTOMER_COLUMNS, "traits")}
    encode = msgspec.json.encode
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=50_000).execute(
            select(*columns, customers_t.c.traits).where(customers_t.c.merged_into_id.is_(None))
        )
        for row in result:
            for name in _CUSTOMER_COLUMNS:
                rows[name].append(getattr(row, name))
            rows["traits"].append(encode(row.traits or {}).decode())
    return pa.table(rows)
