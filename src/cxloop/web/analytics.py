"""REST API for journey analytics: funnels, trends, retention and paths, and the export of
the Parquet lake that Spark reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from cxloop.analytics.funnel import funnel_customers, run_funnel
from cxloop.analytics.funnel_spec import FunnelSpec, SpecRejected
from cxloop.analytics.lake import LakeError, export_parquet
from cxloop.analytics.paths import PathsSpec, run_paths
from cxloop.analytics.periods import RetentionSpec, TrendsSpec, run_retention, run_trends
from cxloop.analytics.sql import EngineUnsupported
from cxloop.web.auth import Analyst, Caller
from cxloop.web.errors import ApiError, refuse_nul

router = APIRouter(
    prefix="/api/v1/analytics", tags=["analytics"], dependencies=[Depends(refuse_nul)]
)


def spec_error(exc: SpecRejected) -> ApiError:
    first = exc.problems[0]
    details = [{"code": p.code, "field": p.field, "reason": p.message} for p in exc.problems]
    return ApiError(422, first.code, f"{first.field}: {first.message}", field=first.field,
                    details=details)  # fmt: skip


def _answer(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a query; refused specs and unsupported stores become coded 422 answers."""
    try:
        return run()
    except SpecRejected as exc:
        raise spec_error(exc) from exc
    except EngineUnsupported as exc:
        raise ApiError(422, "engine_unsupported", str(exc)) from exc


@router.post("/funnel")
def funnel(state: Caller, spec: FunnelSpec) -> dict[str, Any]:
    """Customers per step of an ordered, strict or unordered funnel, with times to convert
    and an optional breakdown. Steps are numbered from 0."""
    project = state.project
    return _answer(lambda: run_funnel(spec, project.events, project.engine, project.settings.zone))


class FunnelCustomersIn(BaseModel):
    spec: FunnelSpec
    step: int = Field(ge=0, description="A step, numbered from 0")
    outcome: Literal["reached", "dropped"] = "dropped"
    limit: int = Field(default=100, ge=1, le=10_000)
    offset: int = Field(default=0, ge=0)


@router.post("/funnel/customers")
def funnel_people(state: Caller, body: FunnelCustomersIn) -> dict[str, Any]:
    """The customers who dropped off after a step (or reached it), for follow-ups."""
    project = state.project
    return _answer(
        lambda: funnel_customers(
            body.spec,
            project.events,
            project.engine,
            project.settings.zone,
            step=body.step,
            outcome=body.outcome,
            limit=body.limit,
            offset=body.offset,
        )
    )


@router.post("/trends")
def trends(state: Caller, spec: TrendsSpec) -> dict[str, Any]:
    """Events and unique customers per day, week or month, with an optional breakdown."""
    project = state.project
    return _answer(lambda: run_trends(spec, project.events, project.engine, project.settings.zone))


@router.post("/retention")
def retention(state: Caller, spec: RetentionSpec) -> dict[str, Any]:
    """Cohorts by the period of their first start event, and who returned in each period."""
    project = state.project
    return _answer(
        lambda: run_retention(spec, project.events, project.engine, project.settings.zone)
    )


@router.post("/paths")
def paths(state: Caller, spec: PathsSpec) -> dict[str, Any]:
    """The most common paths after (or before) an event, where customers exit included."""
    project = state.project
    return _answer(lambda: run_paths(spec, project.events, project.settings.zone))


export_router = APIRouter(
    prefix="/api/v1/export", tags=["export"], dependencies=[Depends(refuse_nul)]
)


class LakeExportIn(BaseModel):
    overwrite: bool = Field(default=False, description="Replace a lake already there")


@export_router.post("/parquet")
def export_lake(state: Analyst, body: LakeExportIn) -> dict[str, Any]:
    """Write the Parquet lake (events by month, customers) to the project's lake directory
    (``CXLOOP_LAKE_DIR``), which Spark reads with ``--engine spark``. The server writes
    only there: no caller chooses where the server's files go."""
    project = state.project
    try:
        return export_parquet(
            project.events, project.engine, project.settings.effective_lake_dir,
            overwrite=body.overwrite,
        )  # fmt: skip
    except LakeError as exc:
        raise ApiError(422, "lake_not_empty", str(exc), field="overwrite") from exc
