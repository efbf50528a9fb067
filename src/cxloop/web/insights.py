"""REST API for insights: the stages that fail their customers most, with their owners."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from cxloop.domain.values import parse_pairs
from cxloop.feedback.responses import days_window
from cxloop.insights.gaps import MIN_SAMPLE, stage_gaps
from cxloop.lifecycle.mirror import moves_store
from cxloop.web.auth import Caller
from cxloop.web.errors import refuse_nul

router = APIRouter(prefix="/api/v1", tags=["insights"], dependencies=[Depends(refuse_nul)])


@router.get("/insights/gaps/{model}")
def gaps(
    state: Caller,
    model: str,
    start: Annotated[date | None, Query(alias="from", description="First day (inclusive)")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day (inclusive)")] = None,
    where: Annotated[
        list[str] | None, Query(description="Segment: profile field or trait NAME=VALUE")
    ] = None,
    min_sample: Annotated[
        int,
        Query(ge=1, le=1_000_000, description="Customers or answers a part needs to count"),
    ] = MIN_SAMPLE,
) -> dict[str, Any]:
    """The model's stages ranked by a priority score (its formula is in the answer): per
    stage drop-off, time in stage against the target, NPS or CSAT at the stage, case rate
    and positive resolutions, exits by reason, the owner and every sample size."""
    project = state.project
    first, last = days_window(start, end, project.settings.zone)
    with project.engine.connect() as conn:
        return stage_gaps(
            conn,
            model,
            start=first,
            end=last,
            where=parse_pairs(where, "where"),
            zone=project.settings.zone,
            store=moves_store(project.events),
            min_sample=min_sample,
        )
