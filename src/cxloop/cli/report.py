"""`cxloop report`: the document a manager forwards, as one HTML or PDF file.

The figures come from the running server when there is one (it owns the event store) and
from this process otherwise; the document is laid out here either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cxloop.cli.context import CliError, call_project, day_option, handle_errors
from cxloop.cli.output import err_console
from cxloop.lifecycle.mirror import moves_store
from cxloop.project import Project
from cxloop.reports.document import ReportRequest, format_for, gather, write_report


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
    err_console.print(f"wrote {out} ({size:,} bytes): {data['title']}", highlight=False)
