"""The SQL that analytics queries share, for every engine that runs them.

What differs between DuckDB's, PostgreSQL's and Spark's SQL (parameter markers, JSON
access, a number from text, case-blind search, epoch microseconds, time zones, the first
row per customer) is one small ``Dialect``; fragments are built in the order the query
text uses them, each adding its parameters, so property names and values are never pasted
into SQL. Spark reads double-quoted names as identifiers, as the others do
(``spark.sql.ansi.doubleQuotedIdentifiers``, set by ``cxloop.events.spark_lake``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from cxloop.analytics.funnel_spec import PropertyFilter
from cxloop.events.base import EventStore

NAME = "(CASE WHEN type = 'track' THEN event ELSE name END)"
KINDS = "type IN ('track', 'page', 'screen')"
OTHER = "Other"  # the group of breakdown values beyond the limit
_NUMBER = r"'^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$'"
_SPARK_PATH_SAFE = re.compile(r"[^'\]\[]+")  # names a Spark JSON path can spell
_SPARK_MAP = "from_json(properties, 'map<string,string>')"


def _pointer(name: str) -> str:
    return "/" + name.replace("~", "~0").replace("/", "~1")  # a JSON pointer


def _as_is(name: str) -> str:
    return name


@dataclass(frozen=True)
class Dialect:
    """What differs between the event stores' SQL. ``{m}`` is a parameter marker, ``{x}``
    a property's text (which may repeat, with its parameter)."""

    marker: str
    epoch_us: str
    text: str  # a top-level property as text, NULL when missing
    present: str  # the property is there (JSON null included)
    number: str  # {x} as a double, NULL when it is not a number
    contains: str
    local_time: str  # the wall-clock time of the timestamp {t} in the zone {m}
    local_day: str = ""  # days since 1970-01-01 of {t}'s wall-clock date in the zone {m}
    utc_day: str = ""  # ... in UTC, without a zone conversion
    bit: str = ""  # a BIGINT with bit {k} set
    key: Callable[[str], str] = _as_is  # a property's name as ``text`` takes it
    present_key: Callable[[str], str] = _as_is  # ... and as ``present`` takes it
    spells: Callable[[str], bool] = lambda _name: True  # ``key`` can spell the name
    text_of_any_name: str = ""  # ``text`` for names ``key`` cannot spell (the raw name)
    distinct_on: bool = True  # ``SELECT DISTINCT ON`` (else a row-number window)

    def text_of(self, name: str) -> tuple[str, str]:
        """The template and parameter that read a property's text."""
        if not self.spells(name):
            return self.text_of_any_name, name
        return self.text, self.key(name)


def _spark_path(name: str) -> str:
    return f"$['{name}']"


def _spark_spells(name: str) -> bool:
    return _SPARK_PATH_SAFE.fullmatch(name) is not None


DIALECTS = {
    "duckdb": Dialect(
        marker="?",
        epoch_us='epoch_us("timestamp")',
        text="json_extract_string(properties, {m})",
        present="json_extract(properties, {m}) IS NOT NULL",
        number="TRY_CAST({x} AS DOUBLE)",
        contains="contains(lower({x}), lower({m}))",
        local_time="timezone({m}, {t})",
        local_day="(epoch_us(timezone({m}, {t})) // 86400000000)",
        utc_day="(epoch_us({t}) // 86400000000)",
        bit="(CAST(1 AS BIGINT) << CAST({k} AS INTEGER))",
        key=_pointer,
        present_key=_pointer,
    ),
    "postgres": Dialect(
        marker="%s",
        epoch_us='(extract(epoch FROM "timestamp") * 1000000)::bigint',
        text="(properties ->> {m})",
        present="(properties -> {m}) IS NOT NULL",
        number=f"(CASE WHEN {{x}} ~ {_NUMBER} THEN ({{x}})::double precision END)",
        contains="strpos(lower({x}), lower({m})) > 0",
        local_time="({t} AT TIME ZONE {m})",
        local_day="CAST(floor(extract(epoch FROM ({t} AT TIME ZONE {m})) / 86400) AS BIGINT)",
        utc_day="CAST(floor(extract(epoch FROM {t}) / 86400) AS BIGINT)",
        bit="(CAST(1 AS BIGINT) << CAST({k} AS INTEGER))",
    ),
    "spark": Dialect(
        marker="?",
        epoch_us='unix_micros("timestamp")',
        text="get_json_object(properties, {m})",
        present=f"map_contains_key({_SPARK_MAP}, {{m}})",
        number="try_cast({x} AS DOUBLE)",
        contains="instr(lower({x}), lower({m})) > 0",
        local_time="from_utc_timestamp({t}, {m})",
        local_day="unix_date(to_date(from_utc_timestamp({t}, {m})))",
        utc_day="unix_date(to_date({t}))",
        bit="shiftleft(CAST(1 AS BIGINT), CAST({k} AS INT))",
        key=_spark_path,
        spells=_spark_spells,
        text_of_any_name=f"{_SPARK_MAP}[{{m}}]",
        distinct_on=False,
    ),
}


@dataclass
class Query:
    """SQL fragments with their parameters, in the order the text uses them."""

    dialect: Dialect
    params: list[Any] = field(default_factory=list)

    def add(self, template: str, *params: Any) -> str:
        self.params.extend(params)
        return template.replace("{m}", self.dialect.marker)

    def text(self, name: str) -> str:
        """A property's text; each use carries its own parameter."""
        return self.add(*self.dialect.text_of(name))

    def period_number(self, interval: str, zone: str, t: str = '"timestamp"') -> str:
        """The day, week (from Monday) or month of the time ``t`` in the zone, as a whole
        number counted from 1970: periods subtract to the number of periods between them."""
        if interval == "month":
            local = self.dialect.local_time.replace("{t}", t)
            parts = [self.add(f"extract({unit} FROM {local})", zone) for unit in ("year", "month")]
            return f"CAST({parts[0]} * 12 + {parts[1]} - 23641 AS BIGINT)"
        if zone == "UTC":
            day = self.dialect.utc_day.replace("{t}", t)
        else:
            day = self.add(self.dialect.local_day.replace("{t}", t), zone)
        if interval == "week":  # 1970-01-01 was a Thursday
            return f"CAST(floor(({day} + 3) / 7.0) AS BIGINT)"
        return f"CAST({day} AS BIGINT)"

    def present(self, name: str) -> str:
        """The property is there, JSON null included."""
        return self.add(self.dialect.present, self.dialect.present_key(name))


def matches(q: Query, event: str, filters: Sequence[PropertyFilter]) -> str:
    parts = [q.add(f"{NAME} = {{m}}", event), KINDS]
    parts += [_filter(q, f) for f in filters]
    return "(" + " AND ".join(parts) + ")"


def _filter(q: Query, f: PropertyFilter) -> str:
    if f.op in ("gt", "lt"):
        sign = ">" if f.op == "gt" else "<"
        return f"coalesce({_number(q, f.property)} {sign} {q.add('{m}', f.value)}, FALSE)"
    if f.op == "contains":
        test = q.dialect.contains.replace("{x}", q.text(f.property))
        return f"coalesce({q.add(test, f.value)}, FALSE)"
    values = f.value if f.op == "in" else [f.value]
    same = "(" + " OR ".join(_equals(q, f.property, v) for v in values) + ")"
    return same if f.op in ("eq", "in") else f"NOT {same}"


def _equals(q: Query, name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"coalesce({q.text(name)} = {q.add('{m}', 'true' if value else 'false')}, FALSE)"
    if isinstance(value, int | float):
        return f"coalesce({_number(q, name)} = {q.add('{m}', float(value))}, FALSE)"
    return f"coalesce({q.text(name)} = {q.add('{m}', value)}, FALSE)"


def _number(q: Query, name: str) -> str:
    """A property as a number; the text expression repeats where the dialect needs it."""
    parts = q.dialect.number.split("{x}")
    return "".join(
        part + (q.text(name) if n < len(parts) - 1 else "") for n, part in enumerate(parts)
    )


def dialect_for(events: EventStore) -> Dialect | None:
    return DIALECTS.get(events.backend)


class EngineUnsupported(RuntimeError):
    """The event store cannot run analytics queries."""


def time_bounds(
    q: Query, start: datetime | None, end: datetime | None, column: str = '"timestamp"'
) -> list[str]:
    """Conditions keeping ``column`` (a UTC timestamp) in the half-open range."""
    out = []
    if start is not None:
        out.append(q.add(f"{column} >= {{m}}", start))
    if end is not None:
        out.append(q.add(f"{column} < {{m}}", end))
    return out


def first_per_customer(dialect: Dialect, columns: str, where: str) -> str:
    """Each customer's first matching event (by time, then message id)."""
    order = 'customer_id, "timestamp", message_id'
    if dialect.distinct_on:
        return (
            f"SELECT DISTINCT ON (customer_id) {columns} FROM events WHERE {where} ORDER BY {order}"
        )
    return (
        f"SELECT * EXCEPT (rn) FROM (SELECT {columns}, row_number() OVER (PARTITION BY "
        f'customer_id ORDER BY "timestamp", message_id) AS rn FROM events WHERE {where}) '
        "firsts WHERE rn = 1"
    )


def query_for(events: EventStore) -> tuple[Query, Callable[..., pa.Table]]:
    """A query builder in the event store's dialect, and the store's ``sql``."""
    dialect = dialect_for(events)
    sql = getattr(events, "sql", None)
    if dialect is None or sql is None:
        raise EngineUnsupported(f"analytics do not run on the {events.backend} event store")
    return Query(dialect), sql
