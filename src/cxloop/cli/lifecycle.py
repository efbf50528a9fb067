"""`cxloop lifecycle` and `cxloop departments`: models, stage flows, stalled customers.

Every command runs in the project's server when one is running (it owns the event store)
and in this process otherwise; both print the same JSON.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from cxloop.cli.context import FILTER_OPTIONS, CliError, call_project, day_option, handle_errors
from cxloop.cli.output import Format, duration, emit, err_console, key_values, percent
from cxloop.domain.lifecycle import LifecycleModel
from cxloop.domain.values import parse_pairs
from cxloop.lifecycle import report, service
from cxloop.lifecycle.mirror import moves_store
from cxloop.lifecycle.spec import ModelFileError, load_model_file, model_to_yaml, preset, presets
from cxloop.project import Project

app = typer.Typer(help="Lifecycle models, stage flows and stalled customers.", no_args_is_help=True)
departments_app = typer.Typer(help="Departments that own lifecycle stages.", no_args_is_help=True)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]


# -- models ---------------------------------------------------------------------------------


@app.command("presets")
@handle_errors
def list_presets(fmt: FormatOpt = Format.table) -> None:
    """The lifecycle models cxloop ships (install one with `cxloop lifecycle apply KEY`)."""
    rows = [
        {"key": p.key, "name": p.name, "stages": " → ".join(p.stages), "description": p.description}
        for p in presets()
    ]
    data = [{**r, "stages": list(p.stages)} for r, p in zip(rows, presets(), strict=True)]
    emit(data, fmt, rows=rows, columns=("key", "name", "stages"), title="lifecycle presets")


@app.command("apply")
@handle_errors
def apply(
    source: Annotated[str, typer.Argument(help="A preset key or a model file (YAML)")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Install or replace a model, then build its stage histories from stored events."""
    model = _model_from(source)
    result = call_project(
        "POST",
        "/api/v1/lifecycle/models",
        lambda project: service.install_model(project.engine, project.stages, model),
        body={"model": model.model_dump(mode="json")},
    )
    key_values(result, fmt, title=f"installed {result['key']} (version {result['version']})")


def _model_from(source: str) -> LifecycleModel:
    found = preset(source)
    if found is not None:
        return found.model
    path = Path(source)
    if not path.exists() and path.suffix not in (".yaml", ".yml"):
        known = ", ".join(p.key for p in presets())
        raise CliError(f"source: {source!r} is neither a preset ({known}) nor a file", 2)
    try:
        return load_model_file(path)
    except ModelFileError as exc:
        raise CliError(str(exc), 2) from None


@app.command("list")
@handle_errors
def list_models(fmt: FormatOpt = Format.table) -> None:
    """Installed models: stages, owners, and how many customers stand in each stage."""

    def local(project: Project) -> Any:
        with project.engine.connect() as conn:
            return service.list_models(conn)

    models = call_project("GET", "/api/v1/lifecycle/models", local)
    rows = [
        {
            "model": m["key"],
            "stage": s["key"],
            "name": s["name"],
            "owner": s["owner"],
            "target_days": s["target_days"],
            "current": s["current"],
        }
        for m in models
        for s in m["stages"]
    ]
    if fmt is Format.table and not rows:
        err_console.print("no lifecycle model installed (see `cxloop lifecycle presets`)")
        return
    fields = ("model", "stage", "name", "owner", "target_days", "current")
    emit(models, fmt, rows=rows, fields=fields, title="installed lifecycle models")


@app.command("show")
@handle_errors
def show(key: Annotated[str, typer.Argument(help="Model key")]) -> None:
    """Print an installed model as YAML (edit it and `apply` the file to change rules)."""

    def local(project: Project) -> Any:
        with project.engine.connect() as conn:
            _id, model, version = service.get_model(conn, key)
        return {"version": version, **model.model_dump(mode="json")}

    data = call_project("GET", f"/api/v1/lifecycle/models/{key}", local)
    data.pop("version", None)
    typer.echo(model_to_yaml(LifecycleModel.model_validate(data)), nl=False)


@app.command("remove")
@handle_errors
def remove(key: Annotated[str, typer.Argument(help="Model key")]) -> None:
    """Uninstall a model and its stage histories (events are kept)."""

    call_project(
        "DELETE",
        f"/api/v1/lifecycle/models/{key}",
        lambda project: service.uninstall_model(project.engine, project.stages, key),
    )
    err_console.print(f"removed {key}")


@app.command("rebuild")
@handle_errors
def rebuild(
    model: Annotated[str | None, typer.Argument(help="Model key; all models when omitted")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Forget stage histories and fold every customer's stored events again."""
    keys = [model] if model else None

    def local(project: Project) -> Any:
        if keys:
            with project.engine.connect() as conn:
                service.get_model(conn, keys[0])
        started = datetime.now()
        result = project.stages.rebuild(keys)
        seconds = (datetime.now() - started).total_seconds()
        return {
            "customers": result.customers,
            "transitions": result.transitions,
            "seconds": round(seconds, 3),
        }

    result = call_project("POST", "/api/v1/lifecycle/rebuild", local, body={"models": keys})
    key_values(result, fmt, title="rebuilt stage histories")


@app.command("report")
@handle_errors
def stage_report(
    model: Annotated[str, typer.Argument(help="Model key")],
    start: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (project time zone)")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Day after the last, YYYY-MM-DD")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="Segment: profile field or trait NAME=VALUE (repeatable)"),
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Stage flow: entered, current, progressed, exited, rates, time in stage, owner."""
    first, last = day_option(start, "--from"), day_option(end, "--to")
    segment = parse_pairs(where, "--where")

    def local(project: Project) -> Any:
        zone = ZoneInfo(project.settings.timezone)
        with project.engine.connect() as conn:
            from cxloop.segments import check_where  # loaded only for a local answer

            check_where(conn, segment, "--where")
            return report.stage_flow(
                conn,
                model,
                start=report.day_start(first, zone),
                end=report.day_start(last, zone),
                where=segment,
                store=moves_store(project.events),
            )

    params = {
        "from": first.isoformat() if first else None,
        "to": last.isoformat() if last else None,
        "where": [f"{k}={v}" for k, v in segment.items()] or None,
    }
    data = call_project(
        "GET", f"/api/v1/lifecycle/{model}/report", local, params=params, options=FILTER_OPTIONS
    )
    # The table keeps to the columns people scan; JSON and CSV carry every field.
    rows = [
        {
            "stage": s["name"],
            "owner": s["owner"],
            "in": s["entered"],
            "now": s["current"],
            "on": s["progressed"],
            "out": s["exited"],
            "conv.": percent(s["conversion_rate"]),
            "drop": percent(s["drop_off_rate"]),
            "median": duration(s["median_time_in_stage_s"]),
            "p90": duration(s["p90_time_in_stage_s"]),
            ">target": percent(s["over_target"]),
        }
        for s in data["stages"]
    ]
    if fmt is Format.csv:
        emit(data["stages"], fmt, rows=data["stages"])
        return
    emit(data, fmt, rows=rows, title=f"stage flow: {data['model_name']}")
    if fmt is Format.table:
        err_console.print(
            "in = entered, now = in the stage now, on = moved on, out = left the lifecycle"
        )
    if fmt is Format.table and data["exits_by_reason"]:
        reasons = [{"reason": k, "exits": v} for k, v in data["exits_by_reason"].items()]
        emit(reasons, fmt, title="exits by reason")


@app.command("stalled")
@handle_errors
def stalled(
    model: Annotated[str, typer.Argument(help="Model key")],
    stage: Annotated[str | None, typer.Option(help="Only this stage (key)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Customers per stage")] = 100,
    fmt: FormatOpt = Format.table,
) -> None:
    """Customers over their stage's target time, longest waiting first."""

    def local(project: Project) -> Any:
        with project.engine.connect() as conn:
            return service.stalled(conn, model, stage=stage, limit=limit)

    data = call_project(
        "GET", f"/api/v1/lifecycle/{model}/stalled", local, params={"stage": stage, "limit": limit}
    )
    rows = [
        {"stage": s["stage"], "owner": s["owner"], "target_days": s["target_days"], **c}
        for s in data
        for c in s["customers"]
    ]
    emit(
        data,
        fmt,
        rows=rows,
        columns=(
            "stage",
            "owner",
            "target_days",
            "customer_id",
            "user_id",
            "entered_at",
            "days_in_stage",
        ),
        title="stalled customers",
    )
    if fmt is Format.table:
        for s in data:
            if s["total"] > len(s["customers"]):
                err_console.print(
                    f"{s['stage']}: {s['total']:,} stalled, {len(s['customers'])} shown"
                )


# -- departments ----------------------------------------------------------------------------


@departments_app.command("list")
@handle_errors
def departments_list(fmt: FormatOpt = Format.table) -> None:
    """Departments and the stages they own."""

    def local(project: Project) -> Any:
        with project.engine.connect() as conn:
            return service.list_departments(conn)

    data = call_project("GET", "/api/v1/departments", local)
    rows = [{**d, "stages": ", ".join(d["stages"])} for d in data]
    emit(data, fmt, rows=rows, columns=("id", "name", "stages"), title="departments")


@departments_app.command("create")
@handle_errors
def departments_create(
    name: Annotated[str, typer.Argument(help="Department name")], fmt: FormatOpt = Format.table
) -> None:
    """Create a department."""

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return service.create_department(conn, name)

    data = call_project("POST", "/api/v1/departments", local, body={"name": name})
    key_values(data, fmt, title="department")


@departments_app.command("rename")
@handle_errors
def departments_rename(
    name: Annotated[str, typer.Argument(help="Current name")],
    new_name: Annotated[str, typer.Argument(help="New name")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Rename a department; the stages it owns follow."""

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            renamed = service.rename_department(conn, name, new_name)
        project.stages.forget_models()
        return renamed

    data = call_project("PATCH", f"/api/v1/departments/{name}", local, body={"new_name": new_name})
    key_values(data, fmt, title="department")


@departments_app.command("sla")
@handle_errors
def departments_sla(
    name: Annotated[str, typer.Argument(help="Department name")],
    hours: Annotated[int, typer.Argument(help="Hours to act on a follow-up")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Set the department's follow-up SLA: new follow-ups are due this many hours later."""

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return service.set_followup_sla(conn, name, hours)

    data = call_project("PUT", f"/api/v1/departments/{name}/sla", local, body={"hours": hours})
    key_values(data, fmt, title="department")


# -- helpers --------------------------------------------------------------------------------
