"""REST API for insights: the stages that fail their customers most, with their owners,
what drives overall NPS and churn, which segments convert, how customers buy, and who
is about to leave."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from cxloop.domain.values import parse_pairs
from cxloop.feedback.responses import days_window
from cxloop.insights.churn import HORIZON_DAYS, churn_risk, follow_up_at_risk
from cxloop.insights.drivers import MIN_SAMPLE as DRIVERS_MIN_SAMPLE
from cxloop.insights.drivers import RESAMPLES, Outcome, key_drivers
from cxloop.insights.filters import segment_members
from cxloop.insights.gaps import MIN_SAMPLE, stage_gaps
from cxloop.insights.purchases import AMOUNT, MONTHS, purchase_behaviour
from cxloop.insights.purchases import EVENT as PURCHASE_EVENT
from cxloop.insights.retarget import MIN_SAMPLE as RETARGET_MIN_SAMPLE
from cxloop.insights.retarget import retarget
from cxloop.lifecycle.mirror import moves_store
from cxloop.web.auth import Analyst, Caller
from cxloop.web.errors import ApiError, refuse_nul
from cxloop.web.state import ServerState, written

FromDay = Annotated[date | None, Query(alias="from", description="First day (inclusive)")]
ToDay = Annotated[date | None, Query(alias="to", description="Last day (inclusive)")]
Segment = Annotated[
    list[str] | None, Query(description="Segment: profile field or trait NAME=VALUE")
]
router = APIRouter(prefix="/api/v1", tags=["insights"], dependencies=[Depends(refuse_nul)])


@router.get("/insights/gaps/{model}")
def gaps(
    state: Caller,
    model: str,
    start: FromDay = None,
    end: ToDay = None,
    where: Segment = None,
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


@router.get("/insights/drivers")
def drivers(
    state: Caller,
    outcome: Annotated[Outcome, Query(description="nps (overall NPS) or churn")] = "nps",
    model: Annotated[
        str | None, Query(max_length=120, description="Lifecycle model (needed for churn)")
    ] = None,
    survey: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="The NPS survey that is the outcome")
    ] = None,
    start: FromDay = None,
    end: ToDay = None,
    where: Segment = None,
    min_sample: Annotated[
        int, Query(ge=3, le=1_000_000, description="Customers a driver needs to be measured for")
    ] = DRIVERS_MIN_SAMPLE,
    resamples: Annotated[int, Query(ge=20, le=2000, description="Bootstrap resamples")] = (
        RESAMPLES
    ),
) -> dict[str, Any]:
    """What most moves overall NPS or churn: satisfaction per touchpoint and stage, case
    experiences and behaviours, each with its share of the explained variance (relative
    weights, 95 % bootstrap intervals), direction, performance and quadrant, and the
    number of customers it rests on."""
    project = state.project
    first, last = days_window(start, end, project.settings.zone)
    with project.engine.connect() as conn:
        return key_drivers(
            conn, project.events, outcome=outcome, model=model, survey_id=survey,
            start=first, end=last, where=parse_pairs(where, "where"),
            min_sample=min_sample, resamples=resamples,
        )  # fmt: skip


@router.get("/insights/retarget/{model}")
def retarget_report(
    state: Caller,
    model: str,
    goal: Annotated[
        str | None,
        Query(max_length=63, description="A stage key (reached it or later), or exit; last stage"),
    ] = None,
    start: FromDay = None,
    end: ToDay = None,
    where: Segment = None,
    min_sample: Annotated[
        int, Query(ge=5, le=1_000_000, description="Customers a value needs to be tested")
    ] = RETARGET_MIN_SAMPLE,
) -> dict[str, Any]:
    """The customers who entered the model against those who reached the goal, attribute
    by attribute (profile fields and traits): each value's share in both, conversion rate,
    lift and chi-square significance (Benjamini-Hochberg adjusted); attributes ordered by
    Cramér's V; the segments that convert best and worst."""
    project = state.project
    first, last = days_window(start, end, project.settings.zone)
    with project.engine.connect() as conn:
        return retarget(
            conn, model, goal=goal, start=first, end=last, where=parse_pairs(where, "where"),
            min_sample=min_sample,
        )  # fmt: skip


@router.get("/insights/purchases")
def purchases(
    state: Caller,
    event: Annotated[str, Query(min_length=1, max_length=200, description="Purchase event")] = (
        PURCHASE_EVENT
    ),
    amount: Annotated[
        str, Query(min_length=1, max_length=200, description="The amount's property")
    ] = AMOUNT,
    start: FromDay = None,
    end: ToDay = None,
    where: Segment = None,
    months: Annotated[int, Query(ge=1, le=60, description="Months of repeat curves")] = MONTHS,
) -> dict[str, Any]:
    """Purchase behaviour: summary, purchases per buyer, spend and order-value
    distributions, channel mix, RFM segments, lifetime value (historic and projected) and
    repeat-purchase curves per cohort of first-purchase month."""
    project = state.project
    first, last = days_window(start, end, project.settings.zone)
    segment = parse_pairs(where, "where")
    with project.engine.connect() as conn:
        among = set(conn.execute(segment_members(segment)).scalars()) if segment else None
    return purchase_behaviour(
        project.events, event=event, amount=amount, start=first, end=last, among=among,
        months=months,
    )  # fmt: skip


Horizon = Annotated[int, Query(ge=7, le=730, description="Days ahead the risk is for")]


def _churn(
    state: ServerState, model: str, end: date | None, horizon: int, where: list[str] | None,
    limit: int, offset: int,
) -> dict[str, Any]:  # fmt: skip
    project = state.project
    _first, last = days_window(None, end, project.settings.zone)
    with project.engine.connect() as conn:
        return churn_risk(
            conn, project.events, model, end=last, horizon_days=horizon,
            where=parse_pairs(where, "where"), limit=limit, offset=offset,
        )  # fmt: skip


@router.get("/insights/churn/{model}")
def churn(
    state: Caller,
    model: str,
    end: ToDay = None,
    horizon_days: Horizon = HORIZON_DAYS,
    where: Segment = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """Churn risk in a lifecycle model: a logistic regression trained on the customers in
    it ``horizon_days`` before the end (``to``, default today), evaluated on a held-out
    quarter (AUC, Brier score, calibration), its features' coefficients, and today's
    customers ranked by risk with their top reasons and owner."""
    return _churn(state, model, end, horizon_days, where, limit, offset)


class ChurnFollowUps(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(default=0.5, gt=0, lt=1, description="Risk at or above which")
    limit: int = Field(default=100, ge=1, le=1000, description="Most at-risk customers looked at")
    horizon_days: int = Field(default=HORIZON_DAYS, ge=7, le=730)
    where: list[str] | None = Field(default=None, description="Segment: NAME=VALUE")


@router.post("/insights/churn/{model}/followups")
async def churn_followups(state: Analyst, model: str, body: ChurnFollowUps) -> dict[str, Any]:
    """A follow-up for the owning department of each of the ``limit`` most at-risk
    customers whose risk is at least ``threshold``; one per customer and stay."""
    found = _churn(state, model, None, body.horizon_days, body.where, body.limit, 0)
    if found["note"]:
        raise ApiError(422, "too_little_history", found["note"], field="model")
    threshold = body.threshold
    made = await written(state, lambda conn: follow_up_at_risk(conn, found, threshold=threshold))
    return {**made, "threshold": body.threshold, "looked_at": len(found["at_risk"])}
