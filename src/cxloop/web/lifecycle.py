"""REST API for lifecycle models, departments, stage-flow reports and stalled customers.

Writes (installing a model, rebuilding histories, departments) run on the ingestion
applier thread, the one writer of the project's stores, after everything acknowledged.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from cxloop.domain.values import check_day, parse_pairs
from cxloop.lifecycle import report, service
from cxloop.lifecycle.mirror import moves_store
from cxloop.lifecycle.spec import ModelFileError, preset, presets, validate_model
from cxloop.web.auth import Admin, Caller
from cxloop.web.errors import ApiError, refuse_nul
from cxloop.web.state import written

router = APIRouter(prefix="/api/v1", tags=["lifecycle"], dependencies=[Depends(refuse_nul)])


class DepartmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=120)


class DepartmentRename(BaseModel):
    new_name: str = Field(min_length=1, max_length=120)


class ApplyIn(BaseModel):
    """Install a shipped preset by key, or a model given in full."""

    preset: str | None = None
    model: dict[str, Any] | None = None


class RebuildIn(BaseModel):
    models: list[str] | None = Field(default=None, description="Model keys; all when absent")


def model_error(exc: ModelFileError) -> ApiError:
    first_where, _line, first_reason = exc.problems[0]
    details = [{"field": w, "line": line, "reason": r} for w, line, r in exc.problems]
    return ApiError(
        422, "invalid_model", f"{first_where}: {first_reason}", field=first_where, details=details
    )


@router.get("/lifecycle/presets")
def list_presets(state: Caller) -> list[dict[str, Any]]:
    """The lifecycle models cxloop ships, ready to install."""
    return [
        {"key": p.key, "name": p.name, "description": p.description, "stages": list(p.stages)}
        for p in presets()
    ]


@router.get("/lifecycle/models")
def list_models(state: Caller) -> list[dict[str, Any]]:
    """Installed models, each stage with its owner and how many customers stand in it."""
    with state.project.engine.connect() as conn:
        return service.list_models(conn)


@router.get("/lifecycle/models/{key}")
def get_model(state: Caller, key: str) -> dict[str, Any]:
    """One installed model as it was validated (the format model files use)."""
    with state.project.engine.connect() as conn:
        _id, model, version = service.get_model(conn, key)
    return {"version": version, **model.model_dump(mode="json")}


@router.post("/lifecycle/models", status_code=201)
async def apply_model(state: Admin, body: ApplyIn) -> dict[str, Any]:
    """Install (or replace) a model and build its stage histories from stored events."""
    if (body.preset is None) == (body.model is None):
        raise ApiError(422, "invalid_request", "give either preset or model", field="preset")
    if body.preset is not None:
        found = preset(body.preset)
        if found is None:
            known = ", ".join(p.key for p in presets())
            raise ApiError(
                422,
                "invalid_request",
                f"preset: no preset {body.preset!r} ({known})",
                field="preset",
            )
        model = found.model
    else:
        try:
            model = validate_model(body.model, "model")
        except ModelFileError as exc:
            raise model_error(exc) from exc
    project = state.project
    return await state.writer.call(
        lambda: service.install_model(project.engine, project.stages, model)
    )


@router.delete("/lifecycle/models/{key}", status_code=204)
async def delete_model(state: Admin, key: str) -> None:
    """Uninstall a model and its stage histories."""

    project = state.project
    await state.writer.call(lambda: service.uninstall_model(project.engine, project.stages, key))


@router.post("/lifecycle/rebuild")
async def rebuild(state: Admin, body: Annotated[RebuildIn, Body()] = RebuildIn()) -> dict[str, Any]:
    """Fold every customer's stored events again (after changing rules by hand, say)."""

    def run() -> dict[str, Any]:
        if body.models:
            with state.project.engine.connect() as conn:
                for key in body.models:
                    service.get_model(conn, key)
        result = state.project.stages.rebuild(body.models)
        return {"customers": result.customers, "transitions": result.transitions}

    return await state.writer.call(run)


@router.get("/lifecycle/{key}/report")
def stage_flow(
    state: Caller,
    key: str,
    start: Annotated[date | None, Query(alias="from", description="First day (inclusive)")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day (exclusive)")] = None,
    where: Annotated[
        list[str] | None, Query(description="Segment: profile field or trait NAME=VALUE")
    ] = None,
) -> dict[str, Any]:
    """Per stage: entered, current, progressed, exited, rates, time in stage, owner."""
    zone = ZoneInfo(state.project.settings.timezone)
    with state.project.engine.connect() as conn:
        return report.stage_flow(
            conn,
            key,
            start=report.day_start(check_day(start, "from"), zone),
            end=report.day_start(check_day(end, "to"), zone),
            where=parse_pairs(where, "where"),
            store=moves_store(state.project.events),
        )


@router.get("/lifecycle/{key}/stalled")
def stalled(
    state: Caller,
    key: str,
    stage: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    """Customers over their stage's target time, per stage, longest waiting first."""
    with state.project.engine.connect() as conn:
        return service.stalled(conn, key, stage=stage, limit=limit)


@router.get("/departments")
def departments(state: Caller) -> list[dict[str, Any]]:
    """Departments and the stages they own."""
    with state.project.engine.connect() as conn:
        return service.list_departments(conn)


@router.post("/departments", status_code=201)
async def create_department(state: Admin, body: DepartmentIn) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        with state.project.engine.begin() as conn:
            return service.create_department(conn, body.name)

    return await state.writer.call(run)


@router.patch("/departments/{name}")
async def rename_department(state: Admin, name: str, body: DepartmentRename) -> dict[str, Any]:
    """Rename a department; the stages it owns follow."""

    def run() -> dict[str, Any]:
        with state.project.engine.begin() as conn:
            renamed = service.rename_department(conn, name, body.new_name)
        state.project.stages.forget_models()
        return renamed

    return await state.writer.call(run)


class DepartmentSla(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: int


@router.put("/departments/{name}/sla")
async def department_sla(state: Admin, name: str, body: DepartmentSla) -> dict[str, Any]:
    """Set how many hours the department has to act on a follow-up."""
    return await written(state, lambda conn: service.set_followup_sla(conn, name, body.hours))
