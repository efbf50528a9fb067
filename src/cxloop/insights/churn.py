"""Churn risk: who is about to leave a lifecycle, why, and how far to trust the model.

The model learns from the past without peeking at it: at a cutoff ``horizon`` days before
the end, it takes the customers then still in the lifecycle, describes each by what was
known at the cutoff (behaviour, stage, satisfaction, cases), and labels those who left in
the ``horizon`` days after it. It is a logistic regression on standardised features, so
each customer's risk splits into per-feature contributions to the log-odds: the largest
are the customer's top reasons. Before it is used, it is evaluated on a held-out quarter
of those customers: AUC, Brier score and a calibration table (predicted against observed
churn per tenth of risk). Today's customers are then described as of the end and scored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, case, func, select

from cxloop.analytics.sql import query_for
from cxloop.domain.values import utc
from cxloop.events.base import EventStore
from cxloop.feedback.responses import responses_t
from cxloop.feedback.surveys import SCALES, surveys_t
from cxloop.insights.filters import segment_members
from cxloop.lifecycle.report import transitions_t
from cxloop.lifecycle.service import get_model
from cxloop.service.cases import cases_t

if TYPE_CHECKING:  # scikit-learn takes a second to import: only training pays for it
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

HORIZON_DAYS = 90
RECENT_DAYS = 90  # behaviour is counted over the last 90 days before the moment described
TOP_EVENTS = 8
MIN_CUSTOMERS = 200  # customers at the cutoff, before a model is trained
MIN_CHURNED = 20  # of them, churned (and the same number staying)
TOP_REASONS = 3
# The fields of each customer at risk, in order (also a CSV's header when there are none).
AT_RISK_FIELDS = ("customer_id", "risk", "stage", "owner", "in_stage_since", "reasons")
_COUNTED = ("recent_events", "event:", "cases")  # features read as log(1 + count)
DAY_US = 86_400_000_000
Floats = npt.NDArray[np.float64]


@dataclass
class Features:
    customers: npt.NDArray[np.int64]
    names: list[str]  # a key per column
    labels: list[str]  # what people read
    values: Floats  # (customers, features)


def _moves(conn: Connection, model_id: int) -> list[tuple[int, str, str | None, datetime]]:
    """The model's moves, (customer, kind, stage, at) by customer and sequence: read once,
    then placed at both moments the model needs (the cutoff and the end)."""
    t = transitions_t.c
    rows = conn.execute(
        select(t.customer_id, t.kind, t.to_stage, t.at)
        .where(t.model_id == model_id)
        .order_by(t.customer_id, t.seq)
    ).all()
    return [(int(r.customer_id), str(r.kind), r.to_stage, utc(r.at)) for r in rows]


def _active_at(
    moves: list[tuple[int, str, str | None, datetime]], moment: datetime
) -> tuple[dict[int, tuple[str, datetime]], dict[int, datetime]]:
    """Customers standing in a stage at ``moment`` ({customer: (stage, since)}), and the
    time of each customer's first exit after it ({customer: at})."""
    standing: dict[int, tuple[str, datetime]] = {}
    exits: dict[int, datetime] = {}
    for customer, kind, stage, at in moves:
        if at < moment:
            if kind == "exit" or stage is None:
                standing.pop(customer, None)
            else:
                standing[customer] = (str(stage), at)
        elif kind == "exit" and customer not in exits:
            exits[customer] = at
    return standing, exits


def _top_events(events: EventStore, before: datetime, left_out: set[str]) -> list[str]:
    q, sql = query_for(events)
    text = (
        "SELECT event, count(DISTINCT customer_id) AS n FROM events "
        f"WHERE type = 'track' AND event IS NOT NULL AND \"timestamp\" < {q.param(before)} "
        "GROUP BY event ORDER BY n DESC, event LIMIT 50"
    )
    names = [str(r["event"]) for r in sql(*q.build(text)).to_pylist()]
    return [n for n in names if n not in left_out][:TOP_EVENTS]


def _behaviour(events: EventStore, moment: datetime, names: list[str]) -> dict[int, list[float]]:
    """Per customer: days since the last event, days since the first, events in the last
    RECENT_DAYS, and each named event's count in them; all before ``moment``."""
    q, sql = query_for(events)
    at = q.epoch_us()
    now_us = int(moment.timestamp() * 1_000_000)
    recent = f"{at} >= {q.param(now_us - RECENT_DAYS * DAY_US)}"
    counts = ", ".join(
        f"count(*) FILTER (WHERE {recent} AND event = {q.param(n)}) AS e{i}"
        for i, n in enumerate(names)
    )
    text = (
        f"SELECT customer_id, max({at}) AS last_us, min({at}) AS first_us, "
        f"count(*) FILTER (WHERE {recent}) AS recent{', ' + counts if counts else ''} "
        f'FROM events WHERE customer_id IS NOT NULL AND "timestamp" < {q.param(moment)} '
        "GROUP BY customer_id"
    )
    table = sql(*q.build(text)).to_pylist()
    out = {}
    for row in table:
        values = [
            (now_us - row["last_us"]) / DAY_US,
            (now_us - row["first_us"]) / DAY_US,
            math.log1p(row["recent"]),
        ]
        values += [math.log1p(row[f"e{i}"]) for i in range(len(names))]
        out[int(row["customer_id"])] = values
    return out


def _feedback(conn: Connection, moment: datetime) -> dict[int, tuple[float, float]]:
    """Per customer: the mean of their answers before ``moment`` (0..1 on each survey's
    scale), and how many they gave."""
    r, s = responses_t.c, surveys_t.c
    rows = conn.execute(
        select(r.customer_id, r.score, s.kind)
        .join(surveys_t, s.id == r.survey_id)
        .where(
            s.audience == "customers",
            s.kind.in_(tuple(SCALES)),
            r.customer_id.is_not(None),
            r.score.is_not(None),
            r.submitted_at < moment,
        )
    ).all()
    sums: dict[int, list[float]] = {}
    for row in rows:
        low, high = SCALES[row.kind]
        sums.setdefault(int(row.customer_id), []).append((row.score - low) / (high - low))
    return {c: (float(np.mean(v)), float(len(v))) for c, v in sums.items()}


def _cases(conn: Connection, moment: datetime) -> dict[int, tuple[int, int]]:
    c = cases_t.c
    rows = conn.execute(
        select(
            c.customer_id,
            func.count().label("cases"),
            func.sum(case((c.outcome == "negative", 1), else_=0)).label("bad"),
        )
        .where(c.opened_at < moment)
        .group_by(c.customer_id)
    ).all()
    return {int(r.customer_id): (int(r.cases), int(r.bad or 0)) for r in rows}


def describe(
    conn: Connection,
    events: EventStore,
    customers: Mapping[int, tuple[str, datetime]],
    moment: datetime,
    stages: list[tuple[str, str]],
    names: list[str],
) -> Features:
    """Each customer as known at ``moment``: one row of the features the model reads."""
    behaviour = _behaviour(events, moment, names)
    feedback = _feedback(conn, moment)
    cases = _cases(conn, moment)
    keys = [
        "recency_days", "tenure_days", "recent_events",
        *[f"event:{n}" for n in names],
        "days_in_stage", "satisfaction", "no_answer", "cases", "bad_cases",
        *[f"stage:{k}" for k, _ in stages[1:]],  # the first stage is the baseline
    ]  # fmt: skip
    labels = [
        "days since the last activity", "days since first seen",
        f"activity in the last {RECENT_DAYS} days",
        *[f"{n} in the last {RECENT_DAYS} days" for n in names],
        "days in the current stage", "satisfaction in answers", "never answered a survey",
        "support cases", "cases that ended badly",
        *[f"stands in {name}" for _k, name in stages[1:]],
    ]  # fmt: skip
    ids = np.array(sorted(customers), dtype=np.int64)
    rows = np.zeros((ids.size, len(keys)), dtype=np.float64)
    blank = [float(RECENT_DAYS * 4), 0.0, 0.0] + [0.0] * len(names)
    stage_index = {k: i for i, (k, _) in enumerate(stages)}
    for r, customer in enumerate(ids.tolist()):
        stage, since = customers[customer]
        seen = behaviour.get(customer, blank)
        score, answers = feedback.get(customer, (0.0, 0.0))
        opened, bad = cases.get(customer, (0, 0))
        row = [*seen, (moment - since).total_seconds() / 86_400,
               score, float(answers == 0), math.log1p(opened), float(bad > 0)]  # fmt: skip
        row += [0.0] * (len(stages) - 1)
        position = stage_index.get(stage, 0)
        if position > 0:
            row[len(row) - (len(stages) - 1) + position - 1] = 1.0
        rows[r] = row
    return Features(ids, keys, labels, rows)


def _shown(name: str, value: float) -> float:
    """A feature's value as people read it: counts unlogged, days to one decimal."""
    if name.startswith(_COUNTED):
        return float(round(math.expm1(value)))
    return round(value, 1)


CLIP = 5.0  # standard deviations: a value far outside training is read as this far


@dataclass
class Trained:
    model: LogisticRegression
    mean: Floats
    scale: Floats
    evaluation: dict[str, Any]

    def standardised(self, values: Floats) -> Floats:
        return np.clip((values - self.mean) / self.scale, -CLIP, CLIP)


def train(values: Floats, churned: npt.NDArray[np.int_], *, seed: int = 0) -> Trained:
    """Standardise, hold out a stratified quarter, fit a logistic regression on the rest
    and evaluate it on the held-out customers."""
    from sklearn.calibration import calibration_curve  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss, roc_auc_score  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    started = time.perf_counter()
    x_train, x_test, y_train, y_test = train_test_split(
        values, churned, test_size=0.25, random_state=seed, stratify=churned
    )
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    # A feature (nearly) the same for everyone in training says nothing, and dividing by
    # its tiny spread would blow up any other value met when scoring: it is left out.
    scale[scale < 1e-6 * (np.abs(mean) + 1.0)] = np.inf
    trained = Trained(LogisticRegression(C=1.0, max_iter=1000), mean, scale, {})
    trained.model.fit(trained.standardised(x_train), y_train)
    model = trained.model
    risk = model.predict_proba(trained.standardised(x_test))[:, 1]
    observed, predicted = calibration_curve(y_test, risk, n_bins=10, strategy="quantile")
    evaluation = {
        "train_customers": int(y_train.size),
        "test_customers": int(y_test.size),
        "churn_rate": float(churned.mean()),
        "auc": float(roc_auc_score(y_test, risk)),
        "brier": float(brier_score_loss(y_test, risk)),
        "brier_if_constant": float(np.mean((y_test - y_train.mean()) ** 2)),
        "calibration": [
            {"predicted": float(p), "observed": float(o)}
            for p, o in zip(predicted, observed, strict=True)
        ],
        "seconds": round(time.perf_counter() - started, 3),
    }
    trained.evaluation = evaluation
    return trained


def churn_risk(
    conn: Connection,
    events: EventStore,
    model_key: str,
    *,
    end: datetime | None = None,
    horizon_days: int = HORIZON_DAYS,
    where: Mapping[str, str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """The model (features, coefficients), its evaluation, and today's customers ranked by
    risk of leaving within ``horizon_days``, each with its top reasons and owner."""
    if not 7 <= horizon_days <= 730:
        raise ValueError("horizon_days: must be between 7 and 730")
    if not 1 <= limit <= 1000 or offset < 0:
        raise ValueError("limit: must be between 1 and 1000 (and offset not negative)")
    model_id, model, _version = get_model(conn, model_key)
    end = end or datetime.now(UTC)
    cutoff = end - timedelta(days=horizon_days)
    stages = [(s.key, s.name) for s in model.stages]
    owners = {s.key: s.owner for s in model.stages}
    moves = _moves(conn, model_id)
    then, exits = _active_at(moves, cutoff)
    now, _later = _active_at(moves, end)
    if where:
        members = set(conn.execute(segment_members(dict(where))).scalars())
        then = {c: v for c, v in then.items() if c in members}
        now = {c: v for c, v in now.items() if c in members}
    answer: dict[str, Any] = {
        "model": model.key,
        "model_name": model.name,
        "horizon_days": horizon_days,
        "cutoff": cutoff,
        "end": end,
        "segment": dict(where or {}),
        "customers_at_cutoff": len(then),
        "churned_after_cutoff": sum(1 for c in then if c in exits and exits[c] <= end),
        "evaluation": None,
        "features": [],
        "at_risk": [],
        "customers_now": len(now),
        "note": None,
    }
    churned = answer["churned_after_cutoff"]
    if len(then) < MIN_CUSTOMERS or min(churned, len(then) - churned) < MIN_CHURNED:
        answer["note"] = (
            f"too little history to train on: {len(then)} customers in the lifecycle "
            f"{horizon_days} days before the end, {churned} of them left since (at least "
            f"{MIN_CUSTOMERS} customers, {MIN_CHURNED} who left and {MIN_CHURNED} who stayed)"
        )
        return answer
    left_out = {e.event for e in model.exits if e.event}
    names = _top_events(events, cutoff, left_out)
    past = describe(conn, events, then, cutoff, stages, names)
    labels = np.array([int(c in exits and exits[c] <= end) for c in past.customers.tolist()])
    trained = train(past.values, labels)
    answer["evaluation"] = trained.evaluation
    coefficients = trained.model.coef_[0]
    answer["features"] = sorted(
        (
            {"feature": k, "label": lab, "coefficient": round(float(b), 4),
             "odds_ratio_per_sd": round(math.exp(float(b)), 3)}
            for k, lab, b in zip(past.names, past.labels, coefficients, strict=True)
        ),
        key=lambda f: -abs(f["coefficient"]),
    )  # fmt: skip
    if not now:
        return answer
    today = describe(conn, events, now, end, stages, names)
    standardised = trained.standardised(today.values)
    risk = trained.model.predict_proba(standardised)[:, 1]
    contributions = standardised * coefficients
    order = np.argsort(-risk, kind="stable")
    answer["at_risk_mean"] = float(risk.mean())
    rows = []
    for i in order[offset : offset + limit].tolist():
        customer = int(today.customers[i])
        stage, since = now[customer]
        top = np.argsort(-contributions[i])[:TOP_REASONS]
        rows.append(
            {
                "customer_id": customer,
                "risk": round(float(risk[i]), 4),
                "stage": stage,
                "owner": owners.get(stage),
                "in_stage_since": since,
                "reasons": [
                    {"feature": today.names[j], "label": today.labels[j],
                     "value": _shown(today.names[j], float(today.values[i, j])),
                     "contribution": round(float(contributions[i, j]), 3)}
                    for j in top.tolist()
                    if contributions[i, j] > 0
                ],
            }
        )  # fmt: skip
    answer["at_risk"] = rows
    return answer


def follow_up_at_risk(
    conn: Connection,
    found: dict[str, Any],
    *,
    threshold: float,
) -> dict[str, int]:
    """A follow-up for the owning department of each listed customer at or above the
    risk ``threshold``, naming the risk and its reasons; one per customer and stay."""
    from cxloop.service.followups import for_churn_risk

    if not 0 < threshold < 1:
        raise ValueError("threshold: must be between 0 and 1")
    created = skipped = 0
    for row in found["at_risk"]:
        if row["risk"] < threshold:
            continue
        reasons = "; ".join(f"{r['label']}: {r['value']:g}" for r in row["reasons"])
        summary = (
            f"Churn risk {row['risk'] * 100:.0f} % within {found['horizon_days']} days "
            f"in {found['model_name']}" + (f" ({reasons})" if reasons else "")
        )
        made = for_churn_risk(
            conn, customer_id=row["customer_id"], model_key=found["model"],
            stage=row["stage"], owner=row["owner"], since=row["in_stage_since"], summary=summary,
        )  # fmt: skip
        created += made is not None
        skipped += made is None
    return {"created": created, "already_open": skipped}
