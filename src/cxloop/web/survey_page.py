"""The public survey page ``/s/{token}`` and the in-app survey endpoints.

The page is plain HTML with a form: it works without JavaScript and without signing in
(the single-use token is the credential), on a phone as on a desktop. Everything the
customer typed is shown back escaped (Jinja's autoescape). The in-app endpoints let an
app holding a write key fetch a known customer's pending survey and answer it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from cxloop.customers.service import resolve_customer_id
from cxloop.feedback.invites import (
    InviteRefused,
    answer_invite,
    open_invite,
    pending_for,
    reissue_token,
)
from cxloop.feedback.responses import MAX_COMMENT, ResponseIn
from cxloop.feedback.surveys import get_survey
from cxloop.service.followups import scan_detractors
from cxloop.web.errors import NUL_REASON, ApiError, refuse_nul
from cxloop.web.state import ServerState, basic_user, state_of
from cxloop.web.state import written as _written

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
router = APIRouter(tags=["survey page"])
ENDS = {
    "nps": ("Not at all likely", "Extremely likely"),
    "csat": ("Very unsatisfied", "Very satisfied"),
    "ces": ("Very difficult", "Very easy"),
}
REFUSED_HEADINGS = {
    404: "Link not found",
    409: "Thank you, already answered",
    410: "This link has expired",
}


def _message(request: Request, status: int, heading: str, message: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "survey_message.html",
        {"heading": heading, "message": message},
        status_code=status,
    )


def _refused(request: Request, exc: InviteRefused) -> HTMLResponse:
    heading = REFUSED_HEADINGS.get(exc.status, "Survey unavailable")
    extra = {
        409: " Each link takes one answer: yours is safely recorded.",
        410: " Thank you for wanting to help all the same.",
    }.get(exc.status, "")
    return _message(request, exc.status, heading, exc.message + extra)


def _form(
    request: Request,
    token: str,
    invite: dict[str, Any],
    *,
    chosen: int | str | None = None,
    comment: str = "",
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    survey = invite["survey"]
    context = {
        "survey": survey,
        "token": token,
        "chosen": chosen,
        "comment": comment,
        "errors": errors or {},
        "ends": ENDS.get(survey["kind"]),
        "max_comment": MAX_COMMENT,
        "expires": invite["expires_at"][:10],
    }
    return templates.TemplateResponse(request, "survey.html", context, status_code=status)


@router.get("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
def survey_page(request: Request, token: str, score: int | None = None) -> HTMLResponse:
    state = state_of(request)
    with state.project.engine.connect() as conn:
        try:
            invite = open_invite(conn, token)
        except InviteRefused as exc:
            return _refused(request, exc)
    return _form(request, token, invite, chosen=score)


@router.post("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
async def submit(
    request: Request,
    token: str,
    score: Annotated[str | None, Form()] = None,
    choice: Annotated[str | None, Form()] = None,
    comment: Annotated[str, Form()] = "",
) -> HTMLResponse:
    state = state_of(request)
    chosen: int | str | None = choice
    number: int | None = None
    if score is not None:
        try:
            number = int(score)
        except ValueError:
            number = None
        chosen = number
    answer = ResponseIn(score=number, choice=choice, comment=comment)

    def write(conn: Connection) -> dict[str, Any]:
        response = answer_invite(conn, token, answer, source="page")
        scan_detractors(conn)
        return response

    try:
        if score is not None and number is None:
            raise ValueError("score: choose one of the numbers")
        if "\x00" in comment:  # PostgreSQL cannot keep it
            raise ValueError(f"comment: {NUL_REASON}")
        await _written(state, write)
    except InviteRefused as exc:
        return _refused(request, exc)
    except (ValueError, LookupError) as exc:
        field, _, reason = str(exc).partition(": ")
        with state.project.engine.connect() as conn:
            try:
                invite = open_invite(conn, token)
            except InviteRefused as refused:
                return _refused(request, refused)
        key = field if field in ("score", "choice", "comment") else "form"
        return _form(
            request,
            token,
            invite,
            chosen=chosen,
            comment=comment,
            errors={key: reason or str(exc)},
            status=422,
        )
    return _message(request, 200, "Thank you!", "Your answer has been recorded.")


# -- in-app ------------------------------------------------------------------------------


def _write_key(request: Request) -> ServerState:
    state = state_of(request)
    key = basic_user(request.headers.get("authorization"))
    if not key or state.check_key(key, "write") is None:
        raise ApiError(401, "unauthorized", "a valid write key is required (HTTP basic user)")
    return state


class InAppAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(max_length=200)
    score: float | None = None
    choice: str | None = Field(default=None, max_length=200)
    comment: str | None = None


@router.get("/v1/surveys/pending", tags=["in-app surveys"], dependencies=[Depends(refuse_nul)])
async def pending(
    request: Request,
    user_id: Annotated[str, Query(alias="userId", max_length=400)],
) -> dict[str, Any]:
    """The survey waiting for a known customer in the app (``{"survey": null}`` if none),
    with a fresh ``token`` that answers it at ``POST /v1/surveys/answer`` (fetching again
    replaces the token: only the newest one answers). Write key as HTTP basic user."""
    state = _write_key(request)

    def write(conn: Connection) -> dict[str, Any]:
        customer_id = resolve_customer_id(conn, user_id)
        invite = pending_for(conn, customer_id)
        if invite is None:
            return {"survey": None}
        return {
            "survey": get_survey(conn, invite["survey_id"]),
            "invite_id": invite["id"],
            "token": reissue_token(conn, invite["id"]),
            "expires_at": invite["expires_at"],
            "answer_url": "/v1/surveys/answer",
        }

    return await _written(state, write)


@router.post("/v1/surveys/answer", tags=["in-app surveys"], dependencies=[Depends(refuse_nul)])
async def answer(request: Request, body: InAppAnswer) -> dict[str, Any]:
    """Answer an in-app survey with the token ``/v1/surveys/pending`` gave."""
    state = _write_key(request)

    def write(conn: Connection) -> dict[str, Any]:
        response = answer_invite(
            conn,
            body.token,
            ResponseIn(score=body.score, choice=body.choice, comment=body.comment),
            source="in_app",
        )
        scan_detractors(conn)
        return response

    try:
        return await _written(state, write)
    except InviteRefused as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
