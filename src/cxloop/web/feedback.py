"""REST API for surveys. Writes run on the ingestion applier thread, the one writer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

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
