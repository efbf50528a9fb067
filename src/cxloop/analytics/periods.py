"""Trends and retention: events and customers per day, week or month of the project's zone.

Periods are whole numbers counted from 1970 (days, weeks from Monday, months), computed in
SQL in the project's time zone (``Query.period_number``), so periods subtract and index
arrays. Trends get one row per period, customer and breakdown value and add them up with
array operations. Retention lets the engine do the counting: one row per cohort customer
with a bit mask of the periods in which they came back, as chdb's arrays form does, so a
million customers cost a fraction of a second on every engine.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from cxloop.analytics.customers import (
    CustomerFacts,
    check_customer_breakdown,
    customers_for,
    group_labels,
)
from cxloop.analytics.funnel_spec import (
    ONE_BREAKDOWN,
    Breakdown,
    FunnelStep,
    SpecProblem,
    check_dates,
    date_range,
    refuse,
)
from cxloop.analytics.indexed import by_code, local_days, sequences_for
from cxloop.analytics.sql import (
    KINDS,
    OTHER,
    Query,
    first_per_customer,
    matches,
    query_for,
    time_bounds,
)
from cxloop.events.base import EventStore
from cxloop.events.sequences import Sequences

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

    def problems(self) -> list[SpecProblem]:
        return check_dates(self.date_from, self.date_to) + _breakdown_problems(self.breakdown)


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

    def problems(self) -> list[SpecProblem]:
        return check_dates(self.date_from, self.date_to) + _breakdown_problems(self.breakdown)


def _breakdown_problems(breakdown: Breakdown | None) -> list[SpecProblem]:
    if breakdown is not None and not breakdown.names_one():
        return [SpecProblem("bad_breakdown", "breakdown", ONE_BREAKDOWN)]
    return []


def run_trends(
    spec: TrendsSpec, events: EventStore, engine: Engine | None, zone: ZoneInfo
) -> dict[str, Any]:
    """``{"series": [{"date", "events", "customers"}], "breakdown": [{"value", "series"}]}``."""
    refuse(spec.problems())
    check_customer_breakdown(spec.breakdown, customers_for(events, engine), engine)
    start, end = date_range(spec.date_from, spec.date_to, zone)
    by_property = spec.breakdown is not None and spec.breakdown.property is not None
    filters = [spec.event.filters] if spec.event else []
    sequences = sequences_for(events, filters, by_property)
    if sequences is not None:  # names and times suffice: the index has them
        periods, customers, counts = _indexed_trend(spec, sequences, zone, start, end)
        raw: list[Any] = [None] * len(periods)
    else:
        periods, customers, counts, raw = _queried_trend(spec, events, zone, start, end)
    first = _period_of(start, spec.interval, zone)
    last = _period_of(end - timedelta(microseconds=1) if end else None, spec.interval, zone)
    span = int(customers.max()) + 1 if len(customers) else 1

    def series(members: npt.NDArray[np.int64]) -> list[dict[str, Any]]:
        mine = periods[members]
        low = first if first is not None else (int(mine.min()) if len(mine) else None)
        high = last if last is not None else (int(mine.max()) if len(mine) else None)
        if low is None or high is None or high < low:
            return []
        slot = mine - low
        size = high - low + 1
        happened = np.bincount(slot, weights=counts[members], minlength=size)
        # A customer counts once per period, whatever breakdown values their events had.
        pairs = np.unique(slot * span + customers[members])
        who = np.bincount(pairs // span, minlength=size)
        return [
            {"date": _period_start(low + k, spec.interval).isoformat(),
             "events": int(happened[k]), "customers": int(who[k])}
            for k in range(size)
        ]  # fmt: skip

    result: dict[str, Any] = {"series": series(np.arange(len(periods)))}
    if spec.breakdown is not None:
        picked = [{"customer_id": c, "value": v}
                  for c, v in zip(customers.tolist(), raw, strict=True)]  # fmt: skip
        values = _values(spec.breakdown, picked, customers_for(events, engine), engine)
        weights = counts.tolist()
        result["breakdown"] = [
            {"value": v, "series": series(np.array(members, dtype=np.int64))}
            for v, members in _grouped(values, spec.breakdown.limit, weights.__getitem__)
        ]
    return result


_Trend = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def _queried_trend(
    spec: TrendsSpec,
    events: EventStore,
    zone: ZoneInfo,
    start: datetime | None,
    end: datetime | None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], list[Any]]:
    """Per period, customer and breakdown value, the events counted, by the store."""
    q, sql = query_for(events)
    period = q.period_number(spec.interval, zone.key)
    value = _value_column(q, spec.breakdown)
    where = [matches(q, spec.event.event, spec.event.filters) if spec.event else KINDS]
    where += time_bounds(q, start, end)
    text = (
        f"SELECT {period} AS period, customer_id, {value} AS value, count(*) AS n "
        f"FROM events WHERE {' AND '.join(where)} GROUP BY 1, 2, 3"
    )
    rows = sql(*q.build(text))
    return (
        np.asarray(rows.column("period").to_numpy(), dtype=np.int64),
        np.asarray(rows.column("customer_id").to_numpy(), dtype=np.int64),
        np.asarray(rows.column("n").to_numpy(), dtype=np.int64),
        rows.column("value").to_pylist(),
    )


def _indexed_trend(
    spec: TrendsSpec,
    seqs: Sequences,
    zone: ZoneInfo,
    start: datetime | None,
    end: datetime | None,
) -> _Trend:
    """The same counts (without breakdown values) from the sequence index."""
    wanted = by_code(seqs, spec.event.event if spec.event else None)[seqs.code]
    if start is not None:
        wanted &= seqs.at >= int(start.timestamp() * 1_000_000)
    if end is not None:
        wanted &= seqs.at < int(end.timestamp() * 1_000_000)
    rows = np.flatnonzero(wanted)
    period = _period_numbers(local_days(seqs, zone)[rows], spec.interval)
    customer = seqs.customer[rows]
    if not len(rows):
        return period, customer, np.zeros(0, np.int64)
    low = int(period.min())
    span = int(customer.max()) + 1
    pairs, counts = np.unique((period - low) * span + customer, return_counts=True)
    return pairs // span + low, pairs % span, counts.astype(np.int64)


def _period_of(moment: datetime | None, interval: str, zone: ZoneInfo) -> int | None:
    """The period number (as ``Query.period_number`` counts) of a moment in the zone."""
    if moment is None:
        return None
    days = (moment.astimezone(zone).date() - date(1970, 1, 1)).days
    return int(_period_numbers(np.array([days]), interval)[0])


def run_retention(
    spec: RetentionSpec, events: EventStore, engine: Engine | None, zone: ZoneInfo
) -> dict[str, Any]:
    """``{"cohorts": [{"start", "size", "values"}], "breakdown": [{"value", "cohorts"}]}``:
    ``values[0]`` is the cohort's size, ``values[k]`` who came back in period *k* ("on") or
    in period *k* or later ("on_or_after")."""
    refuse(spec.problems())
    check_customer_breakdown(spec.breakdown, customers_for(events, engine), engine)
    by_property = spec.breakdown is not None and spec.breakdown.property is not None
    filters = [e.filters for e in (spec.start_event, spec.return_event) if e is not None]
    sequences = sequences_for(events, filters, by_property)
    if sequences is not None:  # names and times suffice: the index has them
        customers, cohort, back = _indexed_cohorts(spec, sequences, zone)
        raw: list[Any] = [None] * len(customers)
    else:
        customers, cohort, back, raw = _queried_cohorts(spec, events, zone)
    # The range picks cohorts; returns count up to the current period.
    now = _period_of(datetime.now(zone), spec.period, zone)
    assert now is not None
    values: list[str | None] = []
    if spec.breakdown is not None:
        ids = customers.tolist()
        picked = [{"customer_id": c, "value": v} for c, v in zip(ids, raw, strict=True)]
        values = _values(spec.breakdown, picked, customers_for(events, engine), engine)

    def cohorts(members: npt.NDArray[np.int64]) -> list[dict[str, Any]]:
        labels, index = np.unique(cohort[members], return_inverse=True)
        sizes = np.bincount(index, minlength=len(labels))
        mine = back[members]
        counts = np.zeros((len(labels), spec.periods), dtype=np.int64)
        for k in range(1, spec.periods):
            # Bit k says the customer came back k periods after their cohort's.
            hit = (mine >> k) & 1 if spec.returning == "on" else (mine >> k) != 0
            counts[:, k] = np.bincount(index, weights=hit, minlength=len(labels))
        out = []
        for n, label in enumerate(labels.tolist()):
            shown = max(1, min(spec.periods, 1 + now - label))
            row = [int(sizes[n]), *counts[n, 1:shown].tolist()]
            out.append({"start": _period_start(label, spec.period).isoformat(),
                        "size": int(sizes[n]), "values": row})  # fmt: skip
        return out

    result: dict[str, Any] = {"cohorts": cohorts(np.arange(len(customers)))}
    if spec.breakdown is not None:
        result["breakdown"] = [
            {"value": v, "cohorts": cohorts(np.array(members, dtype=np.int64))}
            for v, members in _grouped(values, spec.breakdown.limit, lambda i: 1)
        ]
    return result


_MASK_PERIODS = 62  # periods a 64-bit mask of active periods can hold (sign bit left)


def _queried_cohorts(spec: RetentionSpec, events: EventStore, zone: ZoneInfo) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], list[Any]
]:  # fmt: skip
    """The cohort customers, their cohorts, the periods they came back in (bit *k*) and
    their breakdown values, counted by the store."""
    q, sql = query_for(events)
    by_property = spec.breakdown is not None and spec.breakdown.property is not None
    span = None if by_property else sql(*_period_span(spec, Query(q.dialect), zone)).to_pylist()[0]
    if span is None or span["first"] is None or span["last"] - span["first"] > _MASK_PERIODS:
        rows = sql(*_retention_query(spec, q, zone))
        cohort = np.asarray(rows.column("cohort").to_numpy(), dtype=np.int64)
        back = np.asarray(rows.column("back").to_numpy(), dtype=np.int64)
    else:
        rows = sql(*_masks_query(spec, q, zone, span["first"]))
        cohort = np.asarray(rows.column("cohort").to_numpy(), dtype=np.int64)
        masks = np.asarray(rows.column("mask").to_numpy(), dtype=np.int64)
        # Bit p of a mask: active in the p-th period of the data; shifted to the cohort's.
        kept = (1 << spec.periods) - 2  # periods 1 .. periods - 1 after the cohort's
        back = np.right_shift(masks, cohort - span["first"]) & kept
    customers = np.asarray(rows.column("customer_id").to_numpy(), dtype=np.int64)
    return customers, cohort, back, rows.column("value").to_pylist()


def _indexed_cohorts(spec: RetentionSpec, seqs: Sequences, zone: ZoneInfo) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]
]:  # fmt: skip
    """The same from the sequence index, in one compiled pass over each customer."""
    # Loaded here, not at import: numba would slow every command's start.
    from cxloop.analytics.periods_fast import cohort_masks

    period = _period_numbers(local_days(seqs, zone), spec.period)
    started, first_at, cohort, back = cohort_masks(
        seqs.offsets, seqs.at, seqs.code, period,
        by_code(seqs, spec.start_event.event if spec.start_event else None),
        by_code(seqs, spec.return_event.event if spec.return_event else None),
        spec.periods,
    )  # fmt: skip
    start, end = date_range(spec.date_from, spec.date_to, zone)
    if start is not None:
        started &= first_at >= int(start.timestamp() * 1_000_000)
    if end is not None:
        started &= first_at < int(end.timestamp() * 1_000_000)
    picked = np.flatnonzero(started)
    return seqs.customer[seqs.offsets[:-1][picked]], cohort[picked], back[picked]


def _period_span(spec: RetentionSpec, q: Query, zone: ZoneInfo) -> tuple[str, dict[str, Any]]:
    """The first and last period with any event: when they are close enough, each
    customer's active periods fit one integer (``_masks_query``)."""
    first = q.period_number(spec.period, zone.key, 'min("timestamp")')
    last = q.period_number(spec.period, zone.key, 'max("timestamp")')
    return q.build(f"SELECT {first} AS first, {last} AS last FROM events")


def _masks_query(
    spec: RetentionSpec, q: Query, zone: ZoneInfo, base: int
) -> tuple[str, dict[str, Any]]:
    """One row per cohort customer: the cohort's period number and ``mask``, bit *p* set
    when the customer came back in the *p*-th period after ``base``. One grouping of the
    events by customer, no join: what chdb's arrays form does, in any engine's SQL."""
    cohort = q.period_number(spec.period, zone.key, "first_at")
    start_where = (
        matches(q, spec.start_event.event, spec.start_event.filters) if spec.start_event else KINDS
    )
    return_where = (
        matches(q, spec.return_event.event, spec.return_event.filters)
        if spec.return_event
        else KINDS
    )
    offset = f"{q.period_number(spec.period, zone.key)} - {int(base)}"
    bit = q.bit(offset)
    start, end = date_range(spec.date_from, spec.date_to, zone)
    picked = ["first_at IS NOT NULL", *time_bounds(q, start, end, column="first_at")]
    text = (
        f"SELECT customer_id, {cohort} AS cohort, NULL AS value, coalesce(mask, 0) AS mask "
        f'FROM (SELECT customer_id, min(CASE WHEN {start_where} THEN "timestamp" END) AS '
        f"first_at, bit_or(CASE WHEN {return_where} THEN {bit} END) AS mask FROM events "
        f"GROUP BY customer_id) per WHERE {' AND '.join(picked)}"
    )
    return q.build(text)


def _retention_query(spec: RetentionSpec, q: Query, zone: ZoneInfo) -> tuple[str, dict[str, Any]]:
    """One row per customer of a cohort: the cohort's period number, the breakdown value
    and ``back``, a bit mask of the periods after it (1 to ``periods - 1``) in which the
    customer came back. The engine does the counting, so only one row per customer
    leaves it, as chdb's arrays form does."""
    by_property = spec.breakdown is not None and spec.breakdown.property is not None
    # The value on the first start event (time, then message id), as funnels attribute.
    value = _value_column(q, spec.breakdown) if by_property else "NULL"
    start_where = (
        matches(q, spec.start_event.event, spec.start_event.filters) if spec.start_event else KINDS
    )
    if by_property:
        starts = first_per_customer(
            f'customer_id, "timestamp" AS first_at, {value} AS value', start_where
        )
    else:
        starts = (
            'SELECT customer_id, min("timestamp") AS first_at, NULL AS value '
            f"FROM events WHERE {start_where} GROUP BY customer_id"
        )
    cohort = q.period_number(spec.period, zone.key, "first_at")
    start, end = date_range(spec.date_from, spec.date_to, zone)
    picked = time_bounds(q, start, end, column="first_at") or ["TRUE"]
    stamp = 'e."timestamp"'
    bit = q.bit(f"{q.period_number(spec.period, zone.key, stamp)} - c.cohort")
    return_where = (
        matches(q, spec.return_event.event, spec.return_event.filters)
        if spec.return_event
        else KINDS
    )
    later = f"{q.period_number(spec.period, zone.key, stamp)} - c.cohort"
    text = (
        f"WITH starts AS ({starts}), "
        f"cohorts AS (SELECT customer_id, value, {cohort} AS cohort FROM starts "
        f"WHERE {' AND '.join(picked)}), "
        f"back AS (SELECT c.customer_id, bit_or({bit}) AS back FROM events e "
        f"JOIN cohorts c ON e.customer_id = c.customer_id WHERE {return_where} "
        f"AND {later} BETWEEN 1 AND {spec.periods - 1} GROUP BY c.customer_id) "
        "SELECT c.customer_id, c.cohort, c.value, coalesce(b.back, 0) AS back "
        "FROM cohorts c LEFT JOIN back b ON b.customer_id = c.customer_id"
    )
    return q.build(text)


def _period_numbers(days: npt.NDArray[np.int64], interval: str) -> npt.NDArray[np.int64]:
    """Days since 1970-01-01 as period numbers: days, weeks from Monday, or months."""
    if interval == "week":
        return (days + 3) // 7  # 1970-01-01 was a Thursday
    if interval == "month":
        return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return days


def _period_start(number: int, interval: str) -> date:
    if interval == "week":
        return date(1970, 1, 1) + timedelta(days=number * 7 - 3)
    if interval == "month":
        return date(1970 + number // 12, number % 12 + 1, 1)
    return date(1970, 1, 1) + timedelta(days=number)


# -- shared --------------------------------------------------------------------------------


def _value_column(q: Query, breakdown: Breakdown | None) -> str:
    if breakdown is not None and breakdown.property is not None:
        return q.text(breakdown.property)
    return "NULL"


def _values(
    breakdown: Breakdown | None,
    rows: list[dict[str, Any]],
    customers: CustomerFacts,
    engine: Engine | None,
) -> list[str | None]:
    if breakdown is None:
        return [None] * len(rows)
    if breakdown.property is None:
        ids = sorted({r["customer_id"] for r in rows})
        labels = group_labels(breakdown, ids, customers, engine)
        return [labels.get(r["customer_id"]) for r in rows]
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
