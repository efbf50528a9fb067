"""Reading customer and event files into canonical Arrow tables, with rejected rows.

``open_import`` checks everything it can from the options and the top of the file, so a
mistake is reported before any row is read; ``ImportSource.chunks`` then does the reading
and mapping inside an in-memory DuckDB, one vectorised query per step, and hands out
canonical tables in chunks. Storing them is the caller's business.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from cxloop.ingest.files_chunks import assemble, fix_duplicate_ids
from cxloop.ingest.files_jsonl import JsonlShape, message_chunks, sample_shape
from cxloop.ingest.files_load import (
    Loaded,
    column_names,
    connect,
    load_csv,
    load_parquet,
    load_records,
    load_whitespace,
)
from cxloop.ingest.files_model import (
    CUSTOMER_FIELDS,
    CUSTOMERS_SCHEMA,
    EVENT_FIELDS,
    EVENTS_SCHEMA,
    ImportFormat,
    ImportInputError,
    ImportKind,
    ImportOptions,
    MessageChunk,
    Reject,
    TableChunk,
    schema_for,
)
from cxloop.ingest.files_plan import Binding, Plan, make_plan
from cxloop.ingest.files_sniff import (
    WHITESPACE,
    Dialect,
    count_lines,
    format_for,
    normalise_delimiter,
    sniff_dialect,
)
from cxloop.ingest.files_sql import (
    MappingSql,
    customers_sql,
    events_sql,
    lit,
    parse_timestamp,
    run,
    value_kinds,
)
from cxloop.ingest.files_text import TextEncoding, as_utf8, check_encoding, file_encoding

__all__ = [
    "CUSTOMERS_SCHEMA",
    "CUSTOMER_FIELDS",
    "EVENTS_SCHEMA",
    "EVENT_FIELDS",
    "ImportInputError",
    "ImportKind",
    "ImportOptions",
    "ImportSource",
    "MessageChunk",
    "Reject",
    "TableChunk",
    "open_import",
    "rejects_path_for",
    "write_rejects",
]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def rejects_path_for(path: Path) -> Path:
    """Next to the input, so the rejects of ``data.csv`` are found as ``data.rejects.csv``."""
    return path.with_name(f"{path.stem}.rejects.csv")


def write_rejects(path: Path, rejects: Iterable[Reject]) -> int:
    """A CSV a person can open in a spreadsheet, fix, and import again."""
    items = list(rejects)
    raw_columns: dict[str, None] = {}
    for reject in items:
        raw_columns.update(dict.fromkeys(reject.raw))
    header = [
        "row",
        "field",
        "reason",
        *(c for c in raw_columns if c not in ("row", "field", "reason")),
    ]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for reject in items:
            values = [_cell(reject.raw.get(c)) for c in header[3:]]
            writer.writerow([reject.row, reject.field, reject.reason, *values])
    return len(items)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


class ImportSource:
    """A checked file, ready to be read in chunks; ``total_rows`` sizes a progress bar.

    ``path`` is the file the user named (for messages and the rejects file); ``text_path``
    is what is read, a temporary UTF-8 copy when the file is in another encoding, removed
    by ``close`` (or leaving a ``with`` block).
    """

    def __init__(
        self,
        path: Path,
        fmt: ImportFormat,
        options: ImportOptions,
        plan: Plan | None,
        dialect: Dialect | None = None,
        shape: JsonlShape | None = None,
        text_path: Path | None = None,
        encoding: TextEncoding | None = None,
    ) -> None:
        self.path = path
        self.text_path = text_path or path
        self.encoding = encoding  # None: read as UTF-8 because nothing said otherwise
        self.format: ImportFormat = fmt
        self.options = options
        self.plan = plan
        self.dialect = dialect
        self.shape = shape

    def close(self) -> None:
        if self.text_path != self.path:
            self.text_path.unlink(missing_ok=True)

    def __enter__(self) -> ImportSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @cached_property
    def total_rows(self) -> int | None:
        if self.format == "parquet":
            con = duckdb.connect()
            try:
                rows = run(
                    con, f"SELECT num_rows FROM parquet_file_metadata({lit(str(self.path))})"
                )
            finally:
                con.close()
            return sum(int(r[0]) for r in rows)
        lines = count_lines(self.text_path)
        if self.dialect is not None:
            lines -= self.dialect.skip_lines + 1
        return max(lines, 0)

    def chunks(self) -> Iterator[TableChunk | MessageChunk]:
        if self.shape is not None and self.shape.mode == "messages":
            yield from message_chunks(self.text_path, self.options.chunk_rows)
            return
        con = connect(self.options.timezone)
        try:
            yield from self._table_chunks(con)
        except duckdb.Error as error:
            raise ImportInputError("file", f"cannot read {self.path.name}: {error}") from error
        finally:
            con.close()

    def _table_chunks(self, con: duckdb.DuckDBPyConnection) -> Iterator[TableChunk]:
        loaded = self._load(con)
        plan = loaded.plan or self.plan
        if plan is None:  # pragma: no cover - open_import always plans tabular files
            raise RuntimeError("no mapping plan for a tabular file")
        bag_columns = [loaded.columns[b.column] for _, b in plan.bag if b.column is not None]
        if plan.bag_base is not None:
            bag_columns.append(loaded.columns[plan.bag_base])
        sql = MappingSql(
            plan=plan,
            columns=loaded.columns,
            kinds=value_kinds(con, bag_columns, loaded.preset_kinds),
            date_format=self.options.date_format,
            row_expr=loaded.row_expr,
            year_now=datetime.now(UTC).year,
            expected_values=loaded.expected_values,
        )
        batches: Iterable[pa.RecordBatch]
        if plan.kind == "events":
            reader = con.sql(events_sql(sql, loaded.ordered)).to_arrow_reader(
                self.options.chunk_rows
            )
            batches = fix_duplicate_ids(con, list(reader))
        else:
            batches = con.sql(customers_sql(sql, loaded.ordered)).to_arrow_reader(
                self.options.chunk_rows
            )
        yield from assemble(batches, schema_for(plan.kind), loaded.early_rejects)

    def _load(self, con: duckdb.DuckDBPyConnection) -> Loaded:
        if self.format == "parquet":
            return load_parquet(con, self.path)
        if self.format == "jsonl":
            return load_records(con, self.text_path, self.path.name, self.options)
        if self.dialect is None:  # pragma: no cover - set by open_import
            raise RuntimeError("no dialect for a delimited file")
        if self.dialect.delimiter == WHITESPACE:
            return load_whitespace(con, self.text_path, self.dialect, self._encoding_hint())
        return load_csv(con, self.text_path, self.dialect, self._encoding_hint())

    def _encoding_hint(self) -> str:
        """How a row that is not valid text is explained: in the encoding it was read as."""
        if self.encoding is not None:
            return f"row is not valid {self.encoding.label} text"
        return (
            "row is not valid UTF-8 text; if the file is in another encoding, "
            "name it with --encoding (e.g. cp1252 or latin-1)"
        )


# -- checking before reading ---------------------------------------------------------------


def open_import(path: Path, options: ImportOptions) -> ImportSource:
    """Refuses bad options and unusable files with an ``ImportInputError`` naming what to
    fix; nothing but the top of the file (or Parquet metadata) is read here."""
    path = Path(path)
    if options.kind not in ("customers", "events"):
        raise ImportInputError("kind", f"{options.kind!r} is not customers or events")
    if options.chunk_rows < 1:
        raise ImportInputError("chunk_rows", f"{options.chunk_rows} is not a positive number")
    fmt = format_for(path)
    delimiter = normalise_delimiter(options.delimiter)
    encoding = check_encoding(options.encoding)
    if fmt == "parquet" and encoding is not None:
        raise ImportInputError(
            "encoding", "Parquet files carry their own encoding; it applies to text files only"
        )
    probe = duckdb.connect()
    try:
        _check_timezone(probe, options.timezone)
        _check_date_format(probe, options.date_format)
        if fmt == "parquet":
            plan = _plan(options, _parquet_columns(probe, path), path)
            _check_constants(probe, plan, options)
            return ImportSource(path, fmt, options, plan)
        source = _text_source(path, fmt, options, encoding)
        try:
            return _checked_text(source, delimiter, probe)
        except BaseException:
            source.close()
            raise
    finally:
        probe.close()


def _text_source(
    path: Path, fmt: ImportFormat, options: ImportOptions, given: TextEncoding | None
) -> ImportSource:
    """Read from the file itself when it is UTF-8, otherwise from a UTF-8 copy of it."""
    encoding = file_encoding(path, given)
    text_path = as_utf8(path, encoding) if encoding.needs_rewrite else path
    named = encoding if given is not None or encoding.needs_rewrite else None
    return ImportSource(path, fmt, options, None, text_path=text_path, encoding=named)


def _checked_text(
    source: ImportSource, delimiter: str | None, probe: duckdb.DuckDBPyConnection
) -> ImportSource:
    """Sniffs and plans ``source`` from the top of its text, filling in what it found."""
    path, options = source.path, source.options
    if source.format == "jsonl":
        source.shape = sample_shape(source.text_path)
        if source.shape.mode == "messages":
            _refuse_mapping_for_messages(options)
            return source
        columns = source.shape.columns
    else:
        source.dialect = sniff_dialect(source.text_path, delimiter, path.name)
        columns = source.dialect.columns
    source.plan = _plan(options, columns, path)
    _check_constants(probe, source.plan, options)
    return source


def _plan(options: ImportOptions, columns: Sequence[str], path: Path) -> Plan:
    return make_plan(options.kind, columns, options.mapping, options.constants, path.name)


def _check_timezone(probe: duckdb.DuckDBPyConnection, timezone: str) -> None:
    try:
        run(probe, f"SET TimeZone = {lit(timezone)}")
    except duckdb.Error as error:
        raise ImportInputError(
            "timezone", f"{timezone!r} is not a known IANA time zone (e.g. Europe/Paris)"
        ) from error


def _check_date_format(probe: duckdb.DuckDBPyConnection, date_format: str | None) -> None:
    if date_format is None:
        return
    if "%" not in date_format:
        raise ImportInputError(
            "date_format",
            f"{date_format!r} has no % codes; write it as for strptime, e.g. %Y-%m-%d",
        )
    try:
        run(probe, f"SELECT try_strptime('', {lit(date_format)})")
    except duckdb.Error as error:
        raise ImportInputError(
            "date_format", f"{date_format!r} is not a valid strptime format: {error}"
        ) from error


def _parquet_columns(probe: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    try:
        return column_names(probe, f"SELECT * FROM read_parquet({lit(str(path))})")
    except duckdb.Error as error:
        raise ImportInputError("file", f"{path.name} is not a readable Parquet file") from error


def _refuse_mapping_for_messages(options: ImportOptions) -> None:
    if options.mapping or options.constants:
        option = "map" if options.mapping else "set"
        raise ImportInputError(
            option,
            "this file holds Segment messages (lines with a 'type'), which are imported "
            "as they are; --map and --set apply to flat records only",
        )


def _check_constants(probe: duckdb.DuckDBPyConnection, plan: Plan, options: ImportOptions) -> None:
    """A bad --set would reject every row; better to say so once, up front."""
    for name, binding in plan.fields.items():
        value = binding.constant
        if value is None:
            continue
        if not value.strip():
            raise ImportInputError(name, "--set gives an empty value")
        if name in ("timestamp", "created_at"):
            _check_constant_date(probe, name, binding, options)
        elif name == "birth_year":
            _check_birth_year(value)
        elif name == "email" and not _EMAIL.match(value.strip()):
            raise ImportInputError(name, f"{value!r} is not a valid e-mail address")


def _check_constant_date(
    probe: duckdb.DuckDBPyConnection, name: str, binding: Binding, options: ImportOptions
) -> None:
    value = lit((binding.constant or "").strip())
    if not run(probe, f"SELECT isfinite({parse_timestamp(value, options.date_format)})")[0][0]:
        how = f"--date-format {options.date_format}" if options.date_format else "ISO 8601"
        raise ImportInputError(name, f"{binding.constant!r} is not a date in {how}")


def _check_birth_year(value: str) -> None:
    year_now = datetime.now(UTC).year
    text = value.strip()
    if not text.isdigit() or not 1900 <= int(text) <= year_now:
        raise ImportInputError(
            "birth_year", f"{value!r} is not a whole year between 1900 and {year_now}"
        )
