"""The stage-flow report: per stage, who came in, who moved on, who left, and how long it took.

Definitions (the same in the CLI, the API and the docs):

* a *stay* is an entry into a stage and lasts until the customer's next move in the model;
* the report's cohort is the stays that **began** within ``[from, to)`` (all stays when no
  range is given); outcomes are judged as of ``to`` (or now);
* ``entered`` counts distinct customers with a stay in the cohort; ``returns`` counts stays
  that began a new cycle after an exit (a comeback is a return, not a second customer);
* ``progressed`` / ``exited`` / ``moved_back`` count distinct customers whose cohort stay
  ended by moving to a later stage / leaving the lifecycle / moving back;
* ``current`` counts customers standing in the stage as of ``to``;
* ``conversion_rate`` = progressed / entered, ``drop_off_rate`` = exited / entered;
* median and p90 time in stage are over cohort stays that have ended;
* ``over_target`` is the share of cohort stays (ended or not) longer than the stage's
  target time, None when the stage has none;
* ``skipped`` counts moves within the range that jumped over the stage.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
from sqlalchemy import Connection, Float, String, Table, cast, func, select

from cxloop.customers.service import customers_t, segment_conditions
from cxloop.lifecycle.service import get_model
from cxloop.store.models import StageTransition

transitions_t: Table = StageTransition.__table__  # type: ignore[assignment]


def stage_flow(
    conn: Connection,
    model_key: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    where: dict[str, str] | None = None,
) -> dict[str, Any]:
    model_id, model, _version = get_model(conn, model_key)
    if start is not None and end is not None and end <= start:
        raise ValueError("to: must be after from")
    as_of = end or datetime.now(UTC)
    as_of_s = as_of.timestamp()
    start_s = start.timestamp() if start is not None else None
    t = transitions_t
    at_s = _epoch_seconds(conn, t.c.at)
    # Times come back as epoch seconds and the skipped list as text: converting a
    # quarter of a million date-times and JSON lists row by row cost seconds.
    base = select(
        t.c.customer_id,
        t.c.seq,
        t.c.kind,
        t.c.cycle,
        t.c.to_stage,
        at_s.label("at_s"),
        t.c.reason,
        cast(t.c.skipped, String).label("skipped"),
        func.lead(t.c.kind).over(partition_by=t.c.customer_id, order_by=t.c.seq).label("next_kind"),
        func.lead(at_s).over(partition_by=t.c.customer_id, order_by=t.c.seq).label("next_at_s"),
    ).where(t.c.model_id == model_id)
    if where:
        members = select(customers_t.c.id).where(*segment_conditions(where))
        base = base.where(t.c.customer_id.in_(members))
    moves = base.subquery()
    rows = conn.execute(select(moves).where(moves.c.at_s < as_of_s)).all()

    # A stay: (customer, kind, cycle, began, next kind, next move's time).
    stays: dict[str, list[tuple[int, str, int, float, str | None, float | None]]] = {
        s.key: [] for s in model.stages
    }
    latest: dict[int, tuple[tuple[float, int], str | None]] = {}
    exits_by_reason: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for customer, seq, kind, cycle, to_stage, at, reason, jumped, next_kind, next_at in rows:
        order = (at, seq)
        known = latest.get(customer)
        if known is None or order > known[0]:
            latest[customer] = (order, to_stage)
        if start_s is not None and at < start_s:
            continue
        if kind == "exit":
            exits_by_reason[reason or "unknown"] += 1
        if jumped and jumped != "[]":
            for key in _decode_list(jumped):
                skipped[key] += 1
        if to_stage in stays:
            stays[to_stage].append((customer, kind, cycle, at, next_kind, next_at))

    current = Counter(stage for _, stage in latest.values() if stage is not None)
    stage_rows = []
    for stage in model.stages:
        cohort = stays[stage.key]
        entered = {stay[0] for stay in cohort}
        outcome: dict[str, set[int]] = {"progress": set(), "exit": set(), "back": set()}
        durations: list[float] = []
        over = 0
        returns = 0
        target = stage.target_days * 86400 if stage.target_days else None
        for customer, kind, cycle, at, next_kind, next_at in cohort:
            if kind == "enter" and cycle > 1:
                returns += 1
            if next_at is not None and next_at <= as_of_s and next_kind in outcome:
                outcome[next_kind].add(customer)
                length = next_at - at
                durations.append(length)
            else:
                length = as_of_s - at
            if target is not None and length > target:
                over += 1
        count = len(entered)
        stage_rows.append(
            {
                "key": stage.key,
                "name": stage.name,
                "owner": stage.owner,
                "entered": count,
                "returns": returns,
                "current": int(current.get(stage.key, 0)),
                "progressed": len(outcome["progress"]),
                "moved_back": len(outcome["back"]),
                "exited": len(outcome["exit"]),
                "skipped": int(skipped.get(stage.key, 0)),
                "conversion_rate": _rate(len(outcome["progress"]), count),
                "drop_off_rate": _rate(len(outcome["exit"]), count),
                "median_time_in_stage_s": _percentile(durations, 50),
                "p90_time_in_stage_s": _percentile(durations, 90),
                "target_days": stage.target_days,
                "over_target": _rate(over, len(cohort)) if target is not None else None,
            }
        )
    return {
        "model": model.key,
        "model_name": model.name,
        "from": start,
        "to": end,
        "segment": dict(where or {}),
        "stages": stage_rows,
        "exits_by_reason": dict(exits_by_reason.most_common()),
    }


_decode_list = msgspec.json.Decoder(list[str]).decode


def _epoch_seconds(conn: Connection, column: Any) -> Any:
    """Seconds since 1970 of a stored date-time, computed by the database."""
    if conn.dialect.name == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return cast(func.extract("epoch", column), Float)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.array(values), q)), 1)
