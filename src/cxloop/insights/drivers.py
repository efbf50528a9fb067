"""Key drivers: what most moves overall NPS, or churn, among what cxloop measures.

One row per customer: the outcome (the customer's latest answer to the relationship NPS,
or whether they left a lifecycle model), and the candidate drivers:

* satisfaction at each touchpoint or stage that surveys ask about (the customer's mean
  answer there, on a 0..1 scale whatever the survey's scale), the outcome's surveys left out;
* case experiences: had a support case, a case ended badly;
* behaviours: did each of the most common tracked events (the model's exit events left
  out for churn, since doing them *is* leaving).

Importance is each driver's share of the explained variance (``insights.importance``),
with bootstrap intervals; performance is how well the driver does today (mean satisfaction,
or for a yes/no driver the share of customers on its good side: doing it when it helps the
outcome, not doing it when it hurts), so the two make an importance-performance quadrant.
A driver measured for too few customers, or an outcome with too few, is listed with its
count and no number: a figure on thirty answers invites more trust than it earns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import Connection, case, func, select

from cxloop.analytics.sql import query_for
from cxloop.domain.values import utc
from cxloop.events.base import EventStore
from cxloop.feedback.responses import responses_t
from cxloop.feedback.surveys import SCALES, get_survey, surveys_t
from cxloop.insights.filters import in_window, segment_members
from cxloop.insights.importance import importance
from cxloop.lifecycle.report import transitions_t
from cxloop.lifecycle.service import get_model
from cxloop.service.cases import cases_t

Outcome = Literal["nps", "churn"]
OUTCOMES: tuple[Outcome, ...] = ("nps", "churn")
MIN_SAMPLE = 30
RESAMPLES = 200
TOP_EVENTS = 12  # behaviours considered: the events most customers did
# The fields of each driver, in order (also a CSV's header when there are none).
DRIVER_FIELDS = ("driver", "kind", "label", "measured", "importance", "importance_ci",
                 "coefficient", "coefficient_ci", "direction", "significant", "performance",
                 "rank", "quadrant")  # fmt: skip
QUADRANTS = {
    (True, False): "concentrate here",
    (True, True): "keep up the good work",
    (False, False): "low priority",
    (False, True): "possible overkill",
}
METHOD = (
    "relative weights (Johnson 2000): each driver's share of the variance of the outcome "
    "that a linear model of all drivers explains (a driver not measured for a customer "
    "counts at its mean for them); 95 % intervals from "
    "resampling customers; significant when the standardised coefficient's interval "
    "excludes zero"
)


@dataclass
class Driver:
    key: str
    kind: str  # satisfaction, case or behaviour
    label: str
    values: dict[int, float]  # customer id -> value (customers without one: not measured)


def _members(conn: Connection, where: Mapping[str, str]) -> set[int] | None:
    if not where:
        return None
    return set(conn.execute(segment_members(where)).scalars())


def _outcome_surveys(conn: Connection, survey_id: int | None) -> list[int]:
    """The surveys whose answers are the overall NPS: the one named, else the customer NPS
    surveys not tied to a touchpoint (relationship surveys), else every customer NPS one."""
    s = surveys_t.c
    if survey_id is not None:
        survey = get_survey(conn, survey_id)
        if (survey["kind"], survey["audience"]) != ("nps", "customers"):
            raise ValueError("survey: not an NPS survey of customers")
        return [survey_id]
    rows = conn.execute(
        select(s.id, s.touchpoint).where(s.kind == "nps", s.audience == "customers")
    ).all()
    relationship = [r.id for r in rows if r.touchpoint is None]
    return relationship or [r.id for r in rows]


def _nps_outcome(
    conn: Connection, surveys: list[int], start: datetime | None, end: datetime | None
) -> dict[int, float]:
    """Each customer's latest answer (0..10) to the outcome surveys in the window."""
    r = responses_t.c
    rows = conn.execute(
        select(r.customer_id, r.score)
        .where(
            r.survey_id.in_(surveys),
            r.customer_id.is_not(None),
            r.score.is_not(None),
            *in_window(r.submitted_at, start, end),
        )
        .order_by(r.customer_id, r.submitted_at, r.id)
    ).all()
    return {int(row.customer_id): float(row.score) for row in rows}  # the last one stays


def _churn_outcome(
    conn: Connection, model_key: str, start: datetime | None, end: datetime | None
) -> dict[int, float]:
    """1 for customers whose last move before the window's end is an exit inside the
    window, 0 for those still in the lifecycle then; customers gone before the window
    are not counted."""
    model_id, _model, _version = get_model(conn, model_key)
    t = transitions_t.c
    rows = conn.execute(
        select(t.customer_id, t.kind, t.at)
        .where(t.model_id == model_id, *in_window(t.at, None, end))
        .order_by(t.customer_id, t.seq)
    ).all()
    last: dict[int, tuple[str, datetime]] = {}
    for row in rows:
        last[int(row.customer_id)] = (str(row.kind), row.at)
    out: dict[int, float] = {}
    for customer, (kind, at) in last.items():
        if kind != "exit":
            out[customer] = 0.0
        elif start is None or utc(at) >= start:
            out[customer] = 1.0
    return out


def _satisfaction(
    conn: Connection, excluded: list[int], start: datetime | None, end: datetime | None
) -> list[Driver]:
    """Per touchpoint (or stage, for surveys tied to one only): each customer's mean
    answer, scaled to 0..1 by its survey's scale."""
    r, s = responses_t.c, surveys_t.c
    columns = (r.customer_id, r.score, r.touchpoint, r.stage_model, r.stage)
    rows = conn.execute(
        select(*columns, s.kind, s.scale_low, s.scale_high)
        .join(surveys_t, s.id == r.survey_id)
        .where(
            s.audience == "customers",
            r.customer_id.is_not(None),
            r.score.is_not(None),
            r.survey_id.not_in(excluded) if excluded else r.score.is_not(None),
            *in_window(r.submitted_at, start, end),
        )
    ).all()
    sums: dict[tuple[str, str], dict[int, list[float]]] = {}
    for row in rows:
        low, high = SCALES.get(row.kind, (row.scale_low, row.scale_high))
        if low is None or high is None or high <= low:
            continue
        scaled = (float(row.score) - low) / (high - low)
        if row.touchpoint:
            place = ("touchpoint", str(row.touchpoint))
        elif row.stage_model and row.stage:
            place = ("stage", f"{row.stage_model}:{row.stage}")
        else:
            continue
        sums.setdefault(place, {}).setdefault(int(row.customer_id), []).append(scaled)
    drivers = []
    for (kind, name), by_customer in sorted(sums.items()):
        if kind == "touchpoint":
            label = f"Satisfaction at {name}"
        else:
            model_key, _, stage = name.partition(":")
            label = f"Satisfaction in the {stage} stage ({model_key})"
        values = {c: float(np.mean(v)) for c, v in by_customer.items()}
        drivers.append(Driver(f"{kind}:{name}", "satisfaction", label, values))
    return drivers


def _cases(
    conn: Connection, population: list[int], start: datetime | None, end: datetime | None
) -> list[Driver]:
    """Had a support case; had one that ended badly. Everyone in the population has a
    value (0 without a case), so these are measured for all."""
    c = cases_t.c
    rows = conn.execute(
        select(c.customer_id, func.max(case((c.outcome == "negative", 1), else_=0)).label("bad"))
        .where(*in_window(c.opened_at, start, end))
        .group_by(c.customer_id)
    ).all()
    had = {int(row.customer_id) for row in rows}
    bad = {int(row.customer_id) for row in rows if row.bad}
    return [
        Driver("case:any", "case", "Had a support case", {p: float(p in had) for p in population}),
        Driver("case:negative", "case", "A case ended badly",
               {p: float(p in bad) for p in population}),
    ]  # fmt: skip


def _behaviours(
    events: EventStore,
    population: list[int],
    left_out: set[str],
    start: datetime | None,
    end: datetime | None,
    top: int,
) -> list[Driver]:
    """Did each of the ``top`` events most customers of the population did (0 or 1)."""
    q, sql = query_for(events)
    clauses = ["type = 'track'", "event IS NOT NULL", "customer_id IS NOT NULL"]
    if start is not None:
        clauses.append(f'"timestamp" >= {q.param(start)}')
    if end is not None:
        clauses.append(f'"timestamp" < {q.param(end)}')
    text = f"SELECT DISTINCT customer_id, event FROM events WHERE {' AND '.join(clauses)}"
    table = sql(*q.build(text))
    members = set(population)
    did: dict[str, set[int]] = {}
    for customer, name in zip(
        table.column("customer_id").to_pylist(), table.column("event").to_pylist(), strict=True
    ):
        if customer in members and name not in left_out:
            did.setdefault(str(name), set()).add(int(customer))
    everyone = len(population)
    # An event everyone did, or nobody, cannot explain a difference between customers.
    usable = [(n, who) for n, who in did.items() if 0 < len(who) < everyone]
    usable.sort(key=lambda item: (-len(item[1]), item[0]))
    return [
        Driver(f"event:{name}", "behaviour", f"Did {name}",
               {p: float(p in who) for p in population})
        for name, who in usable[:top]
    ]  # fmt: skip


def key_drivers(
    conn: Connection,
    events: EventStore,
    *,
    outcome: Outcome = "nps",
    model: str | None = None,
    survey_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    where: Mapping[str, str] | None = None,
    min_sample: int = MIN_SAMPLE,
    resamples: int = RESAMPLES,
    top_events: int = TOP_EVENTS,
) -> dict[str, Any]:
    """Drivers ranked by importance, with intervals, direction, performance, quadrant and
    the number of customers each rests on; too-small samples say so instead."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome: must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    if min_sample < 3:
        raise ValueError("min_sample: must be at least 3")
    if not 20 <= resamples <= 2000:
        raise ValueError("resamples: must be between 20 and 2000")
    segment = dict(where or {})
    excluded: list[int] = []
    left_out: set[str] = set()
    if outcome == "nps":
        if model is not None:
            get_model(conn, model)  # a model only names where NPS is read from; check it
        excluded = _outcome_surveys(conn, survey_id)
        found = _nps_outcome(conn, excluded, start, end) if excluded else {}
        about = "the customer's latest answer to the relationship NPS (0-10)"
    else:
        if model is None:
            raise ValueError("model: name the lifecycle model whose exits are churn")
        if survey_id is not None:
            raise ValueError("survey: only with outcome nps")
        found = _churn_outcome(conn, model, start, end)
        _id, definition, _version = get_model(conn, model)
        left_out = {e.event for e in definition.exits if e.event}
        about = f"left the {definition.name} (1) or still in it (0) at the window's end"
    members = _members(conn, segment)
    if members is not None:
        found = {c: y for c, y in found.items() if c in members}
    population = sorted(found)
    answer: dict[str, Any] = {
        "outcome": outcome,
        "outcome_is": about,
        "model": model,
        "surveys": excluded,
        "from": start,
        "to": end,
        "segment": segment,
        "customers": len(population),
        "outcome_mean": float(np.mean([found[c] for c in population])) if population else None,
        "min_sample": min_sample,
        "resamples": resamples,
        "method": METHOD,
        "r_squared": None,
        "r_squared_ci": None,
        "r_squared_adjusted": None,
        "drivers": [],
        "left_out": [],
        "note": None,
    }
    if len(population) < min_sample:
        answer["note"] = (
            f"too few customers with an outcome for a driver analysis: {len(population)}, "
            f"fewer than {min_sample}"
        )
        return answer
    candidates = [
        *_satisfaction(conn, excluded, start, end),
        *_cases(conn, population, start, end),
        *_behaviours(events, population, left_out, start, end, top_events),
    ]
    kept: list[Driver] = []
    columns: dict[tuple[float, ...], str] = {}  # a driver's values -> the first driver with them
    for driver in candidates:
        column = tuple(driver.values.get(c, np.nan) for c in population)
        measured = sum(1 for v in column if not np.isnan(v))
        why = None
        if measured < min_sample:
            why = f"{measured} customers, fewer than {min_sample}"
        elif len({v for v in column if not np.isnan(v)}) < 2:
            why = "the same for every customer"
        elif column in columns:  # NaN != NaN, so only fully measured twins match
            why = f"the same customers as {columns[column]!r}"
        if why is None:
            columns[column] = driver.label
            kept.append(driver)
        else:
            answer["left_out"].append(
                {"driver": driver.key, "label": driver.label, "kind": driver.kind,
                 "measured": measured, "why": why}
            )  # fmt: skip
    if not kept:
        answer["note"] = "no driver is measured for enough customers"
        return answer
    y = np.array([found[c] for c in population], dtype=np.float64)
    x = np.array([[d.values.get(c, np.nan) for d in kept] for c in population], dtype=np.float64)
    result = importance(y, x, resamples=resamples)
    answer["r_squared"] = round(result.fit.r_squared, 4)
    n, p = len(population), len(kept)
    if n > p + 1:  # R² less what p drivers would explain of noise alone
        adjusted = 1 - (1 - result.fit.r_squared) * (n - 1) / (n - p - 1)
        answer["r_squared_adjusted"] = round(adjusted, 4)
    answer["r_squared_ci"] = [round(v, 4) for v in result.r_squared_ci]
    rows: list[dict[str, Any]] = []
    for i, driver in enumerate(kept):
        present = x[:, i][~np.isnan(x[:, i])]
        mean = float(np.mean(present))
        low, high = result.coefficient_ci[i]
        coefficient = float(result.fit.coefficients[i])
        # Performance: mean satisfaction; for a yes/no driver, the share of customers on
        # its good side (doing it when it helps the outcome, not doing it when it hurts).
        helps = (coefficient >= 0) != (outcome == "churn")
        performance = mean if driver.kind == "satisfaction" or helps else 1 - mean
        rows.append(
            {
                "driver": driver.key,
                "kind": driver.kind,
                "label": driver.label,
                "measured": len(present),
                "importance": round(100 * float(result.fit.shares[i]), 2),
                "importance_ci": [round(100 * float(v), 2) for v in result.share_ci[i]],
                "coefficient": round(coefficient, 4),
                "coefficient_ci": [round(float(low), 4), round(float(high), 4)],
                "direction": "raises" if coefficient >= 0 else "lowers",
                "significant": bool(low > 0 or high < 0),
                "performance": round(100 * performance, 1),
            }
        )
    rows.sort(key=lambda r: (-r["importance"], r["driver"]))
    importance_mid = float(np.median([r["importance"] for r in rows]))
    performance_mid = float(np.median([r["performance"] for r in rows]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        key = (row["importance"] >= importance_mid, row["performance"] >= performance_mid)
        row["quadrant"] = QUADRANTS[key]
    answer["drivers"] = rows
    answer["quadrant_lines"] = {"importance": importance_mid, "performance": performance_mid}
    return answer
