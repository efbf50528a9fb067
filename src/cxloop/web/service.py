"""REST API for closing the loop: survey distribution (invites, triggers), support cases,
follow-ups, notes, the unified timeline and the job queue. Writes run on the ingestion
applier thread, the one writer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from cxloop.customers.service import resolve_customer_id
from cxloop.domain.values import MAX_INT, utc_within
from cxloop.feedback.invites import create_invite
from cxloop.feedback.triggers import TriggerIn, create_trigger, list_triggers, set_active
from cxloop.service import cases, followups
from cxloop.service.timeline import KINDS, NoteIn, add_note, timeline
from cxloop.store import jobs
from cxloop.web.auth import Admin, Analyst, Caller, Who
from cxloop.web.errors import ApiError, refuse_nul
from cxloop.web.state import written as _written

router = APIRouter(prefix="/api/v1", tags=["closing the loop"], dependencies=[Depends(refuse_nul)])
Limit = Annotated[int, Query(ge=1, le=1000)]
# Past MAX_INT no row can be reached and the database drivers refuse the number.
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]
Id = Annotated[int, Path(ge=1, le=MAX_INT)]


class InviteRequest(BaseModel):
    """A single-use link to a survey, for a known customer or anyone."""

    model_config = ConfigDict(extra="forbid")

    customer: str | None = Field(default=None, max_length=320)
    expires_days: int = Field(default=14, ge=1, le=365)
    channel: Literal["link", "in_app"] = Field(
        default="link", description="link or in_app (e-mails are sent by triggers)"
    )
    touchpoint: str | None = Field(default=None, max_length=200)


@router.post("/surveys/{survey_id}/invites", status_code=201)
async def invite(state: Analyst, survey_id: Id, body: InviteRequest) -> dict[str, Any]:
    """Create a link; the ``url`` (with its token) is shown only in this answer."""
    base = state.project.settings.effective_public_url

    def write(conn: Any) -> dict[str, Any]:
        customer_id = None if body.customer is None else resolve_customer_id(conn, body.customer)
        found, token = create_invite(
            conn,
            survey_id,
            channel=body.channel,
            customer_id=customer_id,
            expires_days=body.expires_days,
            touchpoint=body.touchpoint,
        )
        return {**found, "token": token, "url": f"{base}/s/{token}"}

    return await _written(state, write)


@router.get("/survey-triggers")
def triggers(state: Caller) -> list[dict[str, Any]]:
    with state.project.engine.connect() as conn:
        return list_triggers(conn)


@router.post("/survey-triggers", status_code=201)
async def add_trigger(state: Admin, body: TriggerIn) -> dict[str, Any]:
    """Send a survey some time after an event, a stage entry or a resolved case."""
    return await _written(state, lambda conn: create_trigger(conn, body))


class TriggerPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: bool


@router.patch("/survey-triggers/{trigger_id}")
async def patch_trigger(state: Admin, trigger_id: Id, body: TriggerPatch) -> dict[str, Any]:
    return await _written(state, lambda conn: set_active(conn, trigger_id, body.active))


# -- cases ---------------------------------------------------------------------------------


@router.post("/cases", status_code=201)
async def open_case(state: Caller, who: Who, body: cases.CaseIn) -> dict[str, Any]:
    body = _own_department(who, body)
    return await _written(state, lambda conn: cases.open_case(conn, body, source="api"))


BodyT = TypeVar("BodyT", cases.CaseIn, followups.FollowUpIn)


def _own_department(who: Who, body: BodyT) -> BodyT:
    """A member's new case or follow-up goes to its department unless it names one,
    which must then be its own."""
    if body.department is None and not who.at_least("analyst"):
        body = body.model_copy(update={"department": who.department})
    who.check_may_work(body.department)
    return body


@router.get("/cases")
def list_cases(
    state: Caller,
    department: str | None = None,
    status: str | None = None,
    customer: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    with state.project.engine.connect() as conn:
        who = None if customer is None else resolve_customer_id(conn, customer)
        return cases.list_cases(
            conn, department=department, status=status, customer_id=who, limit=limit, offset=offset
        )


@router.get("/cases/metrics")
def case_metrics(state: Caller) -> dict[str, Any]:
    """Cases per stage, times to first response and resolution, positive-resolution rate,
    and NPS and churn after a case against without."""
    with state.project.engine.connect() as conn:
        return cases.case_metrics(conn)


@router.get("/cases/{case_id}")
def get_case(state: Caller, case_id: Id) -> dict[str, Any]:
    with state.project.engine.connect() as conn:
        return cases.get_case(conn, case_id)


@router.patch("/cases/{case_id}")
async def update_case(
    state: Caller, who: Who, case_id: Id, body: cases.CaseUpdate
) -> dict[str, Any]:
    """Assign, record the first response, resolve with an outcome and a note."""

    def write(conn: Any) -> dict[str, Any]:
        who.check_may_work(cases.get_case(conn, case_id)["department"])
        return cases.update_case(conn, case_id, body)

    return await _written(state, write)


# -- follow-ups ----------------------------------------------------------------------------


@router.get("/followups")
def list_followups(
    state: Caller,
    department: str | None = None,
    status: str | None = None,
    reason: str | None = None,
    overdue: bool = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Follow-ups, earliest due first."""
    with state.project.engine.connect() as conn:
        return followups.list_followups(
            conn,
            department=department,
            status=status,
            reason=reason,
            overdue=overdue,
            limit=limit,
            offset=offset,
        )


@router.post("/followups", status_code=201)
async def add_followup(state: Caller, who: Who, body: followups.FollowUpIn) -> dict[str, Any]:
    body = _own_department(who, body)
    return await _written(state, lambda conn: followups.create_followup(conn, body))


@router.get("/followups/metrics")
def followup_metrics(state: Caller) -> dict[str, Any]:
    """Share of detractors followed up, median time to close, overdue count."""
    with state.project.engine.connect() as conn:
        return followups.followup_metrics(conn)


@router.get("/followups/{followup_id}")
def get_followup(state: Caller, followup_id: Id) -> dict[str, Any]:
    with state.project.engine.connect() as conn:
        return followups.get_followup(conn, followup_id)


@router.patch("/followups/{followup_id}")
async def update_followup(
    state: Caller, who: Who, followup_id: Id, body: followups.FollowUpUpdate
) -> dict[str, Any]:
    """Change status (open, in_progress, done: needs a resolution note) or assignee."""

    def write(conn: Any) -> dict[str, Any]:
        who.check_may_work(followups.get_followup(conn, followup_id)["department"])
        return followups.update_followup(conn, followup_id, body)

    return await _written(state, write)


# -- timeline and notes --------------------------------------------------------------------


@router.get("/customers/{ref}/timeline")
def customer_timeline(
    state: Caller,
    ref: str,
    before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    kinds: Annotated[str | None, Query(description=f"comma-separated: {', '.join(KINDS)}")] = None,
) -> dict[str, Any]:
    """Events, stage changes, survey responses, cases, follow-ups and notes, newest first;
    ``next_before`` pages back."""
    chosen = KINDS if not kinds else tuple(k.strip() for k in kinds.split(",") if k.strip())
    with state.project.engine.connect() as conn:
        return timeline(
            conn,
            state.project.events,
            ref,
            before=utc_within(before, "before"),
            limit=limit,
            kinds=chosen,
        )


@router.post("/customers/{ref}/notes", status_code=201)
async def note(state: Caller, ref: str, body: NoteIn) -> dict[str, Any]:
    """A note for the customer's timeline, from any department."""
    return await _written(state, lambda conn: add_note(conn, ref, body))


# -- jobs ----------------------------------------------------------------------------------


@router.get("/jobs")
def list_jobs(
    state: Caller, status: str | None = None, kind: str | None = None, limit: Limit = 100
) -> dict[str, Any]:
    """The job queue: counts per status and the newest jobs (failed ones with their error)."""
    with state.project.engine.connect() as conn:
        return {
            "counts": jobs.counts(conn),
            "jobs": jobs.list_jobs(conn, status=status, kind=kind, limit=limit),
        }


@router.post("/jobs/{job_id}/retry")
async def retry_job(state: Admin, job_id: Id) -> dict[str, Any]:
    before = await _written(state, lambda conn: {"status": jobs.retry(conn, job_id)})
    if before["status"] is None:
        raise ApiError(404, "not_found", f"job: no job with id {job_id}", field="job")
    if before["status"] != "failed":
        raise ApiError(
            409,
            "conflict",
            f"job: only a failed job can be retried; it is {before['status']}",
            field="job",
        )
    return {"id": job_id, "status": "queued"}
