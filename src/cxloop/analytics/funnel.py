"""Funnels: SQL finds the events that matter, the kernels apply the sequence rules.

The event store returns, per customer in time order, the events that match a step or an
exclusion (for strict funnels every event of the customers who could start, in (time,
message id) order, as any other event breaks an attempt), each with a bit mask of the steps
and exclusions it matches and its breakdown value. Filter values and property names travel
as query parameters, never inside the SQL text. The compiled rules
(``funnel_fast.best_attempts``) pick most customers' attempts, the reference
(``funnel_kernel.best_attempt``) the rest; this module adds up the steps, times to convert
and breakdown groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from cxloop.analytics.customers import (
    CustomerFacts,
    check_customer_breakdown,
    customers_for,
    group_labels,
)
from cxloop.analytics.funnel_kernel import Event, best_attempt
from cxloop.analytics.funnel_spec import (
    FunnelSpec,
    PropertyFilter,
    SpecProblem,
    SpecRejected,
    date_bounds,
    validate,
)
from cxloop.analytics.indexed import funnel_rows, sequences_for
from cxloop.analytics.sql import (
    KINDS,
    NAME,
    OTHER,
    Dialect,
    Query,
    matches,
    query_for,
)
from cxloop.events.base import EventStore

Ints = npt.NDArray[np.int64]
_LOWEST, _HIGHEST = -(2**62), 2**62  # no date bound


def run_funnel(
    spec: FunnelSpec,
    events: EventStore,
    engine: Engine | None,
    zone: ZoneInfo,
    *,
    among: Ints | None = None,
) -> dict[str, Any]:
    """The funnel's steps (and breakdown groups), as the API and CLI return them;
    counting only the customers ``among`` when given (a segment)."""
    validate(spec)
    q, sql = query_for(events)
    dialect = q.dialect
    customers = customers_for(events, engine)
    _check_breakdown(spec, sql, dialect, customers, engine)
    found = _found(spec, events, zone)
    # A step no row matched may name an event that was never stored: say so.
    unseen = [s.event for n, s in enumerate(spec.steps) if not found.seen >> n & 1]
    warnings = _unknown_events(unseen, sql, dialect) if unseen else []
    if among is not None:
        found = _narrowed(found, among)
    result: dict[str, Any] = {"steps": _steps(spec, found.reached, found.times)}
    if spec.breakdown is not None:
        result["breakdown"] = _breakdown(spec, found, customers, engine)
    if warnings:
        result["warnings"] = warnings
    return result


def funnel_customers(
    spec: FunnelSpec,
    events: EventStore,
    engine: Engine | None,
    zone: ZoneInfo,
    *,
    step: int,
    outcome: str = "dropped",
    limit: int = 100,
    offset: int = 0,
    among: Ints | None = None,
) -> dict[str, Any]:
    """Who reached step ``step`` (``outcome="reached"``), or reached it and went no further
    (``"dropped"``): the people a follow-up is for; only those ``among`` when given."""
    validate(spec)
    if not 0 <= step < len(spec.steps) or (outcome == "dropped" and step == len(spec.steps) - 1):
        last = len(spec.steps) - (2 if outcome == "dropped" else 1)
        raise SpecRejected([SpecProblem("bad_step", "step", f"use a step within 0..{last}")])
    if not 1 <= limit <= 10_000:
        raise SpecRejected([SpecProblem("bad_limit", "limit", "use a limit within 1..10000")])
    if offset < 0:
        raise SpecRejected([SpecProblem("bad_offset", "offset", "use an offset of 0 or more")])
    found = _found(spec, events, zone)
    if among is not None:
        found = _narrowed(found, among)
    chosen = found.reached > step if outcome == "reached" else found.reached == step + 1
    ids = sorted(found.customers[chosen].tolist())
    page = ids[offset : offset + limit]
    people = customers_for(events, engine).contacts(page)
    return {
        "step": step,
        "outcome": outcome,
        "total": len(ids),
        "customers": [
            {"id": c, "name": name, "email": email}
            for c in page
            for name, email in [people.get(c, (None, None))]
        ],
    }


@dataclass(frozen=True)
class _Found:
    """The customers in the funnel: their best attempt's steps reached, step times (µs,
    -1 past the last) and breakdown value; ``seen``, the steps some row matched."""

    customers: Ints
    reached: Ints
    times: Ints
    values: list[str | None]
    seen: int = 0
    groups: _Found | None = None  # step attribution: one entry per customer and value


def _narrowed(found: _Found, among: Ints) -> _Found:
    """Only the customers ``among``, attribution groups included."""
    keep = np.isin(found.customers, among)
    picked = np.flatnonzero(keep).tolist()
    return _Found(
        found.customers[keep],
        found.reached[keep],
        found.times[keep],
        [found.values[i] for i in picked] if found.values else [],
        found.seen,
        None if found.groups is None else _narrowed(found.groups, among),
    )


def _found(spec: FunnelSpec, events: EventStore, zone: ZoneInfo) -> _Found:
    """The rows in one query; the rules where the rows are: in this process, or, on Spark,
    in the executors next to the data."""
    q, sql = query_for(events)
    breakdown = spec.breakdown
    by_property = breakdown is not None and breakdown.property is not None
    conditions = [s.filters for s in spec.steps] + [x.filters for x in spec.exclusions]
    sequences = sequences_for(events, conditions, by_property)
    if sequences is not None:  # names and times suffice: the index has them in order
        return _found_in(spec, funnel_rows(spec, sequences), zone)
    frame = getattr(events, "frame", None)
    text, params = _rows_query(spec, q.dialect, ordered=frame is None)
    if frame is not None:
        from cxloop.analytics.spark_kernels import funnel_attempts

        return funnel_attempts(spec, frame(text, params), zone)
    # The rules never depend on the order of events at equal times (the reference tries
    # every order that matters), so the sort has no message-id tie-break.
    return _found_in(spec, sql(text, params), zone)


def _found_in(spec: FunnelSpec, rows: pa.Table, zone: ZoneInfo) -> _Found:
    found = _attempts(spec, rows, zone)
    seen = int(np.bitwise_or.reduce(_ints(rows, "steps"))) if rows.num_rows else 0
    return _Found(found.customers, found.reached, found.times, found.values, seen, found.groups)


def _attempts(spec: FunnelSpec, rows: pa.Table, zone: ZoneInfo) -> _Found:
    """Compiled rules for most customers, the reference kernel for the rest."""
    # Loaded here, not at import: numba would slow every command's start.
    from cxloop.analytics.funnel_fast import best_attempts

    n_steps = len(spec.steps)
    start, end = date_bounds(spec, zone)
    low, high = _micros(start), _micros(end)
    window_us = int(spec.window.total_seconds() * 1_000_000)
    ranges = [spec.exclusion_range(x) for x in spec.exclusions]
    customer = _ints(rows, "customer_id")
    at, steps, exclusions = _ints(rows, "at"), _ints(rows, "steps"), _ints(rows, "exclusions")
    offsets = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1], True])
    parts: list[_Found] = []
    if spec.order == "unordered":  # the reference's alone
        slow = np.ones(len(customer), dtype=np.bool_)
    elif len(customer):
        reached, picked, tied = best_attempts(
            offsets, at, steps, exclusions, n_steps, window_us,
            spec.order == "strict",
            _LOWEST if low is None else low, _HIGHEST if high is None else high,
            np.array(ranges, dtype=np.int64).reshape(len(ranges), 2),
        )  # fmt: skip
        keep = reached > 0
        picked = picked[keep]
        times = np.where(picked >= 0, at[np.maximum(picked, 0)], -1)
        entered = customer[offsets[:-1]][keep]
        parts.append(_Found(entered, reached[keep], times, [None] * len(entered)))
        # Customers with step events at equal times go to the reference.
        slow = np.repeat(tied, np.diff(offsets)) if tied.any() else np.zeros(0, np.bool_)
    else:
        slow = np.zeros(0, np.bool_)
    if slow.any():
        subset = rows.filter(pa.array(slow))
        found = []
        for who, history in _by_customer(subset.to_pydict()):
            attempt = best_attempt(history, n_steps, window_us, spec.order, ranges, (low, high))
            if attempt is not None:
                found.append((who, attempt, history))
        times = np.full((len(found), n_steps), -1, dtype=np.int64)
        for i, (_, attempt, _) in enumerate(found):
            times[i, : attempt.reached] = attempt.times
        parts.append(
            _Found(
                np.array([w for w, _, _ in found], dtype=np.int64),
                np.array([a.reached for _, a, _ in found], dtype=np.int64),
                times,
                [None] * len(found),
            )
        )
    if not parts:
        return _Found(np.zeros(0, np.int64), np.zeros(0, np.int64),
                      np.zeros((0, n_steps), np.int64), [])  # fmt: skip
    in_funnel = np.concatenate([p.customers for p in parts])
    values = parts[0].values if len(parts) == 1 else [v for p in parts for v in p.values]
    groups = None
    breakdown = spec.breakdown
    if breakdown is not None and breakdown.property and breakdown.attribution != "step":
        touched = _touches(rows, customer, at, steps, low, high,
                           last=breakdown.attribution == "last_touch")  # fmt: skip
        values = [touched.get(c) for c in in_funnel.tolist()]
    elif breakdown is not None and breakdown.property:
        groups = _step_groups(spec, rows, customer, at, steps, exclusions, zone)
    return _Found(
        in_funnel,
        np.concatenate([p.reached for p in parts]),
        np.concatenate([p.times for p in parts]),
        values,
        groups=groups,
    )


def _step_groups(
    spec: FunnelSpec, rows: pa.Table, customer: Ints, at: Ints, steps: Ints, exclusions: Ints,
    zone: ZoneInfo,
) -> _Found:  # fmt: skip
    """Step attribution as PostHog counts it: a customer is counted once for each value the
    property has on their events of the attributed step, each time with that step taken
    only by an event with that value; one who never did the step is counted once, without
    a value. Rows are sorted by customer; each (customer, value) becomes a customer of its
    own for the rules."""
    assert spec.breakdown is not None
    k = spec.breakdown.step or 0
    encoded = pc.dictionary_encode(rows.column("value").combine_chunks())
    labels: list[str | None] = [*encoded.dictionary.to_pylist(), None]  # the last: no value
    code = np.asarray(pc.fill_null(encoded.indices, len(labels) - 1).to_numpy(), np.int64)
    offsets = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1], True])
    block_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    at_step = (steps >> k) & 1 == 1
    pairs = np.unique(block_of[at_step] * len(labels) + code[at_step])
    pair_block, pair_value = pairs // len(labels), pairs % len(labels)
    per_block = np.bincount(pair_block, minlength=len(offsets) - 1)
    groups = np.maximum(per_block, 1)
    group_block = np.repeat(np.arange(len(groups)), groups)
    group_value = np.full(len(group_block), -1, dtype=np.int64)  # -1: no constraint
    first_group = np.cumsum(groups) - groups
    first_pair = np.cumsum(per_block) - per_block
    group_value[first_group[pair_block] + np.arange(len(pairs)) - first_pair[pair_block]] = (
        pair_value
    )
    # Each group's copy of its customer's rows, the step's bit kept only on its value.
    lengths = np.diff(offsets)[group_block]
    group_of = np.repeat(np.arange(len(group_block)), lengths)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    source = offsets[group_block][group_of] + within
    wanted = group_value[group_of]
    copied_steps = np.where((wanted >= 0) & (code[source] != wanted), steps[source] & ~(1 << k),
                            steps[source])  # fmt: skip
    copies = pa.table(
        {"customer_id": group_of, "at": at[source], "steps": copied_steps,
         "exclusions": exclusions[source], "value": pa.nulls(len(source), pa.string())}
    )  # fmt: skip
    found = _attempts(spec.model_copy(update={"breakdown": None}), copies, zone)
    chosen = group_value[found.customers]
    return _Found(
        customer[offsets[group_block[found.customers]]],
        found.reached,
        found.times,
        [labels[v] if v >= 0 else None for v in chosen.tolist()],
    )


def _touches(
    rows: pa.Table, customer: Ints, at: Ints, steps: Ints, low: int | None, high: int | None,
    *, last: bool,
) -> dict[int, str | None]:  # fmt: skip
    """Each customer's first (or last) breakdown value: on their earliest (latest) event of
    the funnel's steps, in the date range, that has the property at all, as PostHog
    attributes first and last touch, whichever attempt the event belongs to."""
    valued = np.asarray(pc.is_valid(rows.column("value")).to_numpy(zero_copy_only=False))
    mask = (steps != 0) & valued
    if low is not None:
        mask &= at >= low
    if high is not None:
        mask &= at < high
    candidates = np.flatnonzero(mask)
    if last:
        candidates = candidates[::-1]
    _, first_of_each = np.unique(customer[candidates], return_index=True)
    picks = candidates[first_of_each]
    chosen = rows.column("value").take(pa.array(picks)).to_pylist()
    return dict(zip(customer[picks].tolist(), chosen, strict=True))


def _ints(rows: pa.Table, name: str) -> Ints:
    return np.asarray(rows.column(name).to_numpy(), dtype=np.int64)


def _rows_query(
    spec: FunnelSpec, dialect: Dialect, *, ordered: bool = True
) -> tuple[str, dict[str, Any]]:
    """The rows the rules read, by customer and time unless ``ordered`` is false (Spark
    groups them by customer itself).

    A plain ``IN`` on the event and page names first narrows the rows cheaply (the store can
    skip whole blocks); the exact conditions then run on what is left, once each.
    """
    q = Query(dialect)
    # One bit per step and per exclusion: a few distinct masks, decoded once each.
    step_bits = _bits(q, [(s.event, s.filters) for s in spec.steps])
    exclusion_bits = _bits(q, [(x.event, x.filters) for x in spec.exclusions])
    breakdown = spec.breakdown
    value = (
        q.text(breakdown.property)
        if breakdown is not None and breakdown.property is not None
        else "NULL"
    )
    columns = (
        f"customer_id, {q.epoch_us()} AS at, {step_bits} AS steps, "
        f"{exclusion_bits or '0'} AS exclusions, {value} AS value"
    )
    order = ' ORDER BY customer_id, "at"' if ordered else ""
    if spec.order == "strict":
        # Every event of the customers who could start, from their first step-0 event on:
        # any other event breaks an attempt, and nothing before an attempt matters.
        entry = matches(q, spec.steps[0].event, spec.steps[0].filters)
        named = _named(q, [spec.steps[0].event])
        return q.build(
            f'SELECT {columns} FROM events JOIN (SELECT customer_id, min("timestamp") AS '
            f"first_at FROM events WHERE {named} AND {entry} GROUP BY customer_id) starts "
            'USING (customer_id) WHERE "timestamp" >= starts.first_at' + order
        )
    named = _named(q, [s.event for s in spec.steps] + [x.event for x in spec.exclusions])
    return q.build(
        f"SELECT * FROM (SELECT {columns} FROM events WHERE {named}) candidates "
        "WHERE steps <> 0 OR exclusions <> 0" + order
    )


def _bits(q: Query, conditions: list[tuple[str, Sequence[PropertyFilter]]]) -> str:
    """Bit *n* set when an event meets condition *n*. Conditions without filters are one
    lookup of the event's name (their bits added up per name), far cheaper than a
    comparison per condition; the others are tested one by one."""
    by_name: dict[str, int] = {}
    for n, (event, filters) in enumerate(conditions):
        if not filters:
            by_name[event] = by_name.get(event, 0) | 1 << n
    parts = []
    if by_name:
        whens = " ".join(f"WHEN {q.param(name)} THEN {bits}" for name, bits in by_name.items())
        parts.append(f"(CASE WHEN {KINDS} THEN (CASE {NAME} {whens} ELSE 0 END) ELSE 0 END)")
    parts += [
        f"(CASE WHEN {matches(q, event, filters)} THEN {1 << n} ELSE 0 END)"
        for n, (event, filters) in enumerate(conditions)
        if filters
    ]
    return " + ".join(parts)


def _named(q: Query, names: Sequence[str]) -> str:
    listed = ", ".join(q.param(n) for n in dict.fromkeys(names))
    return f"(event IN ({listed}) OR name IN ({listed}))"


def _by_customer(columns: dict[str, list[Any]]) -> list[tuple[int, list[Event]]]:
    out: list[tuple[int, list[Event]]] = []
    current: int | None = None
    history: list[Event] = []
    sets: dict[int, frozenset[int]] = {}

    def members(mask: int) -> frozenset[int]:
        found = sets.get(mask)
        if found is None:
            found = sets[mask] = frozenset(n for n in range(mask.bit_length()) if mask >> n & 1)
        return found

    for customer, at, steps, exclusions, value in zip(
        columns["customer_id"],
        columns["at"],
        columns["steps"],
        columns["exclusions"],
        columns["value"],
        strict=True,
    ):
        if customer != current:
            if current is not None:
                out.append((current, history))
            current, history = customer, []
        history.append(Event(at, members(steps), members(exclusions), value))
    if current is not None:
        out.append((current, history))
    return out


def _steps(spec: FunnelSpec, reached: Ints, times: Ints) -> list[dict[str, Any]]:
    counts = [int((reached > k).sum()) for k in range(len(spec.steps))]
    out: list[dict[str, Any]] = []
    for k, step in enumerate(spec.steps):
        took = reached > k
        durations = (times[took, k] - times[took, k - 1]) / 1_000_000 if k else np.zeros(0)
        previous = counts[k - 1] if k else counts[0]
        out.append(
            {
                "name": step.event,
                "count": counts[k],
                "conversion_rate": _ratio(counts[k], counts[0]),
                "drop_off_rate": 0.0 if k == 0 else _ratio(previous - counts[k], previous),
                "avg_time_to_convert_s": float(durations.mean()) if len(durations) else None,
                "median_time_to_convert_s": (
                    float(np.median(durations)) if len(durations) else None
                ),
            }
        )
    return out


def _breakdown(
    spec: FunnelSpec, found: _Found, customers: CustomerFacts, engine: Engine | None
) -> list[dict[str, Any]]:
    breakdown = spec.breakdown
    assert breakdown is not None
    if breakdown.property is None:
        ids = found.customers.tolist()
        labels = group_labels(breakdown, ids, customers, engine)
        values = [labels.get(c) for c in ids]
    else:
        found = found.groups or found
        values = found.values
    groups: dict[str | None, list[int]] = {}
    for i, value in enumerate(values):
        groups.setdefault(value, []).append(i)
    ranked = sorted(groups, key=lambda v: (-len(groups[v]), v is None, str(v)))
    kept, rest = ranked[: breakdown.limit], ranked[breakdown.limit :]

    def steps_of(members: list[int]) -> list[dict[str, Any]]:
        picked = np.array(members, dtype=np.int64)
        return _steps(spec, found.reached[picked], found.times[picked])

    out = [{"value": v, "steps": steps_of(groups[v])} for v in kept]
    if rest:
        out.append({"value": OTHER, "steps": steps_of([i for v in rest for i in groups[v]])})
    # Shown as PostHog shows them: most customers at the last step first, then the step
    # before, and so on (the groups kept are still those with most customers at step 0).
    return sorted(out, key=lambda g: [-s["count"] for s in reversed(g["steps"])])


def _unknown_events(names: list[str], sql: Any, dialect: Dialect) -> list[dict[str, str]]:
    q = Query(dialect)
    named = _named(q, names)
    found = sql(*q.build(f"SELECT DISTINCT {NAME} AS n FROM events WHERE {named} AND {KINDS}"))
    seen = {row["n"] for row in found.to_pylist()}
    return [
        {
            "code": "unknown_event",
            "message": f"no event named {name!r} is stored: its step counts zero",
        }
        for name in dict.fromkeys(names)
        if name not in seen
    ]


def _check_breakdown(
    spec: FunnelSpec, sql: Any, dialect: Dialect, customers: CustomerFacts, engine: Engine | None
) -> None:
    breakdown = spec.breakdown
    if breakdown is None:
        return
    if breakdown.property is not None:
        q = Query(dialect)
        listed = ", ".join(q.param(name) for name in sorted({s.event for s in spec.steps}))
        present = q.present(breakdown.property)
        query = (
            f"SELECT 1 AS x FROM events WHERE {KINDS} AND {NAME} IN ({listed}) "
            f"AND {present} LIMIT 1"
        )
        if not sql(*q.build(query)).num_rows:
            raise SpecRejected(
                [
                    SpecProblem(
                        "breakdown_property_missing",
                        "breakdown.property",
                        f"no event of the funnel's steps has the property {breakdown.property!r}",
                    )
                ]
            )
        return
    check_customer_breakdown(breakdown, customers, engine)


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _micros(value: Any) -> int | None:
    if value is None:
        return None
    return int(value.timestamp() * 1_000_000)
