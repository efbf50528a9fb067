"""The feedback pages: customer NPS with its margin and where it differs (stage,
touchpoint, month), the score's distribution, what comments say (sentiment, themes),
employee eNPS beside the customer NPS of the stages each department owns; one survey's
results with single-use links to send it; and the form that creates a survey.

Scores come from ``score_report``, the function behind ``GET /api/v1/feedback/{measure}``,
called with the same window and segment, so a figure on the page is the API's figure.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import Connection

from cxloop.customers.service import resolve_customer_id
from cxloop.domain.values import MAX_INT
from cxloop.feedback.invites import create_invite
from cxloop.feedback.responses import (
    Measure,
    answer_counts,
    answers_per_survey,
    comments_report,
    enps_beside_stages,
    list_comments,
    score_report,
)
from cxloop.feedback.surveys import (
    AUDIENCES,
    KINDS,
    QUESTIONS,
    SurveyIn,
    SurveyUpdate,
    create_survey,
    get_survey,
    list_surveys,
    update_survey,
)
from cxloop.feedback.themes import themes_report
from cxloop.feedback.triggers import list_triggers
from cxloop.lifecycle.service import Conflict, NotFound, installed_models, list_departments
from cxloop.web.pages.base import PAGE_SIZE, Filters, Page, PageCtx
from cxloop.web.service import InviteRequest
from cxloop.web.state import written

router = APIRouter(include_in_schema=False)

# (survey kind, audience) -> the measure score_report reads them as
MEASURES: dict[tuple[str, str], Measure] = {
    ("nps", "customers"): "nps",
    ("nps", "employees"): "enps",
    ("csat", "customers"): "csat",
    ("ces", "customers"): "ces",
}
LABELS = {"nps": "NPS", "enps": "eNPS", "csat": "CSAT", "ces": "CES"}
GAUGE_RANGE = {"nps": (-100, 100), "enps": (-100, 100), "csat": (0, 100), "ces": (1, 7)}
GOOD, BAD, WARN, NEUTRAL, BRAND = "#1d7a3e", "#b00020", "#8a5a00", "#7b8794", "#0b5cad"


def record_id(value: int, what: str) -> int:
    """An id from the path, or the 404 page: past MAX_INT it names no record, and the
    database drivers would refuse it with an error instead."""
    if not 1 <= value <= MAX_INT:
        raise HTTPException(404, f"no {what} with id {value}")
    return value


# -- errors next to fields ---------------------------------------------------------------


def error_fields(exc: Exception, fields: set[str], fallback: str = "form") -> dict[str, str]:
    """Messages keyed by the form field they are about. Services say ``field: reason``;
    pydantic names the field in ``loc``; anything else goes to ``fallback``."""
    if isinstance(exc, ValidationError):
        out: dict[str, str] = {}
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            name = loc[0] if loc and loc[0] in fields else fallback
            reason = str(error["msg"]).removeprefix("Value error, ")
            out.setdefault(name, reason)
        return out
    text = str(exc.args[0]) if exc.args else str(exc)
    name, sep, reason = text.partition(": ")
    if sep and name in fields:
        return {name: reason}
    return {fallback: text}


# -- numbers for charts and tables ---------------------------------------------------------


def score_text(measure: str | None, value: float | None) -> str:
    """A score as people read it: NPS signed, CSAT in percent, CES with two decimals."""
    if value is None or measure is None:
        return "\u2013"
    if measure in ("nps", "enps"):
        return f"{value:+.1f}"
    if measure == "csat":
        return f"{value:.1f} %"
    return f"{value:.2f}"


def delay_text(minutes: int) -> str:
    """A trigger's delay as it was likely typed: 3 days, 24 h, 90 min."""
    if minutes == 0:
        return "at once"
    if minutes % 1440 == 0:
        return f"{minutes // 1440} d"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def gauge(measure: str, value: float | None, label: str) -> dict[str, Any]:
    low, high = GAUGE_RANGE[measure]
    span = high - low
    bands: list[list[Any]]
    if measure in ("nps", "enps"):
        bands = [[(0 - low) / span, BAD], [(30 - low) / span, WARN], [1, GOOD]]
    elif measure == "csat":
        bands = [[0.6, BAD], [0.8, WARN], [1, GOOD]]
    else:
        bands = [[(4 - low) / span, BAD], [(5.5 - low) / span, WARN], [1, GOOD]]
    return {
        "series": [
            {
                "type": "gauge",
                "min": low,
                "max": high,
                "startAngle": 200,
                "endAngle": -20,
                "radius": "95%",
                "axisLine": {"lineStyle": {"width": 14, "color": bands}},
                "pointer": {"width": 5},
                "axisTick": {"show": False},
                "splitLine": {"length": 10},
                "axisLabel": {"distance": 18, "fontSize": 11},
                "detail": {"valueAnimation": False, "fontSize": 26, "offsetCenter": [0, "55%"]},
                "title": {"offsetCenter": [0, "82%"]},
                "data": [{"value": None if value is None else round(value, 1), "name": label}],
            }
        ]
    }


def distribution_chart(measure: str | None, counts: list[dict[str, Any]]) -> dict[str, Any]:
    def colour(answer: Any) -> str:
        if measure in ("nps", "enps") and isinstance(answer, int):
            return GOOD if answer >= 9 else (WARN if answer >= 7 else BAD)
        return BRAND

    return {
        "grid": {"left": 40, "right": 10, "top": 20, "bottom": 30},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "category", "data": [str(c["answer"]) for c in counts]},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            {
                "type": "bar",
                "name": "Answers",
                "data": [
                    {"value": c["responses"], "itemStyle": {"color": colour(c["answer"])}}
                    for c in counts
                ],
            }
        ],
    }


def trend_chart(measure: str, groups: list[dict[str, Any]]) -> dict[str, Any]:
    label = LABELS[measure]
    return {
        "grid": {"left": 45, "right": 45, "top": 30, "bottom": 30},
        "tooltip": {"trigger": "axis"},
        "legend": {"data": [label, "Answers"], "top": 0},
        "xAxis": {"type": "category", "data": [g["key"] for g in groups]},
        "yAxis": [
            {"type": "value", "name": label, "scale": True},
            {"type": "value", "name": "Answers", "minInterval": 1, "splitLine": {"show": False}},
        ],
        "series": [
            {
                "type": "line",
                "name": label,
                "data": [g[measure] for g in groups],
                "itemStyle": {"color": BRAND},
            },
            {
                "type": "bar",
                "name": "Answers",
                "yAxisIndex": 1,
                "data": [g["responses"] for g in groups],
                "itemStyle": {"color": "#c9d3dd"},
            },
        ],
    }


def departments_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "grid": {"left": 45, "right": 10, "top": 30, "bottom": 60},
        "tooltip": {"trigger": "axis"},
        "legend": {"data": ["eNPS (employees)", "NPS (customers)"], "top": 0},
        "xAxis": {
            "type": "category",
            "data": [r["department"] or "none" for r in rows],
            "axisLabel": {"interval": 0, "rotate": 30},
        },
        "yAxis": {"type": "value", "min": -100, "max": 100},
        "series": [
            {
                "type": "bar",
                "name": "eNPS (employees)",
                "data": [r["enps"] for r in rows],
                "itemStyle": {"color": WARN},
            },
            {
                "type": "bar",
                "name": "NPS (customers)",
                "data": [r["customer_nps"] for r in rows],
                "itemStyle": {"color": BRAND},
            },
        ],
    }


def stage_names(conn: Connection) -> dict[str, str]:
    """``MODEL:STAGE`` -> the model's and the stage's names, as people know them."""
    return {
        f"{m.key}:{s.key}": f"{m.name} \u203a {s.name}"
        for m in installed_models(conn)
        for s in m.stages
    }


def _results(
    conn: Connection,
    measure: Measure,
    *,
    filters: Filters,
    page: Page,
    survey_id: int | None,
    by_stage: bool,
) -> dict[str, Any]:
    """The widgets of one measure: overall, distribution, months, touchpoints, stages."""
    start, end = filters.window(page.zone)
    common: dict[str, Any] = {"survey_id": survey_id, "start": start, "end": end}
    where = filters.where
    try:
        overall = score_report(conn, measure, zone=page.zone, where=where, **common)
    except ValueError as exc:  # a segment the customers table cannot be filtered by
        filters.errors["value"] = str(exc).partition(": ")[2] or str(exc)
        where = {}
        overall = score_report(conn, measure, zone=page.zone, **common)
    scored: dict[str, Any] = {"zone": page.zone, "where": where, **common}
    months = score_report(conn, measure, by="month", **scored)["groups"]
    touchpoints = score_report(conn, measure, by="touchpoint", **scored)["groups"]
    stages = score_report(conn, measure, by="stage", **scored)["groups"] if by_stage else []
    counts = answer_counts(conn, measure=measure, where=where, **common)
    return {
        "measure": measure,
        "label": LABELS[measure],
        "overall": overall,
        "months": months,
        "touchpoints": touchpoints,
        "stages": stages,
        "counts": counts,
        "where": where,
        "charts": {
            "gauge": gauge(measure, overall[measure], LABELS[measure]),
            "distribution": distribution_chart(measure, counts),
            "trend": trend_chart(measure, months),
        },
    }


def _offset(page: Page) -> int:
    text = page.request.query_params.get("offset", "0")
    return max(int(text), 0) if text.isdigit() else 0


def _comments(
    conn: Connection, page: Page, filters: Filters, where: dict[str, str], survey_id: int | None
) -> dict[str, Any]:
    start, end = filters.window(page.zone)
    offset = _offset(page)
    found = list_comments(
        conn,
        survey_id=survey_id,
        start=start,
        end=end,
        where=where,
        limit=PAGE_SIZE,
        offset=offset,
    )
    return {**found, "offset": offset, "limit": PAGE_SIZE}


# -- /feedback -----------------------------------------------------------------------------


@router.get("/feedback", response_class=HTMLResponse)
def feedback_page(page: PageCtx) -> HTMLResponse:
    filters = Filters.parse(page.request)
    start, end = filters.window(page.zone)
    with page.state.project.engine.connect() as conn:
        results = _results(conn, "nps", filters=filters, page=page, survey_id=None, by_stage=True)
        where = results["where"]
        others = {
            m: score_report(conn, m, start=start, end=end, zone=page.zone, where=where)
            for m in ("csat", "ces")
        }
        surveys = list_surveys(conn)
        answers = answers_per_survey(conn)
        comments = _comments(conn, page, filters, where, None)
        sentiment = comments_report(conn, start=start, end=end, zone=page.zone)
        themes = themes_report(conn, start=start, end=end, top=10, examples=1)
        enps = enps_beside_stages(conn, start=start, end=end, zone=page.zone)
        names = stage_names(conn)
    return page.render(
        "pages/feedback.html",
        filters=filters,
        r=results,
        others=others,
        surveys=surveys,
        answers=answers,
        comments=comments,
        sentiment=sentiment,
        themes=themes,
        enps=enps,
        enps_chart=departments_chart(enps["departments"]),
        stage_names=names,
        score_text=score_text,
        may_create=page.at_least("analyst"),
    )


# -- a new survey --------------------------------------------------------------------------

SURVEY_FIELDS = {
    "type", "name", "question", "stage", "touchpoint", "audience", "department",
    "ask_why", "scale", "choices",
}  # fmt: skip


def _survey_form(
    page: Page,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with page.state.project.engine.connect() as conn:
        models = installed_models(conn)
        departments = [d["name"] for d in list_departments(conn)]
    return page.render(
        "pages/feedback_new.html",
        status_code=status_code,
        values=values or {"type": "nps", "audience": "customers", "ask_why": True},
        errors=errors or {},
        kinds=KINDS,
        audiences=AUDIENCES,
        questions=QUESTIONS,
        models=models,
        departments=departments,
    )


def survey_input(data: dict[str, str]) -> tuple[dict[str, Any], SurveyIn]:
    """What the form typed (to show back) and the survey it asks for, or a
    ValidationError/ValueError naming the field."""

    def text(name: str) -> str | None:
        value = data.get(name, "").strip()
        return value or None

    values: dict[str, Any] = {
        "type": data.get("type", "").strip(),
        "name": data.get("name", ""),
        "question": data.get("question", ""),
        "stage": data.get("stage", ""),
        "touchpoint": data.get("touchpoint", ""),
        "audience": data.get("audience", "customers"),
        "department": data.get("department", ""),
        "ask_why": data.get("ask_why") in ("1", "on", "true"),
        "scale": data.get("scale", ""),
        "choices": data.get("choices", ""),
    }
    scale: tuple[int, int] | None = None
    if text("scale"):
        low, sep, high = data["scale"].strip().partition("-")
        if not sep or not low.strip().isdigit() or not high.strip().isdigit():
            raise ValueError(f"scale: give LOW-HIGH, e.g. 1-10, not {data['scale'].strip()!r}")
        scale = (int(low), int(high))
    lines = [c.strip() for c in data.get("choices", "").splitlines() if c.strip()]
    body = SurveyIn(
        type=values["type"],
        name=values["name"],
        question=text("question"),
        stage=text("stage"),
        touchpoint=text("touchpoint"),
        audience=values["audience"],
        department=text("department"),
        ask_why=values["ask_why"],
        scale=scale,
        choices=lines or None,
    )
    return values, body


@router.get("/feedback/surveys/new", response_class=HTMLResponse)
def new_survey_form(page: PageCtx) -> HTMLResponse:
    page.require("analyst")
    return _survey_form(page)


@router.post("/feedback/surveys/new", response_class=HTMLResponse)
async def new_survey(page: PageCtx) -> Response:
    page.require("analyst")
    data = await page.form()
    values: dict[str, Any] = {k: data.get(k, "") for k in SURVEY_FIELDS}
    values["ask_why"] = data.get("ask_why") in ("1", "on", "true")
    try:
        values, body = survey_input(data)
        made = await written(page.state, lambda conn: create_survey(conn, body))
    except (ValidationError, ValueError, LookupError) as exc:
        errors = error_fields(exc, SURVEY_FIELDS)
        return _survey_form(page, values=values, errors=errors, status_code=422)
    return RedirectResponse(f"/feedback/surveys/{made['id']}?done=created", status_code=303)


# -- one survey ----------------------------------------------------------------------------

INVITE_FIELDS = {"customer", "expires_days", "channel", "touchpoint"}
EDIT_FIELDS = {"name", "question", "stage", "touchpoint"}


def _survey_page(
    page: Page,
    survey_id: int,
    *,
    invite: dict[str, Any] | None = None,
    invite_values: dict[str, Any] | None = None,
    invite_errors: dict[str, str] | None = None,
    edit_values: dict[str, str] | None = None,
    edit_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    filters = Filters.parse(page.request)
    start, end = filters.window(page.zone)
    with page.state.project.engine.connect() as conn:
        try:
            survey = get_survey(conn, survey_id)
        except NotFound:
            raise HTTPException(404, f"no survey with id {survey_id}") from None
        measure = MEASURES.get((survey["kind"], survey["audience"]))
        results = None
        if measure is not None:
            results = _results(
                conn, measure, filters=filters, page=page, survey_id=survey_id, by_stage=False
            )
            where = results["where"]
            counts = results["counts"]
        else:
            where = filters.where
            try:
                counts = answer_counts(conn, survey_id=survey_id, start=start, end=end, where=where)
            except ValueError as exc:
                filters.errors["value"] = str(exc).partition(": ")[2] or str(exc)
                where = {}
                counts = answer_counts(conn, survey_id=survey_id, start=start, end=end)
        comments = _comments(conn, page, filters, where, survey_id)
        themes = themes_report(conn, survey_id=survey_id, start=start, end=end, top=10, examples=1)
        triggers = [t for t in list_triggers(conn) if t["survey_id"] == survey_id]
        names = stage_names(conn)
        models = installed_models(conn)
    done = page.request.query_params.get("done", "")
    return page.render(
        "pages/feedback_survey.html",
        status_code=status_code,
        filters=filters,
        survey=survey,
        measure=measure,
        r=results,
        counts=counts,
        counts_chart=distribution_chart(measure, counts),
        total_answers=sum(c["responses"] for c in counts),
        comments=comments,
        themes=themes,
        triggers=triggers,
        stage_names=names,
        score_text=score_text,
        delay_text=delay_text,
        done=done,
        invite=invite,
        invite_values=invite_values or {"expires_days": 14, "channel": "link"},
        invite_errors=invite_errors or {},
        edit_values=edit_values
        or {k: survey[k] or "" for k in ("name", "question", "stage", "touchpoint")},
        edit_errors=edit_errors or {},
        models=models,
        may_send=page.at_least("analyst"),
        is_admin=page.at_least("admin"),
    )


@router.get("/feedback/surveys/{survey_id}", response_class=HTMLResponse)
def survey_page(page: PageCtx, survey_id: int) -> HTMLResponse:
    return _survey_page(page, record_id(survey_id, "survey"))


@router.post("/feedback/surveys/{survey_id}", response_class=HTMLResponse)
async def change_survey(page: PageCtx, survey_id: int) -> Response:
    """Rename, reword, or tie to another stage or touchpoint (empty: none); answers given
    before keep theirs."""
    page.require("analyst")
    record_id(survey_id, "survey")
    data = await page.form()
    values = {k: data.get(k, "") for k in EDIT_FIELDS}
    fields: dict[str, Any] = {
        "name": values["name"],
        "question": values["question"],
        "touchpoint": values["touchpoint"].strip() or None,
    }
    if "stage" in data:  # the form offers stages to customer surveys only
        fields["stage"] = values["stage"] or None
    try:
        change = SurveyUpdate(**fields)
        await written(page.state, lambda conn: update_survey(conn, survey_id, change))
    except NotFound as exc:
        if exc.field == "survey":
            raise HTTPException(404, f"no survey with id {survey_id}") from None
        errors = error_fields(exc, EDIT_FIELDS)
        return _survey_page(page, survey_id, edit_values=values, edit_errors=errors,
                            status_code=422)  # fmt: skip
    except (ValidationError, ValueError, LookupError) as exc:
        errors = error_fields(exc, EDIT_FIELDS)
        status = 409 if isinstance(exc, Conflict) else 422
        return _survey_page(page, survey_id, edit_values=values, edit_errors=errors,
                            status_code=status)  # fmt: skip
    return RedirectResponse(f"/feedback/surveys/{survey_id}?done=changed", status_code=303)


@router.post("/feedback/surveys/{survey_id}/invites", response_class=HTMLResponse)
async def survey_invite(page: PageCtx, survey_id: int) -> HTMLResponse:
    """A single-use link. Its URL carries the token, of which only a hash is stored: it is
    shown in this answer alone (no redirect, so it never sits in a URL or the history)."""
    page.require("analyst")
    record_id(survey_id, "survey")
    data = await page.form()
    values: dict[str, Any] = {k: data.get(k, "") for k in INVITE_FIELDS}
    base = page.state.project.settings.effective_public_url
    try:
        expires = values["expires_days"].strip() or "14"
        body = InviteRequest.model_validate(
            {
                "customer": values["customer"].strip() or None,
                "expires_days": expires,  # the form's text; pydantic reads the number
                "channel": values["channel"] or "link",
                "touchpoint": values["touchpoint"].strip() or None,
            }
        )

        def write(conn: Connection) -> dict[str, Any]:
            customer_id = (
                None if body.customer is None else resolve_customer_id(conn, body.customer)
            )
            found, token = create_invite(
                conn,
                survey_id,
                channel=body.channel,
                customer_id=customer_id,
                expires_days=body.expires_days,
                touchpoint=body.touchpoint,
            )
            return {**found, "url": f"{base}/s/{token}"}

        invite = await written(page.state, write)
    except NotFound:
        raise HTTPException(404, f"no survey with id {survey_id}") from None
    except (ValidationError, ValueError, LookupError) as exc:
        errors = error_fields(exc, INVITE_FIELDS)
        return _survey_page(
            page, survey_id, invite_values=values, invite_errors=errors, status_code=422
        )
    return _survey_page(page, survey_id, invite=invite, invite_values=values)
