"""`cxloop insights`: where the journey fails its customers, ranked, with the owners.

Runs in the project's server when one is running (it owns the event store) and in this
process otherwise; both print the same JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cxloop.cli.context import call_project, day_option, handle_errors
from cxloop.cli.output import Format, emit, err_console, percent
from cxloop.domain.values import parse_pairs
from cxloop.feedback.responses import days_window
from cxloop.insights.gaps import MIN_SAMPLE, stage_gaps
from cxloop.lifecycle.mirror import moves_store
from cxloop.project import Project

app = typer.Typer(help="Insights: gaps per stage and who owns them.", no_args_is_help=True)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]


def _score(value: float | None, sample: int) -> str:
    return "" if value is None else f"{value:.0f} (n={sample})"


@app.command("gaps")
@handle_errors
def gaps(
    model: Annotated[str, typer.Argument(help="Lifecycle model key")],
    start: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (project time zone)")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day (included), YYYY-MM-DD")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="Segment: profile field or trait NAME=VALUE (repeatable)"),
    ] = None,
    min_sample: Annotated[
        int,
        typer.Option("--min-sample", min=1, help="Customers or answers a part needs to count"),
    ] = MIN_SAMPLE,
    fmt: FormatOpt = Format.table,
) -> None:
    """Stages ranked by a priority score: drop-off, time vs target, NPS/CSAT, cases."""
    first, last = day_option(start, "--from"), day_option(end, "--to")
    segment = parse_pairs(where, "--where")

    def local(project: Project) -> Any:
        since, until = days_window(first, last, project.settings.zone)
        with project.engine.connect() as conn:
            return stage_gaps(
                conn, model, start=since, end=until, where=segment,
                zone=project.settings.zone, store=moves_store(project.events),
                min_sample=min_sample,
            )  # fmt: skip

    params = {
        "from": first.isoformat() if first else None,
        "to": last.isoformat() if last else None,
        "where": [f"{k}={v}" for k, v in segment.items()] or None,
        "min_sample": min_sample,
    }
    data = call_project("GET", f"/api/v1/insights/gaps/{model}", local, params=params)
    if fmt is Format.csv:
        flat = [{k: v for k, v in s.items() if k != "parts"} for s in data["stages"]]
        emit(flat, fmt, rows=flat)
        return
    rows = [
        {
            "#": s["rank"] or "",
            "stage": s["name"],
            "owner": s["owner"],
            "priority": "" if s["priority"] is None else f"{s['priority']:.1f}",
            "in": s["entered"],
            "drop": percent(s["drop_off_rate"]),
            ">target": percent(s["over_target"]),
            "NPS": _score(s["nps"], s["nps_responses"]),
            "CSAT": _score(s["csat"], s["csat_responses"]),
            "cases": percent(s["case_rate"]),
            "top exit": next(iter(s["exits_by_reason"]), ""),
        }
        for s in data["stages"]
    ]
    emit(data, fmt, rows=rows, title=f"gaps: {data['model_name']}")
    if fmt is Format.table:
        err_console.print(data["formula"], highlight=False)
        for s in data["stages"]:
            left_out = [f"{p['part']} ({p['why_not']})" for p in s["parts"] if not p["counted"]]
            why = s["note"] or (f"not counted: {', '.join(left_out)}" if left_out else "")
            if why:
                err_console.print(f"{s['name']}: {why}", highlight=False)
