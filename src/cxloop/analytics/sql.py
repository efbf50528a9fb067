"""The SQL that analytics queries share, for every engine that runs them.

Queries are written once, in DuckDB's SQL, and sqlglot writes them in each engine's own
(PostgreSQL, Spark SQL): quoting, ``DISTINCT ON`` (a row-number window on Spark), integer
division, bit shifts, parameter markers. What sqlglot cannot translate faithfully is one
small ``Dialect`` of fragments in the engine's own SQL, parsed by sqlglot in that dialect:
JSON access (each engine spells a property's path differently, and the path is a bound
parameter, which sqlglot cannot rewrite), a number from text (PostgreSQL has no
``TRY_CAST``), epoch microseconds and wall-clock time in a zone. Fragments stand in the
query text as placeholder names and are grafted into the parsed tree, so a query reads as
plain SQL. Parameters are named, so fragments may be built in any order, and property
names and values are never pasted into SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from cxloop.analytics.funnel_spec import PropertyFilter
from cxloop.events.base import EventStore

WRITTEN_IN = "duckdb"  # the SQL the queries are written in
NAME = "(CASE WHEN type = 'track' THEN event ELSE name END)"
KINDS = "type IN ('track', 'page', 'screen')"
OTHER = "Other"  # the group of breakdown values beyond the limit
_NUMBER = r"'^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$'"
_SPARK_PATH_SAFE = re.compile(r"[^'\]\[]+")  # names a Spark JSON path can spell
_SPARK_MAP = "from_json(properties, 'map<string,string>')"
_SLOT = re.compile(r"\{(\w+)\}")
_PART = "__cx_part_"  # the name a fragment stands under in the query text


def _pointer(name: str) -> str:
    return "/" + name.replace("~", "~0").replace("/", "~1")  # a JSON pointer


def _as_is(name: str) -> str:
    return name


@dataclass(frozen=True)
class Dialect:
    """The fragments sqlglot cannot translate, in the engine's own SQL. ``{m}`` is a
    parameter; ``{t}`` a timestamp, ``{x}`` a property's text and ``{k}`` a bit number,
    each an expression of the query (which may repeat)."""

    name: str  # sqlglot's name for the engine's SQL
    epoch_us: str  # the timestamp {t} in microseconds since 1970
    text: str  # a top-level property as text, NULL when missing
    present: str  # the property is there (JSON null included)
    number: str  # {x} as a double, NULL when it is not a number
    contains: str
    local_time: str  # the wall-clock time of the timestamp {t} in the zone {m}
    local_day: str  # days since 1970-01-01 of {t}'s wall-clock date in the zone {m}
    utc_day: str  # ... in UTC, without a zone conversion
    bit: str = "(CAST(1 AS BIGINT) << CAST({k} AS INTEGER))"  # a BIGINT with bit {k} set
    key: Callable[[str], str] = _as_is  # a property's name as ``text`` takes it
    present_key: Callable[[str], str] = _as_is  # ... and as ``present`` takes it
    spells: Callable[[str], bool] = lambda _name: True  # ``key`` can spell the name
    text_of_any_name: str = ""  # ``text`` for names ``key`` cannot spell (the raw name)

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
        name="duckdb",
        epoch_us="epoch_us({t})",
        text="json_extract_string(properties, {m})",
        present="json_extract(properties, {m}) IS NOT NULL",
        number="TRY_CAST({x} AS DOUBLE)",
        contains="contains(lower({x}), lower({m}))",
        local_time="timezone({m}, {t})",
        # floor, not //: DuckDB's integer division truncates toward zero (before 1970).
        local_day="CAST(floor(epoch_us(timezone({m}, {t})) / 86400000000) AS BIGINT)",
        utc_day="CAST(floor(epoch_us({t}) / 86400000000) AS BIGINT)",
        key=_pointer,
        present_key=_pointer,
    ),
    "postgres": Dialect(
        name="postgres",
        epoch_us="(extract(epoch FROM {t}) * 1000000)::bigint",
        text="(properties ->> {m})",
        present="(properties -> {m}) IS NOT NULL",
        number=f"(CASE WHEN {{x}} ~ {_NUMBER} THEN ({{x}})::double precision END)",
        contains="strpos(lower({x}), lower({m})) > 0",
        local_time="({t} AT TIME ZONE {m})",
        local_day="CAST(floor(extract(epoch FROM ({t} AT TIME ZONE {m})) / 86400) AS BIGINT)",
        utc_day="CAST(floor(extract(epoch FROM {t}) / 86400) AS BIGINT)",
    ),
    "spark": Dialect(
        name="spark",
        epoch_us="unix_micros({t})",
        text="get_json_object(properties, {m})",
        present=f"map_contains_key({_SPARK_MAP}, {{m}})",
        number="try_cast({x} AS DOUBLE)",
        contains="instr(lower({x}), lower({m})) > 0",
        local_time="from_utc_timestamp({t}, {m})",
        local_day="CAST(floor(unix_seconds(from_utc_timestamp({t}, {m})) / 86400) AS BIGINT)",
        utc_day="CAST(floor(unix_seconds({t}) / 86400) AS BIGINT)",
        bit="shiftleft(CAST(1 AS BIGINT), CAST({k} AS INT))",
        key=_spark_path,
        spells=_spark_spells,
        text_of_any_name=f"{_SPARK_MAP}[{{m}}]",
    ),
}


@lru_cache(maxsize=256)
def _template(dialect: str, template: str) -> exp.Expr:
    """A fragment's tree, its slots as columns named ``__slot_…`` (``{m}`` numbered)."""
    count = iter(range(template.count("{m}")))

    def slot(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"__slot_m{next(count)}" if name == "m" else f"__slot_{name}"

    return sqlglot.parse_one(_SLOT.sub(slot, template), read=dialect)


@lru_cache(maxsize=512)
def _parsed(text: str) -> exp.Expr:
    return sqlglot.parse_one(text, read=WRITTEN_IN)


@dataclass
class Query:
    """A query being built: its named parameters and the engine's fragments it uses."""

    dialect: Dialect
    params: dict[str, Any] = field(default_factory=dict)
    parts: dict[str, exp.Expr] = field(default_factory=dict)

    def param(self, value: Any) -> str:
        """A bound parameter, as the query text names it."""
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    def add(self, template: str, *params: Any) -> str:
        """Query text with each ``{m}`` bound, in turn, to the next parameter."""
        values = iter(params)
        return re.sub(r"\{m\}", lambda _m: self.param(next(values)), template)

    def native(self, template: str, *params: Any, **slots: str) -> str:
        """A fragment in the engine's own SQL: its ``{m}`` bound to ``params`` in turn, its
        other slots filled with query text. Returns the name it stands under."""
        tree = _template(self.dialect.name, template).copy()
        fills: dict[str, exp.Expr] = {
            f"__slot_m{n}": exp.Placeholder(this=self.param(value)[1:])
            for n, value in enumerate(params)
        }
        fills.update({f"__slot_{k}": _parsed(v) for k, v in slots.items()})
        tree = _graft(tree, fills)
        name = f"{_PART}{len(self.parts)}"
        self.parts[name] = tree
        return name

    def build(self, text: str) -> tuple[str, dict[str, Any]]:
        """The query in the engine's SQL, and its parameters by name."""
        tree = _graft(_parsed(text).copy(), self.parts)
        return tree.sql(dialect=self.dialect.name), dict(self.params)

    def text(self, name: str) -> str:
        """A property's text; each use carries its own parameter."""
        template, key = self.dialect.text_of(name)
        return self.native(template, key)

    def present(self, name: str) -> str:
        """The property is there, JSON null included."""
        return self.native(self.dialect.present, self.dialect.present_key(name))

    def number(self, name: str) -> str:
        """A property as a number, NULL when its text is not one."""
        return self.native(self.dialect.number, x=self.text(name))

    def contains(self, name: str, value: str) -> str:
        return self.native(self.dialect.contains, value, x=self.text(name))

    def epoch_us(self, t: str = '"timestamp"') -> str:
        return self.native(self.dialect.epoch_us, t=t)

    def bit(self, k: str) -> str:
        """A BIGINT with bit ``k`` (query text) set."""
        return self.native(self.dialect.bit, k=k)

    def period_number(self, interval: str, zone: str, t: str = '"timestamp"') -> str:
        """The day, week (from Monday) or month of the time ``t`` in the zone, as a whole
        number counted from 1970: periods subtract to the number of periods between them."""
        if interval == "month":
            local = self.native(self.dialect.local_time, zone, t=t)
            months = f"extract(year FROM {local}) * 12 + extract(month FROM {local})"
            return f"CAST({months} - 23641 AS BIGINT)"
        if zone == "UTC":
            day = self.native(self.dialect.utc_day, t=t)
        else:
            day = self.native(self.dialect.local_day, zone, t=t)
        if interval == "week":  # 1970-01-01 was a Thursday
            return f"CAST(floor(({day} + 3) / 7.0) AS BIGINT)"
        return f"CAST({day} AS BIGINT)"


def _graft(tree: exp.Expr, parts: Mapping[str, exp.Expr]) -> exp.Expr:
    """The tree with each column named in ``parts`` replaced by that part's tree."""
    if not parts:
        return tree

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table and node.name in parts:
            return _graft(parts[node.name].copy(), parts)
        return node

    return tree.transform(swap, copy=False)


def matches(q: Query, event: str, filters: Sequence[PropertyFilter]) -> str:
    parts = [q.add(f"{NAME} = {{m}}", event), KINDS]
    parts += [_filter(q, f) for f in filters]
    return "(" + " AND ".join(parts) + ")"


def _filter(q: Query, f: PropertyFilter) -> str:
    if f.op in ("gt", "lt"):
        sign = ">" if f.op == "gt" else "<"
        return f"coalesce({q.number(f.property)} {sign} {q.param(f.value)}, FALSE)"
    if f.op == "contains":
        return f"coalesce({q.contains(f.property, f.value)}, FALSE)"
    values = f.value if f.op == "in" else [f.value]
    same = "(" + " OR ".join(_equals(q, f.property, v) for v in values) + ")"
    return same if f.op in ("eq", "in") else f"NOT {same}"


def _equals(q: Query, name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"coalesce({q.text(name)} = {q.param('true' if value else 'false')}, FALSE)"
    if isinstance(value, int | float):
        return f"coalesce({q.number(name)} = {q.param(float(value))}, FALSE)"
    return f"coalesce({q.text(name)} = {q.param(value)}, FALSE)"


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
        out.append(f"{column} >= {q.param(start)}")
    if end is not None:
        out.append(f"{column} < {q.param(end)}")
    return out


def first_per_customer(columns: str, where: str) -> str:
    """Each customer's first matching event (by time, then message id)."""
    return (
        f"SELECT DISTINCT ON (customer_id) {columns} FROM events WHERE {where} "
        'ORDER BY customer_id, "timestamp", message_id'
    )


def query_for(events: EventStore) -> tuple[Query, Callable[..., pa.Table]]:
    """A query builder in the event store's dialect, and the store's ``sql``."""
    dialect = dialect_for(events)
    sql = getattr(events, "sql", None)
    if dialect is None or sql is None:
        raise EngineUnsupported(f"analytics do not run on the {events.backend} event store")
    return Query(dialect), sql
