"""`cxloop report`: the document a manager forwards, as one HTML or PDF file.

The figures come from the running server when there is one (it owns the event store) and
from this process otherwise; the document is laid out here either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from cxloop.cli.context import CliError, call_project, day_option, from_options, handle_errors
from cxloop.cli.output import Format, emit, err_console
from cxloop.lifecycle.mirror import moves_store
from cxloop.project import Project
from cxloop.reports import schedules
from cxloop.reports.document import ReportRequest, format_for, gather, write_report

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]


@handle_errors
def report_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The file to write: report.html or report.pdf")
    ],
    model: Annotated[
        str | None, typer.Option("--model", help="A lifecycle model's key (default: the first)")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (project time zone)")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day (included), YYYY-MM-DD")] = None,
    department: Annotated[
        str | None,
        typer.Option("--department", help="One department's view: the stages it owns"),
    ] = None,
) -> None:
    """Write the report: overview, stage flow, gaps, drivers of NPS, NPS against its
    benchmarks and the follow-ups' status, with charts, in one self-contained file."""
    try:
        format_for(out)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    if not out.parent.is_dir():
        raise CliError(f"--out: the folder {out.parent} does not exist", 2)
    first, last = day_option(start, "--from"), day_option(end, "--to")
    request = ReportRequest(model=model, first=first, last=last, department=department)

    def local(project: Project) -> Any:
        with project.engine.connect() as conn:
            return gather(conn, project.events, request, zone=project.settings.zone,
                          store=moves_store(project.events))  # fmt: skip

    params = {
        "model": model,
        "from": first.isoformat() if first else None,
        "to": last.isoformat() if last else None,
        "department": department,
    }
    with err_console.status("gathering the figures"):
        data = call_project("GET", "/api/v1/report", local, params=params)
    with err_console.status(f"writing {out.name}"):
        size = write_report(data, out)
    err_console.print(
        f"wrote {out} ({size:,} bytes): {data['title']}", highlight=False, soft_wrap=True
    )


schedules_app = typer.Typer(
    help="Weekly report e-mails per department (sent by the job queue).", no_args_is_help=True
)


@schedules_app.command("list")
@handle_errors
def schedules_list(fmt: FormatOpt = Format.table) -> None:
    """Every department's schedule: when, to whom, when it last went out."""

    def local(project: Project) -> Any:
        with project.engine.connect() as conn:
            return schedules.list_schedules(conn, project.settings.zone)

    found = call_project("GET", "/api/v1/report-schedules", local)
    rows = [{**s, "sends_to": ", ".join(s["sends_to"]) or "(nobody yet)"} for s in found]
    emit(found, fmt, rows=rows, title="report schedules",
         columns=("department", "weekday", "hour", "model", "sends_to", "enabled",
                  "last_sent_at", "next_at"))  # fmt: skip


SCHEDULE_OPTIONS = {"recipients": "--to", "enabled": "--disabled", "hour": "--hour"}


@schedules_app.command("set")
@handle_errors
def schedules_set(
    department: Annotated[str, typer.Argument(help="The department that gets the report")],
    weekday: Annotated[str, typer.Option(help="mon, tue, ... sun")] = "mon",
    hour: Annotated[int, typer.Option(help="0-23, in the project's time zone")] = 8,
    model: Annotated[
        str | None, typer.Option("--model", help="A lifecycle model's key (default: the first)")
    ] = None,
    to: Annotated[
        list[str] | None,
        typer.Option("--to", help="An address (repeatable; default: the department's users)"),
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Keep it, send nothing")] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Create or replace a department's weekly report e-mail."""
    body = from_options(
        schedules.ScheduleIn,
        SCHEDULE_OPTIONS,
        department=department,
        weekday=weekday,
        hour=hour,
        model=model,
        recipients=to or [],
        enabled=not disabled,
    )

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return schedules.save_schedule(conn, body, project.settings.zone)

    saved = call_project(
        "PUT", "/api/v1/report-schedules", local, body=body.model_dump(), options=SCHEDULE_OPTIONS
    )
    emit(saved, fmt, rows=[saved], columns=("department", "weekday", "hour", "next_at"))


@schedules_app.command("delete")
@handle_errors
def schedules_delete(
    department: Annotated[str, typer.Argument(help="The department whose schedule goes")],
) -> None:
    """Stop a department's weekly report."""

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            schedules.delete_schedule(conn, department)

    call_project("DELETE", f"/api/v1/report-schedules/{quote(department)}", local)
    err_console.print(f"deleted the report schedule of {department}", highlight=False)
