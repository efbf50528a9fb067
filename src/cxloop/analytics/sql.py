"""The SQL that analytics queries share, for every event store that runs them.

What differs between DuckDB's and PostgreSQL's SQL (parameter markers, JSON access, a
number from text, case-blind search, epoch microseconds, time zones) is one small
``Dialect``; fragments are built in the order the query text uses them, each adding its
parameters, so property names and values are never pasted into SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from cxloop.analytics.funnel_spec import PropertyFilter
from cxloop.events.base import EventStore

NAME = "(CASE WHEN type = 'track' THEN event ELSE name END)"
KINDS = "type IN ('track', 'page', 'screen')"
OTHER = "Other"  # the group of breakdown values beyond the limit
_NUMBER = r"'^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$'"


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
    local_time: str  # the event's wall-clock time in the zone given as parameter

    def key(self, name: str) -> str:
        if self.marker == "?":
            return "/" + name.replace("~", "~0").replace("/", "~1")  # a JSON pointer
        return name


DIALECTS = {
    "duckdb": Dialect(
        marker="?",
        epoch_us='epoch_us("timestamp")',
        text="json_extract_string(properties, {m})",
        present="json_extract(properties, {m}) IS NOT NULL",
        number="TRY_CAST({x} AS DOUBLE)",
        contains="contains(lower({x}), lower({m}))",
        local_time='timezone({m}, "timestamp")',
    ),
    "postgres": Dialect(
        marker="%s",
        epoch_us='(extract(epoch FROM "timestamp") * 1000000)::bigint',
        text="(properties ->> {m})",
        present="(properties -> {m}) IS NOT NULL",
        number=f"(CASE WHEN {{x}} ~ {_NUMBER} THEN ({{x}})::double precision END)",
        contains="strpos(lower({x}), lower({m})) > 0",
        local_time='("timestamp" AT TIME ZONE {m})',
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
        return self.add(self.dialect.text, self.dialect.key(name))


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


def query_for(events: EventStore) -> tuple[Query, Callable[..., pa.Table]]:
    """A query builder in the event store's dialect, and the store's ``sql``."""
    dialect = dialect_for(events)
    sql = getattr(events, "sql", None)
    if dialect is None or sql is None:
        raise EngineUnsupported(f"analytics do not run on the {events.backend} event store")
    return Query(dialect), sql
