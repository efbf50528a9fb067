"""REST API for surveys. Writes run on the ingestion applier thread, the one writer."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query

from cxloop.feedback.responses import (
    GroupBy,
    Measure,
    ResponseIn,
    days_window,
    enps_beside_stages,
    record_response,
    score_report,
)
from cxloop.feedback.surveys import SurveyIn, create_survey, get_survey, list_surveys
from cxloop.web.api import Secret

router = APIRouter(prefix="/api/v1", tags=["feedback"])


@router.post("/surveys", status_code=201)
async def create(state: Secret, body: SurveyIn) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        with state.project.engine.begin() as conn:
            return create_survey(conn, body)

    return await state.writer.call(run)


@router.get("/surveys")
def surveys(state: Secret) -> list[dict[str, Any]]:
    with state.project.engine.connect() as conn:
        return list_surveys(conn)


@router.get("/surveys/{survey_id}")
def survey(state: Secret, survey_id: int) -> dict[str, Any]:
    with state.project.engine.connect() as conn:
        return get_survey(conn, survey_id)


@router.post("/surveys/{survey_id}/responses", status_code=201)
async def respond(state: Secret, survey_id: int, body: ResponseIn) -> dict[str, Any]:
    """Record an answer given elsewhere (in an app, by an agent)."""

    def run() -> dict[str, Any]:
        with state.project.engine.begin() as conn:
            return record_response(conn, survey_id, body)

    return await state.writer.call(run)


@router.get("/feedback/enps/departments")
def enps_departments(
    state: Secret,
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
    state: Secret,
    measure: Measure,
    survey: Annotated[int | None, Query(description="One survey's id")] = None,
    by: Annotated[GroupBy | None, Query(description="touchpoint, stage, department or month")] = (
        None
    ),
    start: Annotated[date | None, Query(alias="from", description="First day (inclusive)")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day (inclusive)")] = None,
) -> dict[str, Any]:
    """NPS (customers), eNPS (employees), CSAT or CES with its 95% margin of error, overall
    and per group."""
    zone = state.project.settings.zone
    with state.project.engine.connect() as conn:
        first, last = days_window(start, end, zone)
        return score_report(conn, measure, survey_id=survey, by=by, zone=zone,
                            start=first, end=last)  # fmt: skip
