"""Survey responses and the scores read from them.

A response is checked against its survey (the scale of its type, the choices of a custom
one) and keeps where in the journey it was given, so every score can be read per
touchpoint, stage, department or month with the same arithmetic (``cxloop.domain.scores``).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Table, case, func, insert, select

from cxloop.customers.service import (
    FILTER_FIELDS,
    customers_t,
    resolve_customer_id,
    segment_conditions,
)
from cxloop.domain.scores import Mean, Nps, Proportion, check_score, compare, nps_kind
from cxloop.feedback.benchmarks import against
from cxloop.feedback.surveys import SCALES, departments_t, get_survey, surveys_t
from cxloop.feedback.text import sentiment
from cxloop.lifecycle.service import NotFound, installed_models
from cxloop.store.models import SurveyResponse

responses_t = cast(Table, SurveyResponse.__table__)
MAX_COMMENT = 5000
GroupBy = Literal["touchpoint", "stage", "department", "month"]
# Scores can also be broken down by a customer field or trait (``segment``).
ScoreGroupBy = Literal["touchpoint", "stage", "department", "month", "segment"]
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")


class ResponseIn(BaseModel):
    """One answer: a score (rating surveys) or a choice (choice surveys), an optional
    comment, and who gave it (a customer by id, userId, anonymousId or e-mail)."""

    model_config = ConfigDict(extra="forbid")

    score: float | None = None
    choice: str | None = Field(default=None, max_length=200)
    comment: str | None = None
    customer: str | None = Field(default=None, max_length=320)
    department: str | None = Field(default=None, max_length=120)
    touchpoint: str | None = Field(default=None, max_length=200)
    submitted_at: datetime | None = None


def record_response(
    conn: Connection,
    survey_id: int,
    answer: ResponseIn,
    *,
    source: str = "api",
    import_key: str | None = None,
    survey: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store a checked answer; comments are kept as the text they are (pages escape it).
    ``import_key`` marks an imported row, stored once however often its file is imported."""
    survey = survey or get_survey(conn, survey_id)
    row: dict[str, Any] = {
        "survey_id": survey_id,
        "source": source,
        "score": None,
        "choice": None,
        "import_key": import_key,
    }
    if survey["choices"] is not None:
        if answer.choice not in survey["choices"]:
            raise ValueError(f"choice: must be one of {', '.join(survey['choices'])}")
        if answer.score is not None:
            raise ValueError("score: this survey is answered with a choice")
        row["choice"] = answer.choice
    else:
        if answer.score is None:
            raise ValueError("score: this survey needs a score")
        low, high = survey["scale"]
        row["score"] = check_score(answer.score, low, high)
    comment = (answer.comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise ValueError(f"comment: at most {MAX_COMMENT} characters, not {len(comment)}")
    row["comment"] = comment or None
    row["sentiment"] = sentiment(comment) if comment else None
    row["customer_id"] = (
        resolve_customer_id(conn, answer.customer) if answer.customer is not None else None
    )
    row["department_id"] = _department(conn, answer.department or survey["department"])
    row["touchpoint"] = answer.touchpoint or survey["touchpoint"]
    model, _, stage = (survey["stage"] or "").partition(":")
    row["stage_model"], row["stage"] = model or None, stage or None
    now = datetime.now(UTC)
    submitted = answer.submitted_at or now
    if submitted.tzinfo is None:
        submitted = submitted.replace(tzinfo=UTC)
    if submitted > now:
        raise ValueError("submitted_at: a response cannot come from the future")
    row["submitted_at"], row["created_at"] = submitted, now
    new_id = conn.execute(insert(responses_t).values(**row).returning(responses_t.c.id)).one()
    return {"id": int(new_id.id), "survey_id": survey_id, **_shown(row, survey)}


def _shown(row: dict[str, Any], survey: dict[str, Any]) -> dict[str, Any]:
    return {
        "score": row["score"],
        "choice": row["choice"],
        "comment": row["comment"],
        "sentiment": row["sentiment"],
        "customer_id": row["customer_id"],
        "touchpoint": row["touchpoint"],
        "stage": survey["stage"],
        "submitted_at": row["submitted_at"].isoformat(),
    }


def _department(conn: Connection, name: str | None) -> int | None:
    if name is None:
        return None
    found = conn.execute(select(departments_t.c.id).where(departments_t.c.name == name)).first()
    if found is None:
        raise NotFound("department", f"no department named {name!r}")
    return int(found.id)


Measure = Literal["nps", "enps", "csat", "ces"]
_SURVEYS = {  # measure: (survey kind, audience)
    "nps": ("nps", "customers"),
    "enps": ("nps", "employees"),
    "csat": ("csat", "customers"),
    "ces": ("ces", "customers"),
}


_NOT_SHOWN = ("responses", "total", "squares")  # sums shown as the score itself


def _sums(measure: Measure) -> list[Any]:
    """What each measure adds up in SQL: counts and sums, so groups combine exactly."""
    score = responses_t.c.score
    if measure in ("nps", "enps"):
        return [
            func.count(case((score >= 9, 1))).label("promoters"),
            func.count(case(((score >= 7) & (score <= 8), 1))).label("passives"),
            func.count(case((score <= 6, 1))).label("detractors"),
        ]
    if measure == "csat":
        return [
            func.count(case((score >= 4, 1))).label("satisfied"),
            func.count(score).label("responses"),
        ]
    return [
        func.count(score).label("responses"),
        func.coalesce(func.sum(score), 0).label("total"),
        func.coalesce(func.sum(score * score), 0).label("squares"),
    ]


def _scored(measure: Measure, sums: dict[str, float]) -> Nps | Proportion | Mean:
    if measure in ("nps", "enps"):
        return Nps(int(sums["promoters"]), int(sums["passives"]), int(sums["detractors"]))
    if measure == "csat":
        return Proportion(int(sums["satisfied"]), int(sums["responses"]))
    return Mean(int(sums["responses"]), float(sums["total"]), float(sums["squares"]))


def score_report(
    conn: Connection,
    measure: Measure,
    *,
    survey_id: int | None = None,
    by: ScoreGroupBy | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    zone: ZoneInfo = ZoneInfo("UTC"),
    benchmark_id: int | None = None,
    segment: str | None = None,
    where: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A score over its surveys' responses (one survey's, if named), overall and per
    group: ``{MEASURE, "responses", ...its counts, "margin_of_error", "groups": [{"key",
    MEASURE, "responses", "margin_of_error", "vs_rest"}], "benchmark"?}``. NPS reads customer
    surveys, eNPS employee ones. ``by="segment"`` groups by the customer field or trait
    ``segment`` names (channel, country, income_band, a trait …); ``where`` keeps the
    answers of customers matching every FIELD=VALUE, as the other reports' segments do."""
    kind, audience = _SURVEYS[measure]
    if survey_id is not None:
        survey = get_survey(conn, survey_id)
        if (survey["kind"], survey["audience"]) != (kind, audience):
            raise ValueError(f"survey: not a {kind} survey of {audience}")
    low, high = SCALES[kind]
    sums = _sums(measure)
    query = (
        select(*sums)
        .select_from(
            responses_t.join(surveys_t).outerjoin(
                departments_t, departments_t.c.id == responses_t.c.department_id
            )
        )
        .where(
            surveys_t.c.kind == kind,
            surveys_t.c.audience == audience,
            responses_t.c.score.between(low, high),
        )
    )
    if by == "segment":
        if not segment or not _FIELD_NAME.match(segment):
            raise ValueError(
                "segment: name the customer field or trait to group by "
                "(channel, country, income_band, a trait …)"
            )
        query = query.join(customers_t, customers_t.c.id == responses_t.c.customer_id)
        key = (
            customers_t.c[segment]
            if segment in FILTER_FIELDS
            else customers_t.c.traits[segment].as_string()
        )
        query = query.add_columns(key.label("key")).group_by(key)
    elif by is not None:
        key = _group_key(by)
        query = query.add_columns(key.label("key")).group_by(key)
    elif segment is not None:
        raise ValueError("segment: only with --by segment")
    if where:
        members = select(customers_t.c.id).where(*segment_conditions(where))
        query = query.where(responses_t.c.customer_id.in_(members))
    if survey_id is not None:
        query = query.where(responses_t.c.survey_id == survey_id)
    if start is not None:
        query = query.where(responses_t.c.submitted_at >= start)
    if end is not None:
        query = query.where(responses_t.c.submitted_at < end)
    names = [c.name for c in sums]
    grouped: dict[Any, dict[str, float]] = {}
    totals = dict.fromkeys(names, 0.0)
    for row in conn.execute(query):
        label = None if by is None else _month(row.key, zone) if by == "month" else row.key
        mine = grouped.setdefault(label, dict.fromkeys(names, 0.0))
        for name in names:
            mine[name] += float(getattr(row, name))
            totals[name] += float(getattr(row, name))
    total = _scored(measure, totals)
    out: dict[str, Any] = {measure: _rounded(total.score), "responses": total.responses}
    out.update({n: int(totals[n]) for n in names if n not in _NOT_SHOWN})
    out["margin_of_error"] = _rounded(total.margin_of_error)
    if by is not None:
        ordered = sorted(grouped.items(), key=lambda item: (item[0] is None, str(item[0])))
        out["groups"] = []
        for label, group_sums in ordered:
            group = _scored(measure, group_sums)
            counts = {n: int(group_sums[n]) for n in names if n not in _NOT_SHOWN}
            rest = _scored(measure, {n: totals[n] - group_sums[n] for n in names})
            out["groups"].append(
                {
                    "key": label,
                    measure: _rounded(group.score),
                    "responses": group.responses,
                    **counts,
                    "margin_of_error": _rounded(group.margin_of_error),
                    "vs_rest": _versus(group, rest),
                }
            )
    if benchmark_id is not None:
        out["benchmark"] = against(conn, benchmark_id, out, measure)
    return out


def _group_key(by: GroupBy) -> Any:
    if by == "touchpoint":
        return responses_t.c.touchpoint
    if by == "stage":
        return responses_t.c.stage_model + ":" + responses_t.c.stage
    if by == "department":
        return departments_t.c.name
    return responses_t.c.submitted_at  # months are formed in Python: one rule on every engine


def _versus(group: Nps | Proportion | Mean, rest: Nps | Proportion | Mean) -> dict[str, Any] | None:
    """The group against every other answer: the difference, its p-value, and whether it
    is significant at 5% (``None`` when either side has no answers that vary)."""
    found = compare(group, rest)
    if found is None:
        return None
    return {
        "difference": _rounded(found.difference),
        "p_value": round(found.p_value, 4),
        "significant": found.significant,
    }


def days_window(
    first: date | None, last: date | None, zone: ZoneInfo
) -> tuple[datetime | None, datetime | None]:
    """The half-open range of whole days ``first``..``last`` (both included) in the zone."""
    start = datetime.combine(first, time(), zone) if first else None
    end = datetime.combine(last + timedelta(days=1), time(), zone) if last else None
    return start, end


def _month(moment: datetime, zone: ZoneInfo) -> str:
    """The month in the project's time zone."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone).strftime("%Y-%m")


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def enps_beside_stages(
    conn: Connection,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    zone: ZoneInfo = ZoneInfo("UTC"),
) -> dict[str, Any]:
    """eNPS per department beside the customer NPS of the stages it owns (the answers of
    all its stages together), and how the two go together across departments: Pearson's
    r over the departments that have both, with their number (r is ``None`` below three)."""
    window: dict[str, Any] = {"start": start, "end": end, "zone": zone}
    report = score_report(conn, "enps", by="department", **window)
    owners = {f"{m.key}:{s.key}": s.owner for m in installed_models(conn) for s in m.stages}
    owned: dict[str, list[dict[str, Any]]] = {}
    for group in score_report(conn, "nps", by="stage", **window)["groups"]:
        if group["key"] in owners:
            owned.setdefault(owners[group["key"]], []).append(group)
    departments = []
    pairs = []
    for group in report["groups"]:
        stages = owned.get(group["key"], [])
        nps = Nps(*(sum(g[k] for g in stages) for k in ("promoters", "passives", "detractors")))
        row = {
            "department": group["key"],
            "enps": group["enps"],
            "responses": group["responses"],
            "margin_of_error": group["margin_of_error"],
            "customer_nps": _rounded(nps.score),
            "customer_responses": nps.responses,
            "stages": [g["key"] for g in stages],
        }
        departments.append(row)
        if group["key"] is not None and row["enps"] is not None and nps.score is not None:
            pairs.append((row["enps"], row["customer_nps"]))
    return {
        "enps": report["enps"],
        "responses": report["responses"],
        "margin_of_error": report["margin_of_error"],
        "departments": departments,
        "correlation": _correlation(pairs),
        "correlated_departments": len(pairs),
    }


def _correlation(pairs: list[tuple[float, float]]) -> float | None:
    if len(pairs) < 3:
        return None
    try:
        return round(statistics.correlation([p[0] for p in pairs], [p[1] for p in pairs]), 4)
    except statistics.StatisticsError:  # one side does not vary
        return None


def comments_report(
    conn: Connection,
    *,
    survey_id: int | None = None,
    by: GroupBy | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    zone: ZoneInfo = ZoneInfo("UTC"),
    examples: int = 3,
) -> dict[str, Any]:
    """What the comments say: how many, their mean sentiment (-1 to +1), per NPS class
    (promoters, passives, detractors) and per group, with the most negative and most
    positive comments of each group as examples."""
    query = (
        select(
            responses_t.c.comment,
            responses_t.c.sentiment,
            responses_t.c.score,
            responses_t.c.touchpoint,
            responses_t.c.submitted_at,
            surveys_t.c.kind,
            (responses_t.c.stage_model + ":" + responses_t.c.stage).label("stage"),
            departments_t.c.name.label("department"),
        )
        .select_from(
            responses_t.join(surveys_t).outerjoin(
                departments_t, departments_t.c.id == responses_t.c.department_id
            )
        )
        .where(responses_t.c.sentiment.is_not(None))
    )
    if survey_id is not None:
        get_survey(conn, survey_id)
        query = query.where(responses_t.c.survey_id == survey_id)
    if start is not None:
        query = query.where(responses_t.c.submitted_at >= start)
    if end is not None:
        query = query.where(responses_t.c.submitted_at < end)
    rows = conn.execute(query).mappings().all()
    by_class: dict[str, list[float]] = {"promoter": [], "passive": [], "detractor": []}
    groups: dict[Any, list[Any]] = {}
    for row in rows:
        if row["kind"] == "nps" and row["score"] is not None:
            by_class[nps_kind(row["score"])].append(row["sentiment"])
        if by is not None:
            key = _month(row["submitted_at"], zone) if by == "month" else row[by]
            groups.setdefault(key, []).append(row)
    out: dict[str, Any] = {
        "comments": len(rows),
        "mean_sentiment": _mean([r["sentiment"] for r in rows]),
        "by_nps_class": {
            k: {"comments": len(v), "mean_sentiment": _mean(v)} for k, v in by_class.items()
        },
    }
    if by is not None:
        out["groups"] = []
        for key, members in sorted(groups.items(), key=lambda i: (i[0] is None, str(i[0]))):
            ranked = sorted(members, key=lambda r: r["sentiment"])
            out["groups"].append(
                {
                    "key": key,
                    "comments": len(members),
                    "mean_sentiment": _mean([r["sentiment"] for r in members]),
                    "most_negative": [r["comment"] for r in ranked[:examples]],
                    "most_positive": [r["comment"] for r in ranked[::-1][:examples]],
                }
            )
    return out


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None
