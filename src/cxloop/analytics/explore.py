"""What the analytics pages need beside the API's queries: the event names to offer in a
form, and funnels restricted to a segment of customers.

The specs have no segment (a segment is a profile field of customers, not an event
property), so the pages narrow the customers the funnel found to those of the segment;
without a segment the functions are exactly the API's ``run_funnel`` and
``funnel_customers``, so page and API agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, select

from cxloop.analytics.customers import customers_for, customers_t
from cxloop.analytics.funnel import (
    _breakdown,
    _check_breakdown,
    _Found,
    _found,
    _steps,
    _unknown_events,
    funnel_customers,
    run_funnel,
)
from cxloop.analytics.funnel_spec import FunnelSpec, SpecProblem, SpecRejected, validate
from cxloop.analytics.sql import KINDS, NAME, Query, query_for
from cxloop.customers.service import segment_conditions
from cxloop.events.base import EventStore
from cxloop.events.sequences import NOT_A_TOUCHPOINT, UNNAMED

Ints = npt.NDArray[np.int64]
MAX_NAMES = 500


def event_names(events: EventStore, limit: int = MAX_NAMES) -> list[str]:
    """The ``limit`` most frequent touchpoint names (track events and named pages), in
    alphabetical order: a store may hold any number of distinct names, a form offers a
    bounded list."""
    index = getattr(events, "sequences", None)
    seqs = index() if index is not None else None
    if seqs is not None:
        counts = np.bincount(seqs.code, minlength=len(seqs.codes) + 2)
        counts[[NOT_A_TOUCHPOINT, UNNAMED]] = 0
        labels = seqs.labels
        top = np.argsort(-counts, kind="stable")[:limit]
        return sorted(str(labels[c]) for c in top.tolist() if counts[c] > 0 and labels[c])
    q, sql = query_for(events)
    text = (
        f"SELECT {NAME} AS n, count(*) AS c FROM events WHERE {KINDS} AND {NAME} IS NOT NULL "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {int(limit)}"
    )
    rows = sql(*Query(q.dialect).build(text)).to_pylist()
    return sorted(str(row["n"]) for row in rows)


def segment_customers(engine: Engine, where: Mapping[str, str]) -> Ints | None:
    """The ids of the customers in a segment (profile fields or traits, as the other
    reports read ``where``); ``None`` for no segment, everyone."""
    if not where:
        return None
    with engine.connect() as conn:
        ids = conn.execute(select(customers_t.c.id).where(*segment_conditions(where))).scalars()
        return np.fromiter(ids, dtype=np.int64)


def run_funnel_among(
    spec: FunnelSpec,
    events: EventStore,
    engine: Engine | None,
    zone: ZoneInfo,
    among: Ints | None = None,
) -> dict[str, Any]:
    """``run_funnel`` counting only the customers ``among`` (all when ``None``)."""
    if among is None:
        return run_funnel(spec, events, engine, zone)
    validate(spec)
    q, sql = query_for(events)
    customers = customers_for(events, engine)
    _check_breakdown(spec, sql, q.dialect, customers)
    everyone = _found(spec, events, zone)
    unseen = [s.event for n, s in enumerate(spec.steps) if not everyone.seen >> n & 1]
    warnings = _unknown_events(unseen, sql, q.dialect) if unseen else []
    found = _narrowed(everyone, among)
    result: dict[str, Any] = {"steps": _steps(spec, found.reached, found.times)}
    if spec.breakdown is not None:
        result["breakdown"] = _breakdown(spec, found, customers)
    if warnings:
        result["warnings"] = warnings
    return result


def funnel_customers_among(
    spec: FunnelSpec,
    events: EventStore,
    engine: Engine | None,
    zone: ZoneInfo,
    among: Ints | None = None,
    *,
    step: int,
    outcome: str = "dropped",
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """``funnel_customers`` among the customers ``among`` (all when ``None``)."""
    if among is None:
        return funnel_customers(
            spec, events, engine, zone, step=step, outcome=outcome, limit=limit, offset=offset
        )
    validate(spec)
    if not 0 <= step < len(spec.steps) or (outcome == "dropped" and step == len(spec.steps) - 1):
        last = len(spec.steps) - (2 if outcome == "dropped" else 1)
        raise SpecRejected([SpecProblem("bad_step", "step", f"use a step within 0..{last}")])
    found = _narrowed(_found(spec, events, zone), among)
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


def _narrowed(found: _Found, among: Ints) -> _Found:
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
