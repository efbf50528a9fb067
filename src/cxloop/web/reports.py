"""REST API for the combined reports: the overview the web app opens on."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from cxloop.domain.values import parse_pairs
from cxloop.feedback.responses import days_window
from cxloop.lifecycle.mirror import moves_store
from cxloop.reports.overview import overview
from cxloop.web.auth import Caller
from cxloop.web.errors import refuse_nul

router = APIRouter(prefix="/api/v1", tags=["reports"], dependencies=[Depends(refuse_nul)])


@router.get("/overview")
def overview_report(
    state: Caller,
    model: Annotated[str | None, Query(max_length=120, description="A lifecycle model's key")] = (
        None
    ),
    start: Annotated[date | None, Query(alias="from", description="First day (inclusive)")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day (inclusive)")] = None,
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
