"""Loading a checked file into DuckDB as the relation ``src``, every column as read.

Delimited text is loaded as VARCHAR (so "00042" stays an id and typing stays the
importer's decision); Parquet keeps its types; JSONL records arrive as an Arrow table.
Rows that cannot even be split into columns become rejects here, before any mapping.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from cxloop.ingest.files_jsonl import LINE_COLUMN, records_table
from cxloop.ingest.files_model import ImportOptions, Reject
from cxloop.ingest.files_plan import Plan, make_plan
from cxloop.ingest.files_sniff import BLANK_SEPARATED_VALUE, Dialect, split_blanks
from cxloop.ingest.files_sql import NVALUES, SRC, SourceColumn, ValueKind, describe, ident, lit, run

# DuckDB's CSV error kinds, said the way a person fixing the file needs to hear them
# (an encoding error is said by the caller, who knows which encoding the file was read as).
_CSV_ERRORS = {
    "UNQUOTED VALUE": "a quoted value is not closed, or a quote inside it is not doubled",
}
_ENCODING_ERROR = "INVALID ENCODING"
_COUNT_ERRORS = ("TOO MANY COLUMNS", "MISSING COLUMNS")


@dataclass
class Loaded:
    """A source loaded into the connection as ``src``, and what is known about it."""

    columns: dict[str, SourceColumn]
    row_expr: str
    early_rejects: list[Reject] = field(default_factory=list)
    preset_kinds: dict[str, ValueKind] = field(default_factory=dict)
    expected_values: int | None = None
    plan: Plan | None = None  # JSONL records may show keys the sample did not
    ordered: bool = False  # rows need sorting when their numbers come from a subquery


def connect(timezone: str) -> duckdb.DuckDBPyConnection:
    """A private in-memory database; the session zone is how naive timestamps are read."""
    con = duckdb.connect()
    run(con, f"SET TimeZone = {lit(timezone)}")
    return con


def column_names(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    return [str(r[0]) for r in run(con, f"DESCRIBE {relation}")]


def load_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> Loaded:
    """A view: Parquet is columnar, so the two passes over it read only what they use."""
    run(
        con,
        f"CREATE VIEW {SRC} AS "
        f"SELECT * FROM read_parquet({lit(str(path))}, file_row_number = true)",
    )
    names = [n for n in column_names(con, SRC) if n != "file_row_number"]
    return Loaded(describe(con, SRC, names), f"{SRC}.file_row_number + 1")


def load_records(
    con: duckdb.DuckDBPyConnection, path: Path, name: str, options: ImportOptions
) -> Loaded:
    """Planned again on all keys: a key first seen after the sample still reaches the bag.
    ``name`` is the file as the user named it (``path`` may be a UTF-8 copy)."""
    records = records_table(path)
    con.register("__cx_records", records.table)
    run(con, f"CREATE VIEW {SRC} AS SELECT * FROM __cx_records")
    names = [n for n in records.table.column_names if n != LINE_COLUMN]
    plan = make_plan(options.kind, names, options.mapping, options.constants, name)
    return Loaded(
        describe(con, SRC, names),
        f"{SRC}.{LINE_COLUMN}",
        early_rejects=records.rejects,
        preset_kinds=dict.fromkeys(records.json_columns, "json"),
        plan=plan,
    )


def load_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    dialect: Dialect,
    not_text: str,
) -> Loaded:
    """Everything as text, so "00042" stays an id and typing stays our decision. Rows the
    parser cannot split are kept aside by DuckDB and reported as rejects; ``not_text`` is
    the reason given for a row whose bytes are not text."""
    columns = "{" + ", ".join(f"{lit(n)}: 'VARCHAR'" for n in dialect.columns) + "}"
    run(
        con,
        f"""CREATE TEMP TABLE {SRC} AS SELECT * FROM read_csv({lit(str(path))},
            delim = {lit(dialect.delimiter)}, header = true, skip = {dialect.skip_lines},
            quote = '"', escape = '"', auto_detect = false,
            store_rejects = true, columns = {columns})""",
    )
    errors = run(
        con,
        "SELECT line, error_type::VARCHAR, csv_line, error_message FROM reject_errors "
        "ORDER BY line",
    )
    rejects = [
        _csv_reject(_data_row(line, dialect), kind, text, message, dialect, not_text)
        for line, kind, text, message in errors
    ]
    return Loaded(
        describe(con, SRC, list(dialect.columns)),
        _row_expr(con, rejects),
        early_rejects=rejects,
        ordered=bool(rejects),
    )


def _data_row(line: int, dialect: Dialect) -> int:
    """A data row's number (from 1) from the file line DuckDB reports a reject on."""
    return int(line) - (dialect.skip_lines + 1)


def _csv_reject(
    row: int, kind: str, text: str | None, message: str | None, dialect: Dialect, not_text: str
) -> Reject:
    line = (text or "").strip("\r\n")
    values = next(csv.reader([line], delimiter=dialect.delimiter), [])
    raw: dict[str, Any] = dict(zip(dialect.columns, values, strict=False))
    if len(values) > len(dialect.columns):
        raw["_extra"] = dialect.delimiter.join(values[len(dialect.columns) :])
    reason = _CSV_ERRORS.get(kind) or (message or kind).splitlines()[0]
    if kind == _ENCODING_ERROR:
        reason = not_text
    if kind in _COUNT_ERRORS:
        reason = f"row has {len(values)} values but the header has {len(dialect.columns)} columns"
    return Reject(row, "row", reason, raw)


def _row_expr(con: duckdb.DuckDBPyConnection, rejects: Sequence[Reject]) -> str:
    """Loaded rows are numbered by position; rows the parser set aside leave gaps that the
    numbering must skip so a reject's row number points at the right line."""
    if not rejects:
        return f"{SRC}.rowid + 1"
    rows = sorted({r.row for r in rejects})
    shifts = ", ".join(f"({row - index})" for index, row in enumerate(rows, start=1))
    run(con, f"CREATE TEMP TABLE __cx_shift AS SELECT * FROM (VALUES {shifts}) v(t)")
    return f"{SRC}.rowid + 1 + (SELECT count(*) FROM __cx_shift WHERE t < {SRC}.rowid + 1)"


def _split_blanks(line: str) -> str:
    """SQL for ``split_blanks``: plain splitting unless the line holds a quote."""
    unquoted = (
        """CASE WHEN len(x) >= 2 AND starts_with(x, '"') AND ends_with(x, '"') """
        """THEN replace(x[2:-2], '""', '"') ELSE x END"""
    )
    return (
        f"""CASE WHEN contains({line}, '"') THEN list_transform("""
        f"regexp_extract_all({line}, {lit(BLANK_SEPARATED_VALUE)}), lambda x: {unquoted}) "
        f"ELSE string_split_regex({line}, '[ \\t]+') END"
    )


def load_whitespace(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    dialect: Dialect,
    not_text: str,
) -> Loaded:
    """Runs of blanks separate values and lines may start with blanks (fixed-width
    exports): each line is read whole and split in SQL. A line whose bytes are not text
    is kept aside by DuckDB and becomes a reject, as in ``load_csv``."""
    parts = ", ".join(
        f"p[{index}] AS {ident(name)}" for index, name in enumerate(dialect.columns, start=1)
    )
    run(
        con,
        f"""CREATE TEMP TABLE {SRC} AS
        SELECT {parts}, len(p) AS {NVALUES} FROM (
          SELECT {_split_blanks("trim(line, ' ' || chr(9) || chr(13))")} AS p
          FROM read_csv({lit(str(path))}, columns = {{'line': 'VARCHAR'}}, header = false,
            skip = {dialect.skip_lines + 1}, delim = chr(31), quote = '', escape = '',
            auto_detect = false, strict_mode = false, null_padding = true,
            store_rejects = true)
          WHERE line IS NOT NULL AND trim(line, ' ' || chr(9) || chr(13)) <> '')""",
    )
    errors = run(con, "SELECT line, csv_line FROM reject_errors ORDER BY line")
    rejects = [
        Reject(
            _data_row(line, dialect),
            "row",
            not_text,
            dict(zip(dialect.columns, split_blanks(text or ""), strict=False)),
        )
        for line, text in errors
    ]
    return Loaded(
        describe(con, SRC, list(dialect.columns)),
        _row_expr(con, rejects),
        early_rejects=rejects,
        expected_values=len(dialect.columns),
        ordered=bool(rejects),
    )
