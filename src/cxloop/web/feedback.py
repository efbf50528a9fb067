"""REST API for surveys. Writes run on the ingestion applier thread, the one writer."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import Connection

from cxloop.domain.values import MAX_INT, parse_pairs
from cxloop.feedback.benchmarks import BenchmarkIn, list_benchmarks, save_benchmark
from cxloop.feedback.responses import (
    GroupBy,
    Measure,
    ResponseIn,
    ScoreGroupBy,
    comments_report,
    days_window,
    enps_beside_stages,
    record_response,
    score_report,
)
from cxloop.feedback.surveys import (
    SurveyIn,
    SurveyUpdate,
    create_survey,
    get_survey,
    list_surveys,
    update_survey,
)
from cxloop.feedback.themes import MAX_TOP, ThemesBy, themes_report
from cxloop.service.followups import scan_detractors
from cxloop.web.auth import Admin, Analyst, Caller
from cxloop.web.errors import refuse_nul
from cxloop.web.state import written as _written

router = APIRouter(prefix="/api/v1", tags=["feedback"], dependencies=[Depends(refuse_nul)])
# Ids past MAX_INT name no record and the database drivers refuse them.
SurveyId = Annotated[int, Path(ge=1, le=MAX_INT)]


@router.post("/surveys", status_code=201)
async def create(state: Analyst, body: SurveyIn) -> dict[str, Any]:
    return await _written(state, lambda conn: create_survey(conn, body))


@router.get("/surveys")
def surveys(state: Caller) -> list[dict[str, Any]]:
    with state.project.engine.connect() as conn:
        return list_surveys(conn)


@router.get("/surveys/{survey_id}")
def survey(state: Caller, survey_id: SurveyId) -> dict[str, Any]:
    with state.project.engine.connect() as conn:
        return get_survey(conn, survey_id)


@router.patch("/surveys/{survey_id}")
async def change(state: Analyst, survey_id: SurveyId, body: SurveyUpdate) -> dict[str, Any]:
    """Rename, reword, or tie to another stage or touchpoint (null: none). Answers given
    before keep the stage and touchpoint they had."""
    return await _written(state, lambda conn: update_survey(conn, survey_id, body))


@router.post("/surveys/{survey_id}/responses", status_code=201)
async def respond(state: Analyst, survey_id: SurveyId, body: ResponseIn) -> dict[str, Any]:
    """Record an answer given elsewhere (in an app, by an agent)."""

    def write(conn: Connection) -> dict[str, Any]:
        response = record_response(conn, survey_id, body)
        scan_detractors(conn)  # a detractor is someone's task at once
        return response

    return await _written(state, write)


@router.get("/feedback/benchmarks")
def benchmarks(state: Caller, measure: str | None = None) -> list[dict[str, Any]]:
    """Published scores to read ours against (cxloop ships none)."""
    with state.project.engine.connect() as conn:
        return list_benchmarks(conn, measure)


@router.post("/feedback/benchmarks", status_code=201)
async def add_benchmark(state: Admin, body: BenchmarkIn) -> dict[str, Any]:
    """Add a benchmark, or replace the one of the same measure, scope and name."""
    return await _written(state, lambda conn: save_benchmark(conn, body))


@router.get("/feedback/comments")
def comments(
    state: Caller,
    survey: Annotated[int | None, Query(ge=1, le=MAX_INT, description="One survey's id")] = None,
    by: Annotated[GroupBy | None, Query(description="touchpoint, stage, department or month")] = (
        None
    ),
    start: Annotated[date | None, Query(alias="from", description="First day (inclusive)")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day (inclusive)")] = None,
) -> dict[str, Any]:
    """Comments' sentiment overall, per NPS class and per group, with examples."""
    zone = state.project.settings.zone
    with state.project.engine.connect() as conn:
        first, last = days_window(start, end, zone)
        return comments_report(conn, survey_id=survey, by=by, zone=zone, start=first, end=last)


@router.get("/feedback/themes")
def themes(
    state: Caller,
    survey: Annotated[int | None, Query(ge=1, le=MAX_INT, description="One survey's id")] = None,
    by: Annotated[ThemesBy | None, Query(description="touchpoint or stage")] = None,
    start: Annotated[date | None, Query(alias="from", description="First day (inclusive)")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day (inclusive)")] = None,
    top: Annotated[int, Query(ge=1, le=MAX_TOP, description="Themes per group")] = 10,
) -> dict[str, Any]:
    """Recurring phrases of the comments overall and per group, ranked by how much more
    the group uses them, with counts, sentiment, score and recent examples."""
    zone = state.project.settings.zone
    with state.project.engine.connect() as conn:
        first, last = days_window(start, end, zone)
        return themes_report(conn, survey_id=survey, by=by, start=first, end=last, top=top)


@router.get("/feedback/enps/departments")
def enps_departments(
    state: Caller,
    start: Annotated[date | None, Query(alias="from", description="First day (inclusive)")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day (inclusive)")] = None,
) -> dict[str, Any]:
    """eNPS per department beside the customer NPS of the stages it owns, and their
    correlation across departments."""
    zone = state.project.settings.zone
    with state.project.engine.connect() as conn:
        first, last = days_window(start, end, zone)
        return enps_beside_stages(conn, zone=zone, start=first, end=last)


@router.get("/feedback/{measure}")
def score(
    state: Caller,
    measure: Measure,
    survey: Annotated[int | None, Query(ge=1, le=MAX_INT, description="One survey's id")] = None,
    by: Annotated[
        ScoreGroupBy | None,
        Query(description="touchpoint, stage, department, month or segment (with `segment`)"),
    ] = None,
    segment: Annotated[
        str | None, Query(description="by=segment: a customer field or trait (channel, country…)")
    ] = None,
    where: Annotated[
        list[str] | None, Query(description="only customers with FIELD=VALUE (repeatable)")
    ] = None,
    start: Annotated[date | None, Query(alias="from", description="First day (inclusive)")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day (inclusive)")] = None,
    benchmark: Annotated[
        int | None, Query(ge=1, le=MAX_INT, description="A benchmark's id to read against")
    ] = None,
) -> dict[str, Any]:
    """NPS (customers), eNPS (employees), CSAT or CES with its 95% margin of error, overall
    and per group."""
    zone = state.project.settings.zone
    with state.project.engine.connect() as conn:
        first, last = days_window(start, end, zone)
        return score_report(
            conn,
            measure,
            survey_id=survey,
            by=by,
            zone=zone,
            start=first,
            end=last,
            benchmark_id=benchmark,
            segment=segment,
            where=parse_pairs(where, "where"),
        )
