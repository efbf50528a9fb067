"""The analytics SQL is written once and sqlglot writes it for each engine: what reaches an
engine must be its own SQL, with every name and value a bound parameter."""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import exp

from cxloop.analytics.funnel import _rows_query
from cxloop.analytics.funnel_spec import FunnelSpec
from cxloop.analytics.sql import DIALECTS, Query, first_per_customer, matches

HOSTILE = "x'); DROP TABLE events; --"
SPEC = FunnelSpec.model_validate(
    {
        "steps": [
            {"event": HOSTILE, "filters": [{"property": HOSTILE, "op": "gt", "value": 3}]},
            {"event": "B", "filters": [{"property": "plan", "op": "contains", "value": HOSTILE}]},
        ],
        "breakdown": {"property": "it's"},
    }
)


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_names_and_values_are_parameters_in_each_engines_own_sql(name: str) -> None:
    text, params = _rows_query(SPEC, DIALECTS[name])
    assert "DROP" not in text and "it's" not in text
    assert HOSTILE in params.values()
    tree = sqlglot.parse_one(text, read=name)  # the engine's SQL, as that engine reads it
    markers = {p.name for p in tree.find_all(exp.Placeholder)}
    assert markers == set(params)  # every parameter is used, none is missing
    if name == "postgres":  # psycopg reads every other % as a parameter marker
        assert "%" not in re.sub(r"%\(p\d+\)s", "", text)


def test_each_engine_gets_its_own_parameter_markers_and_quoting() -> None:
    built = {}
    for name, dialect in DIALECTS.items():
        q = Query(dialect)
        built[name] = q.build(f'SELECT "timestamp" FROM events WHERE {matches(q, "A", [])}')[0]
    assert '"timestamp"' in built["duckdb"] and "$p0" in built["duckdb"]
    assert '"timestamp"' in built["postgres"] and "%(p0)s" in built["postgres"]
    assert "`timestamp`" in built["spark"] and ":p0" in built["spark"]


def test_one_value_used_twice_is_one_parameter() -> None:
    q = Query(DIALECTS["postgres"])
    month = q.period_number("month", "Europe/Paris")  # the local time appears twice
    text, params = q.build(f"SELECT {month} AS m FROM events")
    assert params == {"p0": "Europe/Paris"}
    assert text.count("%(p0)s") == 2


def test_the_first_row_per_customer_is_a_window_where_distinct_on_is_missing() -> None:
    text = first_per_customer('customer_id, "timestamp" AS first_at', "TRUE")
    spark = Query(DIALECTS["spark"]).build(text)[0]
    assert "DISTINCT ON" not in spark and "ROW_NUMBER()" in spark
    assert "DISTINCT ON" in Query(DIALECTS["postgres"]).build(text)[0]
