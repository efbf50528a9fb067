"""Many rows into the app database at driver speed, stored exactly as the ORM stores them.

Skipping statement compilation per row makes large writes several times cheaper; values
still go through SQLAlchemy's own column types (same date and JSON formats).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, DateTime, Dialect, Table

from cxloop.events.base import utc_datetimes

_SEPARATOR = "\x1f"


def bulk_insert(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    replace_on: Sequence[str] = (),
    constants: Mapping[str, Any] | None = None,
) -> None:
    """executemany straight to the driver. With ``replace_on`` (the columns of a unique key)
    a row whose key exists replaces the stored one (an upsert on SQLite and PostgreSQL).
    ``constants`` fill columns equal in every row, converted once instead of per row."""
    if not rows:
        return
    dialect = conn.dialect
    converters = [_converter(table.c[name].type, dialect) for name in columns]
    if any(converters):
        columns_in = list(zip(*rows, strict=True))
        columns_out = [
            values if convert is None else convert(values)
            for values, convert in zip(columns_in, converters, strict=True)
        ]
        rows = list(zip(*columns_out, strict=True))
    if constants:
        fixed = tuple(
            _driver_value(table.c[name].type, dialect, v) for name, v in constants.items()
        )
        rows = [(*row, *fixed) for row in rows]
        columns = [*columns, *constants]
    _execute(conn, table, columns, rows if isinstance(rows, list) else list(rows), replace_on)


@dataclass(frozen=True)
class DriverRows:
    """Rows converted to what the database driver takes, ready for ``insert_driver_rows``."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def driver_rows(
    dialect: Dialect, table: Table, rows: pa.Table, constants: Mapping[str, Any] | None = None
) -> DriverRows:
    """Arrow rows as ``bulk_insert`` would send them: date-times and JSON lists converted a
    column (or a distinct value) at a time; ``constants`` fill columns equal in every row.
    Kept apart from the insert so a caller can convert in one thread and write in another."""
    values: list[Sequence[Any] | Iterator[Any]] = []
    for name, value in (constants or {}).items():
        values.append(repeat(_driver_value(table.c[name].type, dialect, value), rows.num_rows))
    for name in rows.column_names:
        values.append(_arrow_values(rows.column(name), table.c[name].type, dialect))
    return DriverRows([*(constants or {}), *rows.column_names], list(zip(*values, strict=True)))


def insert_driver_rows(
    conn: Connection, table: Table, prepared: DriverRows, *, replace_on: Sequence[str] = ()
) -> None:
    if prepared.rows:
        _execute(conn, table, prepared.columns, prepared.rows, replace_on)


def _execute(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    replace_on: Sequence[str],
) -> None:
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
    conn.exec_driver_sql(sql, rows)


def _arrow_values(
    values: pa.ChunkedArray | pa.Array, column_type: Any, dialect: Any
) -> Sequence[Any]:
    if isinstance(column_type, DateTime):
        if dialect.name == "sqlite":
            return _sqlite_datetimes(values)
        return utc_datetimes(values)
    convert = _converter(column_type, dialect)
    if convert is not None and _joinable_lists(values):
        # Lists repeat (the stages a move skipped): convert each distinct one once.
        keys = pc.dictionary_encode(pc.binary_join(values, _SEPARATOR))
        keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
        codes = pc.fill_null(keys.indices, len(keys.dictionary)).to_numpy(zero_copy_only=False)
        distinct, first = np.unique(codes, return_index=True)
        converted = np.empty(len(keys.dictionary) + 1, dtype=object)
        for code, value in zip(
            distinct, convert(values.take(pa.array(first)).to_pylist()), strict=True
        ):
            converted[code] = value
        return cast(list[Any], converted[codes].tolist())
    plain = values.to_pylist()
    return plain if convert is None else convert(plain)


def _driver_value(column_type: Any, dialect: Any, value: Any) -> Any:
    convert = _converter(column_type, dialect)
    return convert([value])[0] if convert else value


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


def _joinable_lists(values: pa.ChunkedArray | pa.Array) -> bool:
    """Lists of text that joined with the separator stay told apart."""
    if not (pa.types.is_list(values.type) and pa.types.is_string(values.type.value_type)):
        return False
    return not pc.any(pc.match_substring(pc.list_flatten(values), _SEPARATOR)).as_py()


def _sqlite_datetimes(values: Sequence[Any] | pa.Array | pa.ChunkedArray) -> list[str | None]:
    # Arrow converts aware values to UTC and takes naive ones as UTC, as as_utc does.
    array = (
        values.cast(pa.timestamp("us", tz="UTC"))
        if isinstance(values, pa.Array | pa.ChunkedArray)
        else pa.array(values, pa.timestamp("us", tz="UTC"))
    )
    # Arrow writes a naive timestamp as SQLAlchemy's SQLite DATETIME text (microseconds
    # always shown), a cast many times cheaper than strftime.
    text = pc.cast(array.cast(pa.timestamp("us")), pa.string())
    return cast(list[str | None], text.to_pylist())


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
