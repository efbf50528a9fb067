"""The SQL that turns a loaded source relation into canonical rows, all inside DuckDB.

Every rule is a column expression, so a million rows cost a few vectorised passes rather
than a million Python calls. Each row carries its verdict (``__cx_reject_field`` and
``__cx_reject_reason``) and, only when rejected, its source values as JSON, so the happy
path never pays for reporting. Internal names start with ``__cx_`` so they cannot collide
with a file's own column names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import duckdb

from cxloop.ingest.files_model import CUSTOMER_FIELDS
from cxloop.ingest.files_plan import Binding, Plan

# How a free-form value is written into properties / traits. int / float: the whole column
# parsed as numbers; text: strings; json: already JSON text (non-string JSONL values);
# native: a typed Parquet column, passed through with its type.
ValueKind = Literal["int", "float", "text", "json", "native"]
Rule = tuple[str, str, str]  # (field at fault, SQL condition, SQL expression for the reason)

SRC = "src"
ROW = "__cx_row"
REJECT_FIELD = "__cx_reject_field"
REJECT_REASON = "__cx_reject_reason"
RAW = "__cx_raw"
CONTENT_HASH = "__cx_h"  # cheap 64-bit hash of a generated id's content, to find repeats
NVALUES = "__cx_nvalues"  # values found on a whitespace-separated line

# A number as people write it; integers with leading zeros ("00042") are identifiers and
# stay strings. Blanks match too: they become null whatever the column's kind.
_NUMBER_OR_BLANK = (
    r"\s*([+-]?(0|[1-9][0-9]*)(\.[0-9]*)?([eE][+-]?[0-9]+)?|[+-]?\.[0-9]+([eE][+-]?[0-9]+)?)?\s*"
)
_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
_WHITESPACE = " \t\r\n\f\v"
# Accepted without --date-format besides what DuckDB casts itself (ISO 8601 with 'T' or a
# space, with or without an offset or a zone name such as " UTC", and plain dates).
_FALLBACK_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d")
_FLOAT_TYPES = ("FLOAT", "DOUBLE", "REAL")
_PREFIX_ROWS = 10_000
# Short internal names for the canonical event values inside the mapping query.
_EVENT_COLUMNS = {
    "type": "'track'",
    "event": "__cx_e",
    "user_id": "__cx_u",
    "anonymous_id": "__cx_a",
    "timestamp": "__cx_ts",
    "channel": "__cx_ch",
    "properties": "__cx_props",
}


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type: str  # DuckDB's type name

    @property
    def ref(self) -> str:
        return f"{SRC}.{ident(self.name)}"

    @property
    def is_text(self) -> bool:
        return self.type == "VARCHAR"


def run(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    """Runs a statement to completion: DuckDB refuses new work while a result is open."""
    return con.execute(sql).fetchall()


def describe(
    con: duckdb.DuckDBPyConnection, relation: str, names: Sequence[str]
) -> dict[str, SourceColumn]:
    """The named columns with their DuckDB types, in the file's order."""
    types = {str(r[0]): str(r[1]) for r in run(con, f"DESCRIBE {relation}")}
    return {name: SourceColumn(name, types[name]) for name in names}


def value_kinds(
    con: duckdb.DuckDBPyConnection,
    columns: Sequence[SourceColumn],
    preset: Mapping[str, ValueKind],
) -> dict[str, ValueKind]:
    """Decides which text columns are wholly numeric, scanning as little as it can: a word
    in the first rows proves a column is text and a decimal point there proves it is not
    integer, so the pass over the whole file checks only what is still open."""
    kinds: dict[str, ValueKind] = {}
    probe: list[SourceColumn] = []
    for column in columns:
        if column.name in preset:
            kinds[column.name] = preset[column.name]
        elif column.is_text:
            probe.append(column)
        else:
            kinds[column.name] = "native"
    prefix = f"(SELECT * FROM {SRC} LIMIT {_PREFIX_ROWS}) {SRC}"
    for column, stats in zip(probe, _stats(con, probe, prefix, [True] * len(probe)), strict=True):
        kinds[column.name] = stats.kind
    open_ = [c for c in probe if kinds[c.name] != "text"]
    shape = [kinds[c.name] == "int" for c in open_]
    for column, stats in zip(open_, _stats(con, open_, SRC, shape), strict=True):
        kind = stats.kind if kinds[column.name] == "int" else "float" if stats.numeric else "text"
        if kind == "int" and stats.longest > 18 and not _fits_int64(con, column):
            kind = "text"  # 20-digit ids as JSON numbers would come back as lossy floats
        kinds[column.name] = kind
    return kinds


@dataclass(frozen=True)
class _Stats:
    numeric: bool  # every value a number or blank
    fractional: bool  # some value has a decimal point or an exponent
    longest: int

    @property
    def kind(self) -> ValueKind:
        return "text" if not self.numeric else "float" if self.fractional else "int"


def _stats(
    con: duckdb.DuckDBPyConnection,
    columns: Sequence[SourceColumn],
    relation: str,
    shape: Sequence[bool],
) -> list[_Stats]:
    """One aggregate query; ``shape`` says for which columns fraction and length matter."""
    if not columns:
        return []
    aggregates: list[str] = []
    for column, wanted in zip(columns, shape, strict=True):
        c = column.ref
        aggregates.append(f"coalesce(min(regexp_full_match({c}, {lit(_NUMBER_OR_BLANK)})), true)")
        if wanted:
            dotted = f"contains({c}, '.') OR contains({c}, 'e') OR contains({c}, 'E')"
            aggregates += [f"coalesce(max({dotted}), false)", f"coalesce(max(length({c})), 0)"]
        else:
            aggregates += ["false", "0"]
    row = run(con, f"SELECT {', '.join(aggregates)} FROM {relation}")[0]
    return [_Stats(bool(row[i]), bool(row[i + 1]), int(row[i + 2])) for i in range(0, len(row), 3)]


def _fits_int64(con: duckdb.DuckDBPyConnection, column: SourceColumn) -> bool:
    c = column.ref
    sql = f"SELECT count(*) FILTER (WHERE length({c}) > 18 AND try_cast({c} AS BIGINT) IS NULL)"
    return bool(run(con, f"{sql} FROM {SRC}")[0][0] == 0)


def parse_timestamp(text: str, date_format: str | None) -> str:
    """SQL reading the text expression as an instant. Naive values are taken in the
    session time zone, which is set from the --timezone option."""
    if date_format is not None:
        return f"CAST(try_strptime({text}, {lit(date_format)}) AS TIMESTAMPTZ)"
    fallback = "[" + ", ".join(lit(f) for f in _FALLBACK_FORMATS) + "]"
    return (
        f"coalesce(try_cast({text} AS TIMESTAMPTZ), "
        f"CAST(try_strptime({text}, {fallback}) AS TIMESTAMPTZ))"
    )


@dataclass(frozen=True)
class MappingSql:
    """Everything needed to write the mapping query for one loaded source."""

    plan: Plan
    columns: Mapping[str, SourceColumn]  # the file's own columns, in order
    kinds: Mapping[str, ValueKind]
    date_format: str | None
    row_expr: str  # the 1-based source row number, in terms of ``src``
    year_now: int
    expected_values: int | None = None  # whitespace files: values a line must have

    def field(self, name: str) -> Binding | None:
        return self.plan.fields.get(name)

    def text(self, binding: Binding | None) -> str:
        """Trimmed text, or NULL when absent or blank."""
        if binding is None:
            return "NULL::VARCHAR"
        if binding.column is None:
            value = (binding.constant or "").strip()
            return lit(value) if value else "NULL::VARCHAR"
        column = self.columns[binding.column]
        value = column.ref if column.is_text else f"CAST({column.ref} AS VARCHAR)"
        return f"nullif(trim({value}), '')"

    def timestamp(self, binding: Binding | None) -> str:
        """Typed date columns are taken as they are; text goes through the date rules."""
        if binding is not None and binding.column is not None:
            column = self.columns[binding.column]
            if column.type.startswith("TIMESTAMP") or column.type == "DATE":
                return f"CAST({column.ref} AS TIMESTAMPTZ)"
        return parse_timestamp(self.text(binding), self.date_format)

    def timestamp_rules(self, field: str, text: str, value: str, required: bool) -> list[Rule]:
        """A date that is empty (when required) or does not parse."""
        if self.date_format is not None:
            why = (
                f"'date ''' || {text} || ''' does not match --date-format '"
                f" || {lit(self.date_format)}"
            )
        else:
            why = (
                f"'{field} ''' || {text} || ''' is not an ISO 8601 date/time"
                " (give --date-format for other layouts)'"
            )
        rules: list[Rule] = []
        if required:
            rules.append((field, f"{text} IS NULL AND {value} IS NULL", f"'{field} is empty'"))
        rules.append((field, f"{text} IS NOT NULL AND NOT coalesce(isfinite({value}), false)", why))
        return rules

    def bag_value(self, binding: Binding) -> str:
        if binding.column is None:
            return lit(binding.constant or "")
        column = self.columns[binding.column]
        c = column.ref
        kind = self.kinds.get(column.name, "text")
        if kind == "int":
            return f"try_cast({c} AS BIGINT)"
        if kind == "float":
            return f"try_cast({c} AS DOUBLE)"
        if kind == "json":
            return f"CAST({c} AS JSON)"
        if kind == "native":
            return f"CASE WHEN isfinite({c}) THEN {c} END" if column.type in _FLOAT_TYPES else c
        # ascii() > 32 settles almost every value without the slower whitespace trim.
        return (
            f"CASE WHEN ascii({c}) > 32 THEN {c} "
            f"WHEN trim({c}, {lit(_WHITESPACE)}) = '' THEN NULL ELSE {c} END"
        )

    def bag(self) -> str:
        entries = list(self.plan.bag)
        base = self.plan.bag_base
        if base is not None and not self._holds_objects(base):
            entries.append((base, Binding(column=base)))  # text, not objects: keep as is
            base = None
        pairs = ", ".join(f"{lit(key)}, {self.bag_value(b)}" for key, b in entries)
        if base is None:
            return f"CAST(json_object({pairs}) AS VARCHAR)" if pairs else "'{}'"
        # Merge-patch semantics: keys whose value is null are left out of the result.
        ref = self.columns[base].ref
        built = f"json_merge_patch(coalesce(CAST({ref} AS JSON), '{{}}'), json_object({pairs}))"
        return f"CAST({built} AS VARCHAR)"

    def _holds_objects(self, name: str) -> bool:
        column = self.columns[name]
        return self.kinds.get(name) == "json" or column.type.startswith(("STRUCT", "MAP", "JSON"))

    def raw(self) -> str:
        """The source row as JSON; the caller evaluates it for rejected rows only."""
        if not self.columns:
            return "'{}'"
        pairs = ", ".join(
            f"{lit(n)}, {ident(n) if c.is_text else f'CAST({ident(n)} AS VARCHAR)'}"
            for n, c in self.columns.items()
        )
        return f"CAST(json_object({pairs}) AS VARCHAR)"

    def verdict(self, rules: Sequence[Rule]) -> tuple[str, str]:
        """(field CASE, reason CASE) from rules in priority order; a whitespace-separated
        line with the wrong number of values is reported before anything else."""
        if self.expected_values is not None:
            n = self.expected_values
            shape: Rule = (
                "row",
                f"{NVALUES} <> {n}",
                f"'row has ' || {NVALUES} || ' values but the header has {n} columns'",
            )
            rules = [shape, *rules]
        fields = " ".join(f"WHEN {cond} THEN {lit(f)}" for f, cond, _ in rules)
        reasons = " ".join(f"WHEN {cond} THEN {why}" for _, cond, why in rules)
        return f"CASE {fields} END", f"CASE {reasons} END"

    def source_star(self) -> str:
        extra = f", {SRC}.{NVALUES}" if self.expected_values is not None else ""
        return f"{SRC}.*{extra}"


def event_content(col: Callable[[str], str], occurrence: str) -> str:
    """What identifies an imported event: its canonical values plus its occurrence number,
    so re-reading a file gives the same ids while identical rows stay distinct."""
    parts = [
        col("type"),
        col("event"),
        f"coalesce({col('user_id')}, '')",
        f"coalesce({col('anonymous_id')}, '')",
        f"CAST(epoch_us({col('timestamp')}) AS VARCHAR)",
        f"coalesce({col('channel')}, '')",
        col("properties"),
        occurrence,
    ]
    return f"concat_ws(chr(31), {', '.join(parts)})"


def events_sql(sql: MappingSql, ordered: bool) -> str:
    """Ids assume each row's content is unique; ``duplicate_ids_sql`` then corrects the
    few rows for which that is not so."""
    ts = sql.field("timestamp")
    rules: list[Rule] = [
        (
            "user_id",
            "__cx_u IS NULL AND __cx_a IS NULL",
            "'neither user_id nor anonymous_id has a value'",
        ),
        ("event", "__cx_e IS NULL", "'the event name is empty'"),
        *sql.timestamp_rules("timestamp", "__cx_tt", "__cx_ts", required=True),
    ]
    field_case, reason_case = sql.verdict(rules)
    content = event_content(_EVENT_COLUMNS.__getitem__, "'1'")
    order = f" ORDER BY {ROW}" if ordered else ""
    return f"""
WITH __cx_a1 AS (
  SELECT {sql.row_expr} AS {ROW},
    {sql.text(sql.field("event"))} AS __cx_e,
    {sql.text(sql.field("user_id"))} AS __cx_u,
    {sql.text(sql.field("anonymous_id"))} AS __cx_a,
    {sql.text(sql.field("channel"))} AS __cx_ch,
    {sql.text(sql.field("message_id"))} AS __cx_mid,
    {sql.text(ts)} AS __cx_tt,
    {sql.timestamp(ts)} AS __cx_ts,
    {sql.bag()} AS __cx_props,
    {sql.source_star()}
  FROM {SRC}
), __cx_a2 AS (
  SELECT *, {field_case} AS {REJECT_FIELD}, {reason_case} AS {REJECT_REASON} FROM __cx_a1
)
SELECT {ROW},
  CASE WHEN {REJECT_FIELD} IS NULL THEN coalesce(__cx_mid, 'imp-' || md5({content})) END
    AS message_id,
  CASE WHEN {REJECT_FIELD} IS NULL AND __cx_mid IS NULL
    THEN hash(__cx_e, __cx_u, __cx_a, __cx_ts, __cx_ch, __cx_props) END AS {CONTENT_HASH},
  'track' AS type, __cx_e AS event, __cx_u AS user_id, __cx_a AS anonymous_id,
  CASE WHEN {REJECT_FIELD} IS NULL THEN __cx_ts END AS timestamp, __cx_ch AS channel,
  __cx_props AS properties, {REJECT_FIELD}, {REJECT_REASON},
  CASE WHEN {REJECT_FIELD} IS NOT NULL THEN {sql.raw()} END AS {RAW}
FROM __cx_a2{order}
"""


def duplicate_ids_sql(relation: str, candidates: str) -> str:
    """Identical rows are separate events (two equal purchases on one day): the second and
    later copies get their occurrence number folded into the id. Only rows whose content
    hash repeats are looked at; the answer is (row, corrected id) in row order."""
    content = event_content(ident, "CAST(__cx_n AS VARCHAR)")
    return f"""
WITH __cx_maybe AS (
  SELECT * FROM {relation} WHERE {CONTENT_HASH} IN (SELECT h FROM {candidates})
), __cx_numbered AS (
  SELECT *, row_number() OVER (PARTITION BY message_id ORDER BY {ROW}) AS __cx_n
  FROM __cx_maybe
)
SELECT {ROW}, 'imp-' || md5({content}) AS message_id
FROM __cx_numbered WHERE __cx_n > 1 ORDER BY {ROW}
"""


def customers_sql(sql: MappingSql, ordered: bool) -> str:
    """Streamed straight out: customers need no second pass."""
    plain = [f for f in CUSTOMER_FIELDS if f not in ("gender", "birth_year", "created_at")]
    gender = sql.text(sql.field("gender"))
    created = sql.field("created_at")
    selects = [
        *(f"{sql.text(sql.field(f))} AS {ident('__cx_f_' + f)}" for f in plain),
        f"CASE lower({gender}) WHEN 'f' THEN 'female' WHEN 'm' THEN 'male' "
        f"ELSE lower({gender}) END AS __cx_f_gender",
        f"{sql.text(sql.field('birth_year'))} AS __cx_byt",
        f"{sql.text(created)} AS __cx_ct",
        f"{sql.timestamp(created)} AS __cx_cts",
    ]
    rules: list[Rule] = [
        (
            "user_id",
            "__cx_f_user_id IS NULL AND __cx_f_email IS NULL",
            "'neither user_id nor email has a value'",
        ),
        (
            "email",
            f"__cx_f_email IS NOT NULL AND NOT regexp_full_match(__cx_f_email, {lit(_EMAIL)})",
            "'e-mail ''' || __cx_f_email || ''' is not a valid address'",
        ),
        (
            "birth_year",
            "__cx_byt IS NOT NULL AND __cx_by IS NULL",
            "'birth_year ''' || __cx_byt || ''' is not a whole number'",
        ),
        (
            "birth_year",
            f"__cx_by IS NOT NULL AND (__cx_by < 1900 OR __cx_by > {sql.year_now})",
            f"'birth_year ' || __cx_by || ' is not between 1900 and {sql.year_now}'",
        ),
        *sql.timestamp_rules("created_at", "__cx_ct", "__cx_cts", required=False),
    ]
    field_case, reason_case = sql.verdict(rules)
    outputs = [
        f"{ident('__cx_f_' + f)} AS {ident(f)}"
        for f in CUSTOMER_FIELDS
        if f not in ("birth_year", "created_at")
    ]
    order = f" ORDER BY {ROW}" if ordered else ""
    return f"""
WITH __cx_a1 AS (
  SELECT {sql.row_expr} AS {ROW}, {", ".join(selects)}, {sql.bag()} AS __cx_traits,
    {sql.source_star()}
  FROM {SRC}
), __cx_a2 AS (
  SELECT *, CASE WHEN regexp_full_match(__cx_byt, '[0-9]{{1,9}}')
    THEN CAST(__cx_byt AS INTEGER) END AS __cx_by FROM __cx_a1
), __cx_a3 AS (
  SELECT *, {field_case} AS {REJECT_FIELD}, {reason_case} AS {REJECT_REASON} FROM __cx_a2
)
SELECT {ROW}, {", ".join(outputs)},
  CASE WHEN {REJECT_FIELD} IS NULL THEN __cx_by END AS birth_year,
  CASE WHEN {REJECT_FIELD} IS NULL THEN __cx_cts END AS created_at,
  __cx_traits AS traits, {REJECT_FIELD}, {REJECT_REASON},
  CASE WHEN {REJECT_FIELD} IS NOT NULL THEN {sql.raw()} END AS {RAW}
FROM __cx_a3{order}
"""
