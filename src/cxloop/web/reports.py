"""REST API for the combined reports: the overview the web app opens on, and the report
document (``cxloop report``) as figures, HTML or PDF."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from cxloop.domain.values import parse_pairs
from cxloop.feedback.responses import days_window
from cxloop.lifecycle.mirror import moves_store
from cxloop.reports import schedules
from cxloop.reports.document import ReportRequest, gather, render_html, render_pdf
from cxloop.reports.overview import overview
from cxloop.web.auth import Analyst, Caller
from cxloop.web.errors import refuse_nul
from cxloop.web.state import written

router = APIRouter(prefix="/api/v1", tags=["reports"], dependencies=[Depends(refuse_nul)])
ModelParam = Annotated[str | None, Query(max_length=120, description="A lifecycle model's key")]
FromParam = Annotated[date | None, Query(alias="from", description="First day (inclusive)")]
ToParam = Annotated[date | None, Query(alias="to", description="Last day (inclusive)")]


@router.get("/overview")
def overview_report(
    state: Caller,
    model: ModelParam = None,
    start: FromParam = None,
    end: ToParam = None,
    where: Annotated[
        list[str] | None, Query(description="Segment: profile field or trait NAME=VALUE")
    ] = None,
) -> dict[str, Any]:
    """Customers, active customers, conversion and churn of a lifecycle, NPS with margin
    and benchmark, open and overdue follow-ups, and the three worst stages."""
    project = state.project
    first, last = days_window(start, end, project.settings.zone)
    with project.engine.connect() as conn:
        return overview(
            conn,
            zone=project.settings.zone,
            model=model,
            start=first,
            end=last,
            where=parse_pairs(where, "where"),
            store=moves_store(project.events),
        )


@router.get(
    "/report",
    responses={200: {"content": {"text/html": {}, "application/pdf": {}}}},
)
def report_document(
    state: Caller,
    model: ModelParam = None,
    start: FromParam = None,
    end: ToParam = None,
    department: Annotated[
        str | None, Query(max_length=120, description="One department's view of its stages")
    ] = None,
    format: Annotated[
        Literal["json", "html", "pdf"], Query(description="The figures, or the document")
    ] = "json",
) -> Any:
    """The report a manager forwards: overview, stage flow, gaps, drivers, NPS against its
    benchmarks and follow-up status, as its figures (JSON) or as a self-contained HTML or
    PDF document with charts."""
    project = state.project
    request = ReportRequest(model=model, first=start, last=end, department=department)
    with project.engine.connect() as conn:
        data = gather(conn, project.events, request, zone=project.settings.zone,
                      store=moves_store(project.events))  # fmt: skip
    if format == "json":
        return data
    html = render_html(data)
    name = f"cxloop-report-{data['model']}"
    if format == "html":
        return Response(html, media_type="text/html; charset=utf-8")
    attachment = {"Content-Disposition": f'attachment; filename="{name}.pdf"'}
    return Response(render_pdf(html), media_type="application/pdf", headers=attachment)


@router.get("/report-schedules")
def list_report_schedules(state: Caller) -> list[dict[str, Any]]:
    """Each department's weekly report e-mail: when it goes out, to whom, when it last did."""
    with state.project.engine.connect() as conn:
        return schedules.list_schedules(conn, state.project.settings.zone)


@router.put("/report-schedules")
async def save_report_schedule(state: Analyst, body: schedules.ScheduleIn) -> dict[str, Any]:
    """Create or replace a department's schedule (weekday and hour in the project's time
    zone; no recipients: the department's users)."""
    zone = state.project.settings.zone
    return await written(state, lambda conn: schedules.save_schedule(conn, body, zone))


@router.delete("/report-schedules/{department}", status_code=204)
async def delete_report_schedule(state: Analyst, department: str) -> Response:
    await written(state, lambda conn: schedules.delete_schedule(conn, department))
    return Response(status_code=204)
