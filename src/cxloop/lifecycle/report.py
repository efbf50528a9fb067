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
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import pyarrow as pa
from sqlalchemy import Connection, Float, Integer, String, Table, cast, func, literal, select

from cxloop.customers.service import customers_t, segment_conditions
from cxloop.lifecycle.mirror import MovesStore
from cxloop.lifecycle.service import get_model
from cxloop.store.models import StageTransition

transitions_t: Table = StageTransition.__table__  # type: ignore[assignment]


def day_start(day: date | None, zone: ZoneInfo) -> datetime | None:
    """Midnight of a day in the project's time zone (report ranges are whole days)."""
    return datetime.combine(day, time(0), tzinfo=zone) if day is not None else None


def stage_flow(
    conn: Connection,
    model_key: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    where: dict[str, str] | None = None,
    store: MovesStore | None = None,
) -> dict[str, Any]:
    model_id, model, _version = get_model(conn, model_key)
    if start is not None and end is not None and end <= start:
        raise ValueError("to: must be after from")
    as_of = end or datetime.now(UTC)
    if store is not None:
        members = None
        if where:
            ids = conn.execute(select(customers_t.c.id).where(*segment_conditions(where))).scalars()
            members = pa.table({"id": pa.array(list(ids), pa.int64())})
        stages, exits = _columnar(store, model_id, model, start, as_of, members)
        return _report(model, start, end, where, stages, exits)
    as_of_s = as_of.timestamp()
    t = transitions_t
    at_s = _epoch_seconds(conn, t.c.at)
    # Times come back as epoch seconds and the skipped list as text: converting a
    # quarter of a million date-times and JSON lists row by row cost seconds.
    # Range tests compare the stored date-times themselves (exact); seconds are for lengths.
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
        t.c.at,
        func.lead(t.c.at, type_=t.c.at.type)
        .over(partition_by=t.c.customer_id, order_by=t.c.seq)
        .label("next_at"),
    ).where(t.c.model_id == model_id)
    if where:
        members = select(customers_t.c.id).where(*segment_conditions(where))
        base = base.where(t.c.customer_id.in_(members))
    moves = base.subquery()
    in_range = moves.c.at >= start if start is not None else literal(True)
    rows = conn.execute(
        select(
            *[moves.c[name] for name in _ROW_COLUMNS],
            in_range.label("in_range"),
            func.coalesce(moves.c.next_at <= as_of, False).label("ended_by"),
        ).where(moves.c.at < as_of)
    ).all()

    # A stay: (customer, kind, cycle, began, next kind, next move's time).
    stays: dict[str, list[tuple[int, str, int, float, str | None, float | None]]] = {
        s.key: [] for s in model.stages
    }
    latest: dict[int, tuple[tuple[float, int], str | None]] = {}
    exits_by_reason: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for row in rows:
        customer, seq, kind, cycle, to_stage, at, reason, jumped, next_kind, next_at = row[:10]
        in_range, ended_by = row[10], row[11]
        order = (at, seq)
        known = latest.get(customer)
        if known is None or order > known[0]:
            latest[customer] = (order, to_stage)
        if not in_range:
            continue
        if kind == "exit":
            exits_by_reason[reason or "unknown"] += 1
        if jumped and jumped != "[]":
            for key in _decode_list(jumped):
                skipped[key] += 1
        if to_stage in stays:
            stays[to_stage].append(
                (customer, kind, cycle, at, next_kind, next_at if ended_by else None)
            )

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
            if next_at is not None and next_kind in outcome:
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
    ordered = sorted(exits_by_reason.items(), key=lambda item: (-item[1], item[0]))
    return _report(model, start, end, where, stage_rows, dict(ordered))


def _report(
    model: Any,
    start: datetime | None,
    end: datetime | None,
    where: dict[str, str] | None,
    stages: list[dict[str, Any]],
    exits: dict[str, int],
) -> dict[str, Any]:
    return {
        "model": model.key,
        "model_name": model.name,
        "from": start,
        "to": end,
        "segment": dict(where or {}),
        "stages": stages,
        "exits_by_reason": exits,
    }


_decode_list = msgspec.json.Decoder(list[str]).decode


_ROW_COLUMNS = (
    "customer_id",
    "seq",
    "kind",
    "cycle",
    "to_stage",
    "at_s",
    "reason",
    "skipped",
    "next_kind",
    "next_at_s",
)


def _epoch_seconds(conn: Connection, column: Any) -> Any:
    """Seconds since 1970 of a stored date-time, computed exactly by the database (whole
    seconds plus the microseconds; SQLite's julianday() would round them)."""
    if conn.dialect.name == "sqlite":
        whole = cast(func.strftime("%s", column), Integer)
        micros = cast(func.substr(column, 21, 6), Integer)
        return (whole * 1_000_000 + micros) / 1e6
    return cast(func.extract("epoch", column), Float)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(values: list[float], q: float) -> float | None:
    """To the second: enough for time in a stage, and the same from every engine."""
    if not values:
        return None
    return float(round(float(np.percentile(np.array(values), q))))


_COLUMNAR = """
WITH moves AS (
  SELECT customer_id, seq, kind, cycle, to_stage, "at", reason, skipped, next_kind, next_at
  FROM stage_moves
  WHERE model_id = $model {members}
), visible AS (
  SELECT * FROM moves WHERE "at" < $as_of
), latest AS (
  -- a customer's last move before as_of: the one whose next move is later (or none)
  SELECT to_stage FROM visible WHERE next_at IS NULL OR next_at >= $as_of
), stays AS (
  SELECT *,
    next_at IS NOT NULL AND next_at <= $as_of
      AND next_kind IN ('progress', 'exit', 'back') AS ended,
    epoch(CASE WHEN next_at IS NOT NULL AND next_at <= $as_of
                    AND next_kind IN ('progress', 'exit', 'back')
               THEN next_at ELSE $as_of END) - epoch("at") AS length
  FROM visible WHERE to_stage IS NOT NULL AND "at" >= $start
), per_customer AS (
  SELECT to_stage, customer_id,
    bool_or(ended AND next_kind = 'progress') AS progressed,
    bool_or(ended AND next_kind = 'back') AS moved_back,
    bool_or(ended AND next_kind = 'exit') AS exited
  FROM stays GROUP BY ALL
), outcomes AS (
  SELECT to_stage, count(*) AS entered,
    count(*) FILTER (WHERE progressed) AS progressed,
    count(*) FILTER (WHERE moved_back) AS moved_back,
    count(*) FILTER (WHERE exited) AS exited
  FROM per_customer GROUP BY ALL
), lengths AS (
  SELECT s.to_stage,
    count(*) FILTER (WHERE s.kind = 'enter' AND s.cycle > 1) AS returns,
    quantile_cont(s.length, [0.5, 0.9]) FILTER (WHERE s.ended) AS q,
    count(*) FILTER (WHERE s.length > t.target_s) AS over,
    count(*) AS stays
  FROM stays s LEFT JOIN targets t ON t.stage = s.to_stage
  GROUP BY ALL
)
SELECT 'stage' AS part, o.to_stage AS name, o.entered, l.returns, o.progressed,
  o.moved_back, o.exited, l.q[1] AS median, l.q[2] AS p90, l.over, l.stays
FROM outcomes o JOIN lengths l USING (to_stage)
UNION ALL
SELECT 'current', to_stage, count(*), 0, 0, 0, 0, NULL, NULL, 0, 0
FROM latest WHERE to_stage IS NOT NULL GROUP BY to_stage
UNION ALL
SELECT 'exit', coalesce(reason, 'unknown'), count(*), 0, 0, 0, 0, NULL, NULL, 0, 0
FROM visible WHERE kind = 'exit' AND "at" >= $start GROUP BY 2
UNION ALL
SELECT 'skipped', k, count(*), 0, 0, 0, 0, NULL, NULL, 0, 0
FROM (SELECT unnest(skipped) AS k FROM visible WHERE "at" >= $start) GROUP BY k
"""


def _columnar(
    store: MovesStore,
    model_id: int,
    model: Any,
    start: datetime | None,
    as_of: datetime,
    members: pa.Table | None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The same report as SQL over the event store's copy of the moves (DuckDB)."""
    targets = pa.table(
        {
            "stage": [s.key for s in model.stages],
            "target_s": pa.array(
                [s.target_days * 86400 if s.target_days else None for s in model.stages],
                pa.float64(),
            ),
        }
    )
    tables = {"targets": targets}
    clause = ""
    if members is not None:
        tables["members"] = members
        clause = "AND customer_id IN (SELECT id FROM members)"
    params = {"model": model_id, "as_of": as_of, "start": start or _EPOCH}
    rows = store.sql(_COLUMNAR.format(members=clause), params, **tables).to_pylist()
    stage_rows = {r["name"]: r for r in rows if r["part"] == "stage"}
    current = {r["name"]: r["entered"] for r in rows if r["part"] == "current"}
    skipped = {r["name"]: r["entered"] for r in rows if r["part"] == "skipped"}
    exits = sorted(
        ((r["name"], r["entered"]) for r in rows if r["part"] == "exit"),
        key=lambda item: (-item[1], item[0]),
    )
    out = []
    for stage in model.stages:
        found = stage_rows.get(stage.key, {})
        count = int(found.get("entered", 0))
        progressed = int(found.get("progressed", 0))
        exited = int(found.get("exited", 0))
        out.append(
            {
                "key": stage.key,
                "name": stage.name,
                "owner": stage.owner,
                "entered": count,
                "returns": int(found.get("returns", 0)),
                "current": int(current.get(stage.key, 0)),
                "progressed": progressed,
                "moved_back": int(found.get("moved_back", 0)),
                "exited": exited,
                "skipped": int(skipped.get(stage.key, 0)),
                "conversion_rate": _rate(progressed, count),
                "drop_off_rate": _rate(exited, count),
                "median_time_in_stage_s": _rounded(found.get("median")),
                "p90_time_in_stage_s": _rounded(found.get("p90")),
                "target_days": stage.target_days,
                "over_target": _rate(int(found.get("over", 0)), int(found.get("stays", 0)))
                if stage.target_days
                else None,
            }
        )
    return out, dict(exits)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(round(float(value)))


_ACTIVITY = """
WITH stays AS (
  SELECT customer_id, list_position($stages, to_stage)::UTINYINT AS stage, "at" AS began,
    coalesce(next_at, 'infinity'::TIMESTAMPTZ) AS ended
  FROM stage_moves
  WHERE model_id = $model AND to_stage IS NOT NULL {members}
    AND "at" < $end AND (next_at IS NULL OR next_at > $start)
)
SELECT s.stage, coalesce(e.event, e.name) AS label, e.event IS NULL AS page, e.channel,
  count(*) AS events
FROM events e JOIN stays s ON e.customer_id = s.customer_id
  AND e."timestamp" >= s.began AND e."timestamp" < s.ended
WHERE e.type IN ('track', 'page') AND e."timestamp" >= $start AND e."timestamp" < $end
GROUP BY ALL
"""
ACTIVITY_TOP = 20


def stage_activity(
    conn: Connection,
    model_key: str,
    *,
    store: MovesStore | None,
    start: datetime | None = None,
    end: datetime | None = None,
    where: dict[str, str] | None = None,
    top: int = 5,
) -> dict[str, dict[str, Any]] | None:
    """What customers do while they stand in each stage: the events stored within
    ``[start, end)`` that fell inside a stay in the stage, the most frequent ``top``
    tracked actions, pages viewed and channels of each stage. ``{stage: {"events",
    "actions": [{"label", "events"}], "pages", "channels"}}``; None where the event store
    keeps no copy of the stage history (only DuckDB does): joining events to stays
    elsewhere would read every event row by row.

    Counted are events, not distinct customers: counting customers per phrase and
    channel costs the join's hash aggregation twice over (strings and customer ids as
    keys), which a journey map, read against the stage's own customer figures, can spare."""
    if store is None:
        return None
    if not 1 <= top <= ACTIVITY_TOP:
        raise ValueError(f"top: give 1 to {ACTIVITY_TOP}, not {top}")
    if start is not None and end is not None and end <= start:
        raise ValueError("to: must be after from")
    model_id, model, _version = get_model(conn, model_key)
    keys = [s.key for s in model.stages]
    tables: dict[str, pa.Table] = {}
    clause = ""
    if where:
        ids = conn.execute(select(customers_t.c.id).where(*segment_conditions(where))).scalars()
        tables["members"] = pa.table({"id": pa.array(list(ids), pa.int64())})
        clause = "AND customer_id IN (SELECT id FROM members)"
    params = {
        "model": model_id,
        "stages": keys,
        "start": start or _EPOCH,
        "end": end or datetime.now(UTC),
    }
    rows = store.sql(_ACTIVITY.format(members=clause), params, **tables).to_pylist()
    named: list[Counter[str]] = [Counter() for _ in keys]
    pages: list[Counter[str]] = [Counter() for _ in keys]
    channels: list[Counter[str]] = [Counter() for _ in keys]
    for row in rows:
        if row["stage"] is None:  # a stage the model no longer has
            continue
        at = int(row["stage"]) - 1  # list_position counts from 1
        n = int(row["events"])
        channels[at][row["channel"] or "unknown"] += n
        if row["label"] is not None:
            (pages if row["page"] else named)[at][row["label"]] += n

    def ranked(counts: Counter[str]) -> list[dict[str, Any]]:
        best = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
        return [{"label": label, "events": n} for label, n in best]

    return {
        key: {
            "events": sum(channels[i].values()),
            "actions": ranked(named[i]),
            "pages": ranked(pages[i]),
            "channels": ranked(channels[i]),
        }
        for i, key in enumerate(keys)
    }
