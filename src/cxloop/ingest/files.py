"""Reading customer and event files into canonical Arrow tables, with rejected rows.

``open_import`` checks everything it can from the options and the top of the file, so a
mistake is reported before any row is read; ``ImportSource.chunks`` then does the reading
and mapping inside an in-memory DuckDB, one vectorised query per step, and hands out
canonical tables in chunks. Storing them is the caller's business.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from cxloop.ingest.files_jsonl import (
    LINE_COLUMN,
    JsonlShape,
    message_chunks,
    records_table,
    sample_shape,
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
    NVALUES,
    RAW,
    REJECT_FIELD,
    REJECT_REASON,
    ROW,
    SRC,
    MappingSql,
    SourceColumn,
    ValueKind,
    customers_sql,
    describe,
    duplicate_ids_sql,
    events_sql,
    ident,
    lit,
    run,
    value_kinds,
)

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
_decode_raw = msgspec.json.Decoder(dict[str, Any]).decode
# DuckDB's CSV error kinds, said the way a person fixing the file needs to hear them.
_CSV_ERRORS = {
    "TOO MANY COLUMNS": "row has more values than the header has columns",
    "UNQUOTED VALUE": "a quoted value is not closed, or a quote inside it is not doubled",
    "INVALID ENCODING": "row is not valid UTF-8 text",
}


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


@dataclass
class _Loaded:
    """A source loaded into the connection as ``src``, and what is known about it."""

    columns: dict[str, SourceColumn]
    row_expr: str
    early_rejects: list[Reject] = field(default_factory=list)
    preset_kinds: dict[str, ValueKind] = field(default_factory=dict)
    expected_values: int | None = None
    plan: Plan | None = None  # JSONL records may show keys the sample did not
    ordered: bool = False  # rows need sorting when their numbers come from a subquery


class ImportSource:
    """A checked file, ready to be read in chunks; ``total_rows`` sizes a progress bar."""

    def __init__(
        self,
        path: Path,
        fmt: ImportFormat,
        options: ImportOptions,
        plan: Plan | None,
        dialect: Dialect | None = None,
        shape: JsonlShape | None = None,
    ) -> None:
        self.path = path
        self.format: ImportFormat = fmt
        self.options = options
        self.plan = plan
        self.dialect = dialect
        self.shape = shape

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
        lines = count_lines(self.path)
        if self.dialect is not None:
            lines -= self.dialect.skip_lines + 1
        return max(lines, 0)

    def chunks(self) -> Iterator[TableChunk | MessageChunk]:
        if self.shape is not None and self.shape.mode == "messages":
            yield from message_chunks(self.path, self.options.chunk_rows)
            return
        con = _connect(self.options.timezone)
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
            batches = _fix_duplicate_ids(con, list(reader))
        else:
            batches = con.sql(customers_sql(sql, loaded.ordered)).to_arrow_reader(
                self.options.chunk_rows
            )
        yield from _assemble(batches, schema_for(plan.kind), loaded.early_rejects)

    def _load(self, con: duckdb.DuckDBPyConnection) -> _Loaded:
        path = lit(str(self.path))
        if self.format == "parquet":
            run(
                con,
                f"CREATE VIEW {SRC} AS SELECT * FROM read_parquet({path}, file_row_number = true)",
            )
            names = [n for n in describe_names(con, SRC) if n != "file_row_number"]
            return _Loaded(describe(con, SRC, names), f"{SRC}.file_row_number + 1")
        if self.format == "jsonl":
            return self._load_records(con)
        if self.dialect is None:  # pragma: no cover - set by open_import
            raise RuntimeError("no dialect for a delimited file")
        if self.dialect.delimiter == WHITESPACE:
            return _load_whitespace(con, path, self.dialect)
        return _load_csv(con, path, self.dialect)

    def _load_records(self, con: duckdb.DuckDBPyConnection) -> _Loaded:
        records = records_table(self.path)
        con.register("__cx_records", records.table)
        run(con, f"CREATE VIEW {SRC} AS SELECT * FROM __cx_records")
        names = [n for n in records.table.column_names if n != LINE_COLUMN]
        plan = make_plan(
            self.options.kind, names, self.options.mapping, self.options.constants, self.path.name
        )
        return _Loaded(
            describe(con, SRC, names),
            f"{SRC}.{LINE_COLUMN}",
            early_rejects=records.rejects,
            preset_kinds=dict.fromkeys(records.json_columns, "json"),
            plan=plan,
        )


def describe_names(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    return [str(r[0]) for r in run(con, f"DESCRIBE {relation}")]


def _connect(timezone: str) -> duckdb.DuckDBPyConnection:
    """A private in-memory database; the session zone is how naive timestamps are read."""
    con = duckdb.connect()
    run(con, f"SET TimeZone = {lit(timezone)}")
    return con


def _load_csv(con: duckdb.DuckDBPyConnection, path: str, dialect: Dialect) -> _Loaded:
    """Everything as text, so "00042" stays an id and typing stays our decision. Rows the
    parser cannot split are kept aside by DuckDB and reported as rejects."""
    columns = "{" + ", ".join(f"{lit(n)}: 'VARCHAR'" for n in dialect.columns) + "}"
    run(
        con,
        f"""CREATE TEMP TABLE {SRC} AS SELECT * FROM read_csv({path},
            delim = {lit(dialect.delimiter)}, header = true, skip = {dialect.skip_lines},
            quote = '"', escape = '"', auto_detect = false,
            store_rejects = true, columns = {columns})""",
    )
    first_data_line = dialect.skip_lines + 2
    errors = run(
        con,
        "SELECT line, error_type::VARCHAR, csv_line, error_message FROM reject_errors "
        "ORDER BY line",
    )
    rejects = [
        _csv_reject(int(line) - first_data_line + 1, kind, text, message, dialect)
        for line, kind, text, message in errors
    ]
    return _Loaded(
        describe(con, SRC, list(dialect.columns)),
        _row_expr(con, rejects),
        early_rejects=rejects,
        ordered=bool(rejects),
    )


def _csv_reject(
    row: int, kind: str, text: str | None, message: str | None, dialect: Dialect
) -> Reject:
    line = (text or "").strip("\r\n")
    values = next(csv.reader([line], delimiter=dialect.delimiter), [])
    raw: dict[str, Any] = dict(zip(dialect.columns, values, strict=False))
    if len(values) > len(dialect.columns):
        raw["_extra"] = dialect.delimiter.join(values[len(dialect.columns) :])
    reason = _CSV_ERRORS.get(kind) or (message or kind).splitlines()[0]
    if kind in ("TOO MANY COLUMNS", "MISSING COLUMNS"):
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


def _load_whitespace(con: duckdb.DuckDBPyConnection, path: str, dialect: Dialect) -> _Loaded:
    """Runs of blanks separate values and lines may start with blanks (fixed-width
    exports): each line is read whole and split in SQL."""
    parts = ", ".join(
        f"p[{index}] AS {ident(name)}" for index, name in enumerate(dialect.columns, start=1)
    )
    run(
        con,
        f"""CREATE TEMP TABLE {SRC} AS
        SELECT {parts}, len(p) AS {NVALUES} FROM (
          SELECT string_split_regex(trim(line, ' ' || chr(9) || chr(13)), '[ \t]+') AS p
          FROM read_csv({path}, columns = {{'line': 'VARCHAR'}}, header = false,
            skip = {dialect.skip_lines + 1}, delim = chr(31), quote = '', escape = '',
            auto_detect = false, strict_mode = false, null_padding = true)
          WHERE line IS NOT NULL AND trim(line, ' ' || chr(9) || chr(13)) <> '')""",
    )
    return _Loaded(
        describe(con, SRC, list(dialect.columns)),
        f"{SRC}.rowid + 1",
        expected_values=len(dialect.columns),
    )


def _fix_duplicate_ids(
    con: duckdb.DuckDBPyConnection, batches: list[pa.RecordBatch]
) -> list[pa.RecordBatch]:
    """Every event must be mapped before the first chunk leaves, since a row's id depends
    on how often its content appeared before it; the mapped batches wait here as Arrow."""
    if not batches:
        return batches
    con.register("__cx_events", pa.Table.from_batches(batches))
    fixes = con.sql(duplicate_ids_sql("__cx_events")).to_arrow_table()
    con.unregister("__cx_events")
    if fixes.num_rows == 0:
        return batches
    rows, ids = fixes.column(ROW).combine_chunks(), fixes.column("message_id").combine_chunks()
    patched: list[pa.RecordBatch] = []
    for batch in batches:
        mask = pc.is_in(batch.column(ROW), value_set=rows)
        if pc.any(mask).as_py():
            mine = ids.filter(pc.is_in(rows, value_set=batch.column(ROW)))
            index = batch.schema.get_field_index("message_id")
            column = pc.replace_with_mask(batch.column(index), mask, mine)
            batch = batch.set_column(index, "message_id", column)
        patched.append(batch)
    return patched


def _assemble(
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
    probe = duckdb.connect()
    try:
        _check_timezone(probe, options.timezone)
        _check_date_format(probe, options.date_format)
        if fmt == "jsonl":
            shape = sample_shape(path)
            if shape.mode == "messages":
                _refuse_mapping_for_messages(options)
                return ImportSource(path, fmt, options, None, shape=shape)
            plan = _plan(options, shape.columns, path)
            _check_constants(probe, plan, options)
            return ImportSource(path, fmt, options, plan, shape=shape)
        dialect = sniff_dialect(path, delimiter) if fmt == "delimited" else None
        columns = dialect.columns if dialect else _parquet_columns(probe, path)
        plan = _plan(options, columns, path)
        _check_constants(probe, plan, options)
        return ImportSource(path, fmt, options, plan, dialect=dialect)
    finally:
        probe.close()


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
        return describe_names(probe, f"SELECT * FROM read_parquet({lit(str(path))})")
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
    sql = MappingSql(
        plan=Plan(options.kind, {}, ()),
        columns={},
        kinds={},
        date_format=options.date_format,
        row_expr="1",
        year_now=datetime.now(UTC).year,
    )
    if not run(probe, f"SELECT isfinite({sql.timestamp(binding)})")[0][0]:
        how = f"--date-format {options.date_format}" if options.date_format else "ISO 8601"
        raise ImportInputError(name, f"{binding.constant!r} is not a date in {how}")


def _check_birth_year(value: str) -> None:
    year_now = datetime.now(UTC).year
    text = value.strip()
    if not text.isdigit() or not 1900 <= int(text) <= year_now:
        raise ImportInputError(
            "birth_year", f"{value!r} is not a whole year between 1900 and {year_now}"
        )
