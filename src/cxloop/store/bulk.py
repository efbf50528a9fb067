"""Many rows into the app database at driver speed, stored exactly as the ORM stores them.

Skipping statement compilation per row makes large writes several times cheaper; values
still go through SQLAlchemy's own column types (same date and JSON formats).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, DateTime, Table

# SQLAlchemy's SQLite DATETIME text; Arrow's %S carries the microseconds.
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S"


def bulk_insert(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    replace_on: Sequence[str] = (),
) -> None:
    """executemany straight to the driver. With ``replace_on`` (the columns of a unique key)
    a row whose key exists replaces the stored one (an upsert on SQLite and PostgreSQL)."""
    if not rows:
        return
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(quote(name) for name in columns)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join([marker] * len(columns))})"
    if replace_on:
        updates = ", ".join(
            f"{quote(c)} = excluded.{quote(c)}" for c in columns if c not in replace_on
        )
        keys = ", ".join(quote(c) for c in replace_on)
        sql += f" ON CONFLICT ({keys}) DO UPDATE SET {updates}"
    converters = [_converter(table.c[name].type, dialect) for name in columns]
    if any(converters):
        columns_in = list(zip(*rows, strict=True))
        columns_out = [
            values if convert is None else convert(values)
            for values, convert in zip(columns_in, converters, strict=True)
        ]
        rows = list(zip(*columns_out, strict=True))
    conn.exec_driver_sql(sql, rows if isinstance(rows, list) else list(rows))


def _converter(column_type: Any, dialect: Any) -> Callable[[Sequence[Any]], Sequence[Any]] | None:
    """How a column's values become driver values. SQLite keeps date-times as text in
    SQLAlchemy's format; Arrow writes that text for a whole column at once, far cheaper
    than one Python call per value."""
    if dialect.name == "sqlite" and isinstance(column_type, DateTime):
        return _sqlite_datetimes
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return None
    return lambda values: _convert_column(values, process)


def _sqlite_datetimes(values: Sequence[Any]) -> list[str | None]:
    # Arrow converts aware values to UTC and takes naive ones as UTC, as as_utc does.
    array = pa.array(values, pa.timestamp("us", tz="UTC"))
    return cast(list[str | None], pc.strftime(array, format=_SQLITE_DATETIME).to_pylist())


def _convert_column(values: Sequence[Any], process: Callable[[Any], Any]) -> list[Any]:
    """Convert one column, each distinct value once (imports repeat times and empty objects)."""
    seen: dict[Any, Any] = {}
    out: list[Any] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        key = id(value) if isinstance(value, dict | list) else value
        found = seen.get(key)
        if found is None:
            found = seen[key] = process(value)
        out.append(found)
    return out
