"""Survey responses and the scores read from them.

A response is checked against its survey (the scale of its type, the choices of a custom
one) and keeps where in the journey it was given, so every score can be read per
touchpoint, stage, department or month with the same arithmetic (``cxloop.domain.scores``).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    Connection,
    DateTime,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from cxloop.customers.service import (
    FILTER_FIELDS,
    check_field,
    customers_t,
    resolve_customer_id,
    segment_conditions,
)
from cxloop.domain.scores import Mean, Nps, Proportion, check_score, compare, nps_kind
from cxloop.domain.values import as_utc, check_day
from cxloop.feedback.benchmarks import against
from cxloop.feedback.surveys import SCALES, departments_t, get_survey, surveys_t
from cxloop.feedback.text import sentiment
from cxloop.lifecycle.service import department_id, installed_models
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
    row["department_id"] = department_id(conn, answer.department or survey["department"])
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


Measure = Literal["nps", "enps", "csat", "ces"]
_SURVEYS = {  # measure: (survey kind, audience)
    "nps": ("nps", "customers"),
    "enps": ("nps", "employees"),
    "csat": ("csat", "customers"),
    "ces": ("ces", "customers"),
}


_NOT_SHOWN = ("responses", "total", "squares")  # sums shown as the score itself
# UNION ALL branches per statement: SQLite allows 500 (SQLITE_MAX_COMPOUND_SELECT).
_BRANCHES = 100


def _sql_sums(measure: Measure) -> list[Any]:
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


def _sums(measure: Measure, counts: Mapping[int, int]) -> dict[str, float]:
    """The same sums from how many answers gave each score, for queries that count
    answers per score: cheaper per answer when an index hands them over in that order."""
    if measure in ("nps", "enps"):
        return {
            "promoters": sum(n for s, n in counts.items() if s >= 9),
            "passives": sum(n for s, n in counts.items() if 7 <= s <= 8),
            "detractors": sum(n for s, n in counts.items() if s <= 6),
        }
    if measure == "csat":
        return {
            "satisfied": sum(n for s, n in counts.items() if s >= 4),
            "responses": sum(counts.values()),
        }
    return {
        "responses": sum(counts.values()),
        "total": sum(s * n for s, n in counts.items()),
        "squares": sum(s * s * n for s, n in counts.items()),
    }


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
    answers of customers matching every FIELD=VALUE, as the other reports' segments do.

    SQL counts the answers per group and score (one row each, never one per answer), and
    the scores are added up here: the same arithmetic on every engine."""
    kind, audience = _SURVEYS[measure]
    if survey_id is not None:
        survey = get_survey(conn, survey_id)
        if (survey["kind"], survey["audience"]) != (kind, audience):
            raise ValueError(f"survey: not a {kind} survey of {audience}")
    if by == "segment" and (not segment or not _FIELD_NAME.match(segment)):
        raise ValueError(
            "segment: name the customer field or trait to group by "
            "(channel, country, income_band, a trait …)"
        )
    if by is None and segment is not None:
        raise ValueError("segment: only with --by segment")
    if segment is not None:
        check_field(conn, segment, "segment")
    low, high = SCALES[kind]
    start, end = as_utc(start), as_utc(end)
    scores: list[Any] = [literal_column(str(s)) for s in range(low, high + 1)]
    kept: list[Any] = [responses_t.c.score.in_(scores)]
    if where:
        members = select(customers_t.c.id).where(*segment_conditions(where))
        kept.append(responses_t.c.customer_id.in_(members))
    if start is not None:
        kept.append(responses_t.c.submitted_at >= start)
    if end is not None:
        kept.append(responses_t.c.submitted_at < end)
    ids, span = _surveys_read(conn, kind, audience, survey_id, span=by == "month")
    names = list(_sums(measure, {}))
    grouped: dict[Any, dict[str, float]] = {}
    totals = dict.fromkeys(names, 0.0)
    if ids:
        if by == "month":
            counted = _counted_by_month(conn, measure, ids, kept, span, start, end, zone)
        else:
            counted = _counted(conn, measure, ids, kept, by, segment)
        for label, sums in counted:
            mine = grouped.setdefault(label, dict.fromkeys(names, 0.0))
            for name in names:
                mine[name] += sums[name]
                totals[name] += sums[name]
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


def _surveys_read(
    conn: Connection, kind: str, audience: str, survey_id: int | None, *, span: bool
) -> tuple[list[int], tuple[datetime, datetime] | None]:
    """The surveys a score reads and, for months, when their first and last answers came:
    an index seek per survey, so the months to count are known before any answer is read."""
    found = select(surveys_t.c.id).where(surveys_t.c.kind == kind, surveys_t.c.audience == audience)
    if survey_id is not None:
        found = found.where(surveys_t.c.id == survey_id)
    if span:
        mine = responses_t.c.survey_id == surveys_t.c.id
        found = found.add_columns(
            select(func.min(responses_t.c.submitted_at)).where(mine).scalar_subquery(),
            select(func.max(responses_t.c.submitted_at)).where(mine).scalar_subquery(),
        )
    rows = conn.execute(found).all()
    ids = [int(row[0]) for row in rows]
    firsts = [moment for row in rows if (moment := as_utc(row[1] if span else None))]
    lasts = [moment for row in rows if (moment := as_utc(row[2] if span else None))]
    return ids, (min(firsts), max(lasts)) if firsts and lasts else None


def _counted(
    conn: Connection,
    measure: Measure,
    ids: list[int],
    where: list[Any],
    by: ScoreGroupBy | None,
    segment: str | None,
) -> Iterator[tuple[Any, dict[str, float]]]:
    """(group, its sums) for the whole report or per touchpoint, stage, department or
    customer segment. Touchpoints are counted per score, which an index on (touchpoint,
    score, survey_id, submitted_at) hands over in order; the others add up in SQL."""
    r = responses_t.c
    source: Any = responses_t
    keys: list[Any] = []
    if by == "touchpoint":
        keys = [r.touchpoint]
    elif by == "stage":
        keys = [r.stage_model, r.stage]
    elif by == "department":
        source = responses_t.outerjoin(departments_t, departments_t.c.id == r.department_id)
        keys = [departments_t.c.name]
    elif by == "segment" and segment is not None:
        source = responses_t.join(customers_t, customers_t.c.id == r.customer_id)
        keys = [
            customers_t.c[segment]
            if segment in FILTER_FIELDS
            else customers_t.c.traits[segment].as_string()
        ]
    surveys: Any = r.survey_id
    if conn.dialect.name == "sqlite":
        # SQLite keeps no statistics here and would otherwise read every answer through
        # the (survey_id, submitted_at) index, a table look-up each: a unary + leaves it
        # a single pass over the table, or over a covering index that starts with the key.
        surveys = UnaryExpression(r.survey_id, operator=custom_op("+"), type_=r.survey_id.type)
    per_score = by == "touchpoint"
    sums = [r.score, func.count().label("answers")] if per_score else _sql_sums(measure)
    query = (
        select(*keys, *sums)
        .select_from(source)
        .where(surveys.in_([literal_column(str(i)) for i in ids]), *where)
        .group_by(*keys, *([r.score] if per_score else []))
    )
    for row in conn.execute(query):
        if by == "stage":
            model, stage = row[0], row[1]
            label = None if model is None or stage is None else f"{model}:{stage}"
        else:
            label = None if by is None else row[0]
        if per_score:
            yield label, _sums(measure, {int(row.score): int(row.answers)})
        else:
            yield label, {c.name: float(row._mapping[c.name]) for c in sums}


def _counted_by_month(
    conn: Connection,
    measure: Measure,
    ids: list[int],
    where: list[Any],
    span: tuple[datetime, datetime] | None,
    start: datetime | None,
    end: datetime | None,
    zone: ZoneInfo,
) -> Iterator[tuple[str, dict[str, float]]]:
    """(month, its sums), months in the zone. The instants where the month changes
    are worked out here (daylight saving included), so SQL only compares each answer's
    time with them: PostgreSQL by ``width_bucket`` in one pass; SQLite by one range per
    month, which an index on (survey_id, score, submitted_at) answers without a sort."""
    if span is None:
        return
    first = span[0] if start is None else max(span[0], start)
    last = span[1] if end is None else min(span[1], end)
    edges = _month_edges(first, max(first, last), zone)
    r = responses_t.c
    surveys = r.survey_id.in_([literal_column(str(i)) for i in ids])
    if conn.dialect.name == "postgresql":
        bucket = func.width_bucket(
            r.submitted_at,
            bindparam("edges", [e for e, _ in edges[1:]], type_=ARRAY(DateTime(timezone=True))),
        )
        query = (
            select(bucket.label("bucket"), r.score, func.count().label("answers"))
            .where(surveys, *where)
            .group_by(literal_column("bucket"), r.score)
        )
        for row in conn.execute(query):
            yield edges[row.bucket][1], _sums(measure, {int(row.score): int(row.answers)})
        return
    branches = []
    for i, (edge, _) in enumerate(edges):
        bounds = [] if i == 0 else [r.submitted_at >= edge]  # the first: from ``start``
        if i + 1 < len(edges):
            bounds.append(r.submitted_at < edges[i + 1][0])  # the last: until ``end``
        counted = [r.survey_id, r.score, func.count().label("answers")]
        branches.append(
            select(literal_column(str(i)).label("bucket"), *counted)
            .where(surveys, *where, *bounds)
            .group_by(r.survey_id, r.score)
        )
    for offset in range(0, len(branches), _BRANCHES):
        for row in conn.execute(union_all(*branches[offset : offset + _BRANCHES])):
            yield edges[row.bucket][1], _sums(measure, {int(row.score): int(row.answers)})


def _month_edges(first: datetime, last: datetime, zone: ZoneInfo) -> list[tuple[datetime, str]]:
    """The UTC instants from which the month in the zone is a new one, each with that
    month, from ``first`` (with its own month) up to ``last``: exactly the months
    ``_month`` gives every instant in between. A local midnight on the 1st that daylight
    saving skips or repeats is not where the month changes; the change of offset is, and
    the edges then include it."""
    points = {first}
    year, month = (int(part) for part in _month(first, zone).split("-"))
    final = tuple(int(part) for part in _month(last, zone).split("-"))
    while (year, month) <= final:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        starts = {
            datetime(year, month, 1, fold=fold, tzinfo=zone).astimezone(UTC) for fold in (0, 1)
        }
        if len(starts) == 2:
            points.add(_offset_change(min(starts), max(starts), zone))
        points.update(starts)
    edges: list[tuple[datetime, str]] = []
    for point in sorted(p for p in points if first <= p <= last):
        label = _month(point, zone)
        if not edges or edges[-1][1] != label:
            edges.append((point, label))
    return edges


def _offset_change(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after ``before`` with another UTC offset, to the microsecond."""
    offset = before.astimezone(zone).utcoffset()
    if after.astimezone(zone).utcoffset() == offset:
        return after
    while after - before > timedelta(microseconds=1):
        middle = before + (after - before) / 2
        if middle.astimezone(zone).utcoffset() == offset:
            before = middle
        else:
            after = middle
    return after


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
    """The half-open range of whole days ``first``..``last`` (both included) in the zone,
    as UTC instants: SQLite keeps times as UTC text, so a zone's wall time would compare
    wrong there by the zone's offset."""
    check_day(first, "from")
    check_day(last, "to")
    if first is not None and last is not None and last < first:
        raise ValueError("to: must not be before from")
    start = datetime.combine(first, time(), zone) if first else None
    end = datetime.combine(last + timedelta(days=1), time(), zone) if last else None
    return as_utc(start), as_utc(end)


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


# -- for the web app's feedback pages: the distribution beside a score, comments a page at a
# time, and how many answers each survey has ---------------------------------------------


def _answer_filters(
    start: datetime | None, end: datetime | None, where: Mapping[str, str] | None
) -> list[Any]:
    kept: list[Any] = []
    if where:
        members = select(customers_t.c.id).where(*segment_conditions(where))
        kept.append(responses_t.c.customer_id.in_(members))
    if start is not None:
        kept.append(responses_t.c.submitted_at >= as_utc(start))
    if end is not None:
        kept.append(responses_t.c.submitted_at < as_utc(end))
    return kept


def answer_counts(
    conn: Connection,
    *,
    measure: Measure | None = None,
    survey_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    where: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """How many answers gave each score (or choice), every point of the scale listed even
    when nobody gave it: ``[{"answer", "responses"}]``. With a ``measure`` it reads the
    answers ``score_report`` reads for the same arguments, so the bars add up to its count;
    without one, ``survey_id`` names the survey (a custom one, say)."""
    r = responses_t.c
    choices: list[str] | None = None
    if measure is not None:
        kind, audience = _SURVEYS[measure]
        ids, _span = _surveys_read(conn, kind, audience, survey_id, span=False)
        low, high = SCALES[kind]
        scale: tuple[int, int] | None = (low, high)
    elif survey_id is not None:
        survey = get_survey(conn, survey_id)
        ids = [survey_id]
        scale = None if survey["scale"] is None else (survey["scale"][0], survey["scale"][1])
        choices = survey["choices"]
    else:
        raise ValueError("survey: name a measure or a survey")
    kept = _answer_filters(start, end, where)
    if scale is not None:
        kept.append(r.score.in_([literal_column(str(s)) for s in range(scale[0], scale[1] + 1)]))
    counted: dict[Any, int] = {}
    if ids:
        answer = r.score if scale is not None else r.choice
        query = (
            select(answer.label("answer"), func.count().label("answers"))
            .where(r.survey_id.in_([literal_column(str(i)) for i in ids]), *kept)
            .group_by(answer)
        )
        for row in conn.execute(query):
            key = int(row.answer) if scale is not None else row.answer
            counted[key] = counted.get(key, 0) + int(row.answers)
    values: list[Any] = (
        list(range(scale[0], scale[1] + 1)) if scale is not None else list(choices or [])
    )
    values += sorted((k for k in counted if k not in values), key=str)
    return [{"answer": v, "responses": counted.get(v, 0)} for v in values]


def list_comments(
    conn: Connection,
    *,
    survey_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    where: Mapping[str, str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """Comments newest first, a page at a time, each with its sentiment (-1 to +1), score,
    survey and place in the journey: ``{"total", "comments": [...]}``."""
    if not 1 <= limit <= 500:
        raise ValueError(f"limit: give 1 to 500, not {limit}")
    if offset < 0:
        raise ValueError(f"offset: give 0 or more, not {offset}")
    r = responses_t.c
    kept = [r.comment.is_not(None), *_answer_filters(start, end, where)]
    if survey_id is not None:
        get_survey(conn, survey_id)
        kept.append(r.survey_id == survey_id)
    total = conn.execute(select(func.count()).select_from(responses_t).where(*kept)).scalar_one()
    query = (
        select(
            r.id,
            r.survey_id,
            surveys_t.c.name.label("survey"),
            surveys_t.c.kind,
            r.score,
            r.choice,
            r.comment,
            r.sentiment,
            r.touchpoint,
            r.stage_model,
            r.stage,
            r.customer_id,
            r.submitted_at,
        )
        .select_from(responses_t.join(surveys_t, surveys_t.c.id == r.survey_id))
        .where(*kept)
        .order_by(r.submitted_at.desc(), r.id.desc())
        .limit(limit)
        .offset(offset)
    )
    comments = [
        {
            "id": int(row.id),
            "survey_id": int(row.survey_id),
            "survey": row.survey,
            "kind": row.kind,
            "score": row.score,
            "choice": row.choice,
            "comment": row.comment,
            "sentiment": row.sentiment,
            "touchpoint": row.touchpoint,
            "stage": f"{row.stage_model}:{row.stage}" if row.stage_model else None,
            "customer_id": row.customer_id,
            "submitted_at": as_utc(row.submitted_at),
        }
        for row in conn.execute(query)
    ]
    return {"total": int(total), "comments": comments}


def answers_per_survey(
    conn: Connection, *, start: datetime | None = None, end: datetime | None = None
) -> dict[int, int]:
    """How many answers each survey has (surveys without any left out)."""
    query = (
        select(responses_t.c.survey_id, func.count())
        .where(*_answer_filters(start, end, None))
        .group_by(responses_t.c.survey_id)
    )
    return {int(survey): int(n) for survey, n in conn.execute(query)}


def touchpoints_by_stage(
    conn: Connection,
    model_key: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    where: Mapping[str, str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Per stage of a model, the touchpoints customers answered surveys at while in it,
    most answered first: ``{stage: [{"touchpoint", "responses"}]}``. A journey map puts
    each touchpoint's score in the stage it happens in; the score itself stays
    ``score_report(by="touchpoint")``'s. One grouped count, customer surveys only."""
    r = responses_t.c
    kept: list[Any] = [
        r.stage_model == model_key,
        r.stage.is_not(None),
        r.touchpoint.is_not(None),
        surveys_t.c.audience == "customers",
    ]
    if where:
        kept.append(r.customer_id.in_(select(customers_t.c.id).where(*segment_conditions(where))))
    if start is not None:
        kept.append(r.submitted_at >= as_utc(start))
    if end is not None:
        kept.append(r.submitted_at < as_utc(end))
    query = (
        select(r.stage, r.touchpoint, func.count().label("answers"))
        .select_from(responses_t.join(surveys_t, surveys_t.c.id == r.survey_id))
        .where(*kept)
        .group_by(r.stage, r.touchpoint)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(query):
        found.setdefault(str(row.stage), []).append(
            {"touchpoint": row.touchpoint, "responses": int(row.answers)}
        )
    for items in found.values():
        items.sort(key=lambda item: (-item["responses"], str(item["touchpoint"])))
    return found


def stage_scores(
    conn: Connection,
    model_key: str,
    *,
    zone: ZoneInfo,
    start: datetime | None,
    end: datetime | None,
    where: dict[str, str],
) -> dict[str, dict[str, Any]]:
    """NPS and CSAT per stage of one model, as ``GET /api/v1/feedback/{m}?by=stage``
    reports them for all models: ``{stage: {"nps": group, "csat": group}}``, a stage
    without answers of a measure lacking its key."""
    out: dict[str, dict[str, Any]] = {}
    measures: tuple[Measure, ...] = ("nps", "csat")
    for measure in measures:
        found = score_report(
            conn, measure, by="stage", zone=zone, start=start, end=end, where=where
        )
        prefix = f"{model_key}:"
        for group in found["groups"]:
            key = group["key"]
            if isinstance(key, str) and key.startswith(prefix):
                out.setdefault(key[len(prefix) :], {})[measure] = group
    return out
