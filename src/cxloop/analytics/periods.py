"""Trends and retention: events and customers per day, week or month of the project's zone.

Both ask the event store for rows per customer and period (periods are truncated in SQL,
in the project's time zone: weeks start on Monday), then count in Python, where trait
breakdowns and "on or after" are simple.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Engine

from cxloop.analytics.funnel import traits_of
from cxloop.analytics.funnel_spec import (
    Breakdown,
    FunnelStep,
    SpecProblem,
    check_dates,
    date_range,
    refuse,
)
from cxloop.analytics.sql import KINDS, OTHER, Query, matches, query_for
from cxloop.events.base import EventStore

Interval = Literal["day", "week", "month"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrendsSpec(_Strict):
    """Events of one kind (every event when ``event`` is missing) per period."""

    event: FunnelStep | None = None
    interval: Interval = "day"
    breakdown: Breakdown | None = None
    date_from: str | None = None
    date_to: str | None = None

    @model_validator(mode="after")
    def _checks(self) -> TrendsSpec:
        refuse(check_dates(self.date_from, self.date_to) + _breakdown_problems(self.breakdown))
        return self


class RetentionSpec(_Strict):
    """Cohorts by the period of each customer's first ``start_event`` (first event of any
    kind when missing); who comes back with ``return_event`` (any event when missing)."""

    start_event: FunnelStep | None = None
    return_event: FunnelStep | None = None
    period: Interval = "week"
    periods: Annotated[int, Field(ge=1, le=60)] = 8
    returning: Literal["on", "on_or_after"] = "on"
    breakdown: Breakdown | None = None
    date_from: str | None = None
    date_to: str | None = None

    @model_validator(mode="after")
    def _checks(self) -> RetentionSpec:
        refuse(check_dates(self.date_from, self.date_to) + _breakdown_problems(self.breakdown))
        return self


def _breakdown_problems(breakdown: Breakdown | None) -> list[SpecProblem]:
    if breakdown is not None and (breakdown.property is None) == (breakdown.trait is None):
        return [SpecProblem("bad_breakdown", "breakdown", "name exactly one of property or trait")]
    return []


def run_trends(
    spec: TrendsSpec, events: EventStore, engine: Engine, zone: ZoneInfo
) -> dict[str, Any]:
    """``{"series": [{"date", "events", "customers"}], "breakdown": [{"value", "series"}]}``."""
    q, sql = query_for(events)
    period = f"date_trunc('{spec.interval}', {q.add(q.dialect.local_time, zone.key)})"
    value = _value_column(q, spec.breakdown)
    where = [matches(q, spec.event.event, spec.event.filters) if spec.event else KINDS]
    start, end = date_range(spec.date_from, spec.date_to, zone)
    where += _time_bounds(q, start, end)
    text = (
        f"SELECT {period} AS period, customer_id, {value} AS value, count(*) AS n "
        f"FROM events WHERE {' AND '.join(where)} GROUP BY 1, 2, 3"
    )
    rows = sql(text, q.params).to_pylist()
    values = _values(spec.breakdown, rows, engine)
    first = _start_of(start, spec.interval, zone)
    last = _start_of(end - timedelta(microseconds=1) if end else None, spec.interval, zone)

    def series(selected: list[int]) -> list[dict[str, Any]]:
        totals: dict[date, list[Any]] = {}
        for i in selected:
            row = rows[i]
            bucket = totals.setdefault(_day(row["period"]), [0, set()])
            bucket[0] += row["n"]
            bucket[1].add(row["customer_id"])
        days = _span(first or min(totals, default=None), last or max(totals, default=None),
                     spec.interval)  # fmt: skip
        return [
            {
                "date": d.isoformat(),
                "events": totals.get(d, [0, set()])[0],
                "customers": len(totals.get(d, [0, set()])[1]),
            }
            for d in days
        ]

    result: dict[str, Any] = {"series": series(list(range(len(rows))))}
    if spec.breakdown is not None:
        result["breakdown"] = [
            {"value": v, "series": series(members)}
            for v, members in _grouped(values, spec.breakdown.limit, lambda i: rows[i]["n"])
        ]
    return result


def run_retention(
    spec: RetentionSpec, events: EventStore, engine: Engine, zone: ZoneInfo
) -> dict[str, Any]:
    """``{"cohorts": [{"start", "size", "values"}], "breakdown": [{"value", "cohorts"}]}``:
    ``values[0]`` is the cohort's size, ``values[k]`` who came back in period *k* ("on") or
    in period *k* or later ("on_or_after")."""
    q, sql = query_for(events)
    local = q.add(q.dialect.local_time, zone.key)
    value = _value_column(q, spec.breakdown)
    start_where = (
        matches(q, spec.start_event.event, spec.start_event.filters) if spec.start_event else KINDS
    )
    starts = sql(
        f"SELECT DISTINCT ON (customer_id) customer_id, {local} AS at, {value} AS value "
        f'FROM events WHERE {start_where} ORDER BY customer_id, "timestamp", message_id',
        q.params,
    ).to_pylist()
    r = Query(q.dialect)
    period = f"date_trunc('{spec.period}', {r.add(r.dialect.local_time, zone.key)})"
    return_where = (
        matches(r, spec.return_event.event, spec.return_event.filters)
        if spec.return_event
        else KINDS
    )
    returns: dict[int, set[date]] = {}
    for row in sql(
        f"SELECT DISTINCT customer_id, {period} AS period FROM events WHERE {return_where}",
        r.params,
    ).to_pylist():
        returns.setdefault(row["customer_id"], set()).add(_day(row["period"]))
    start, end = date_range(spec.date_from, spec.date_to, zone)
    low, high = _local_naive(start, zone), _local_naive(end, zone)
    chosen = [
        row
        for row in starts
        if (low is None or row["at"] >= low) and (high is None or row["at"] < high)
    ]
    # The range picks cohorts; returns count up to the current period.
    latest = _start_of(datetime.now(zone), spec.period, zone)
    values = _values(spec.breakdown, chosen, engine)

    def cohorts(selected: list[int]) -> list[dict[str, Any]]:
        groups: dict[date, list[int]] = {}
        for i in selected:
            cohort = _truncate(chosen[i]["at"].date(), spec.period)
            groups.setdefault(cohort, []).append(chosen[i]["customer_id"])
        out = []
        for cohort in sorted(groups):
            members = groups[cohort]
            seen = 1 + (_between(cohort, latest, spec.period) if latest else spec.periods)
            count = max(1, min(spec.periods, seen))
            offsets = [
                {_between(cohort, d, spec.period) for d in returns.get(c, ())} for c in members
            ]
            row = [len(members)]
            for k in range(1, count):
                if spec.returning == "on":
                    row.append(sum(1 for o in offsets if k in o))
                else:
                    row.append(sum(1 for o in offsets if any(x >= k for x in o)))
            out.append({"start": cohort.isoformat(), "size": len(members), "values": row})
        return out

    result: dict[str, Any] = {"cohorts": cohorts(list(range(len(chosen))))}
    if spec.breakdown is not None:
        result["breakdown"] = [
            {"value": v, "cohorts": cohorts(members)}
            for v, members in _grouped(values, spec.breakdown.limit, lambda i: 1)
        ]
    return result


# -- shared --------------------------------------------------------------------------------


def _value_column(q: Query, breakdown: Breakdown | None) -> str:
    if breakdown is not None and breakdown.property is not None:
        return q.text(breakdown.property)
    return "NULL"


def _time_bounds(q: Query, start: datetime | None, end: datetime | None) -> list[str]:
    out = []
    if start is not None:
        out.append(q.add('"timestamp" >= {m}', start))
    if end is not None:
        out.append(q.add('"timestamp" < {m}', end))
    return out


def _values(
    breakdown: Breakdown | None, rows: list[dict[str, Any]], engine: Engine
) -> list[str | None]:
    if breakdown is None:
        return [None] * len(rows)
    if breakdown.trait is not None:
        traits = traits_of(engine, sorted({r["customer_id"] for r in rows}), breakdown.trait)
        return [traits.get(r["customer_id"]) for r in rows]
    return [r["value"] for r in rows]


def _grouped(
    values: list[str | None], limit: int, weight: Any
) -> list[tuple[str | None, list[int]]]:
    groups: dict[str | None, list[int]] = {}
    for i, value in enumerate(values):
        groups.setdefault(value, []).append(i)
    size = {v: sum(weight(i) for i in members) for v, members in groups.items()}
    ranked = sorted(groups, key=lambda v: (-size[v], v is None, str(v)))
    out = [(v, groups[v]) for v in ranked[:limit]]
    if ranked[limit:]:
        out.append((OTHER, [i for v in ranked[limit:] for i in groups[v]]))
    return out


def _day(value: datetime | date) -> date:
    return value.date() if isinstance(value, datetime) else value


def _truncate(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def _start_of(moment: datetime | None, interval: str, zone: ZoneInfo) -> date | None:
    if moment is None:
        return None
    return _truncate(moment.astimezone(zone).date(), interval)


def _local_naive(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
    return None if moment is None else moment.astimezone(zone).replace(tzinfo=None)


def _between(first: date, later: date, interval: str) -> int:
    if interval == "month":
        return (later.year - first.year) * 12 + later.month - first.month
    days = (later - first).days
    return days // 7 if interval == "week" else days


def _span(first: date | None, last: date | None, interval: str) -> list[date]:
    if first is None or last is None:
        return []
    out = []
    current = _truncate(first, interval)
    while current <= last:
        out.append(current)
        if interval == "month":
            current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
        else:
            current += timedelta(days=7 if interval == "week" else 1)
    return out
