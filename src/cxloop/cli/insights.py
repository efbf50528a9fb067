"""`cxloop insights`: where the journey fails its customers, ranked, with the owners.

Runs in the project's server when one is running (it owns the event store) and in this
process otherwise; both print the same JSON.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import typer

from cxloop.cli.context import call_project, day_option, handle_errors
from cxloop.cli.output import Format, emit, err_console, percent
from cxloop.domain.values import parse_pairs
from cxloop.feedback.responses import days_window
from cxloop.insights.drivers import MIN_SAMPLE as DRIVERS_MIN_SAMPLE
from cxloop.insights.drivers import RESAMPLES, Outcome, key_drivers
from cxloop.insights.gaps import MIN_SAMPLE, stage_gaps
from cxloop.lifecycle.mirror import moves_store
from cxloop.project import Project

app = typer.Typer(
    help="Insights: gaps per stage and who owns them; drivers of NPS and churn.",
    no_args_is_help=True,
)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="First day, YYYY-MM-DD (project time zone)")
]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day (included), YYYY-MM-DD")]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option("--where", help="Segment: profile field or trait NAME=VALUE (repeatable)"),
]


def _filter_params(
    first: date | None, last: date | None, segment: dict[str, str]
) -> dict[str, Any]:
    """The filters as the REST API's query parameters."""
    return {
        "from": first.isoformat() if first else None,
        "to": last.isoformat() if last else None,
        "where": [f"{k}={v}" for k, v in segment.items()] or None,
    }


def _score(value: float | None, sample: int) -> str:
    return "" if value is None else f"{value:.0f} (n={sample})"


@app.command("gaps")
@handle_errors
def gaps(
    model: Annotated[str, typer.Argument(help="Lifecycle model key")],
    start: FromOpt = None,
    end: ToOpt = None,
    where: WhereOpt = None,
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
        **_filter_params(first, last, segment),
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


@app.command("drivers")
@handle_errors
def drivers(
    outcome: Annotated[
        Outcome, typer.Option("--outcome", help="nps (overall NPS) or churn (needs --model)")
    ] = "nps",
    model: Annotated[
        str | None, typer.Option("--model", help="Lifecycle model whose exits are churn")
    ] = None,
    survey: Annotated[
        int | None, typer.Option("--survey", min=1, help="The NPS survey that is the outcome")
    ] = None,
    start: FromOpt = None,
    end: ToOpt = None,
    where: WhereOpt = None,
    min_sample: Annotated[
        int, typer.Option("--min-sample", min=3, help="Customers a driver must be measured for")
    ] = DRIVERS_MIN_SAMPLE,
    resamples: Annotated[
        int, typer.Option("--resamples", min=20, max=2000, help="Bootstrap resamples")
    ] = RESAMPLES,
    fmt: FormatOpt = Format.table,
) -> None:
    """What most moves NPS or churn: importance with 95% intervals, direction, performance."""
    first, last = day_option(start, "--from"), day_option(end, "--to")
    segment = parse_pairs(where, "--where")

    def local(project: Project) -> Any:
        since, until = days_window(first, last, project.settings.zone)
        with project.engine.connect() as conn:
            return key_drivers(
                conn, project.events, outcome=outcome, model=model, survey_id=survey,
                start=since, end=until, where=segment, min_sample=min_sample,
                resamples=resamples,
            )  # fmt: skip

    params = {
        **_filter_params(first, last, segment),
        "outcome": outcome,
        "model": model,
        "survey": survey,
        "min_sample": min_sample,
        "resamples": resamples,
    }
    data = call_project("GET", "/api/v1/insights/drivers", local, params=params)
    if fmt is Format.csv:
        emit(data["drivers"], fmt, rows=data["drivers"])
        return
    rows = [
        {
            "#": d["rank"],
            "driver": d["label"],
            "n": d["measured"],
            "importance": f"{d['importance']:.1f}%",
            "95% interval": f"{d['importance_ci'][0]:.1f}-{d['importance_ci'][1]:.1f}",
            "effect": d["direction"] + ("" if d["significant"] else " (not significant)"),
            "performance": f"{d['performance']:.0f}",
            "quadrant": d["quadrant"],
        }
        for d in data["drivers"]
    ]
    emit(data, fmt, rows=rows, title=f"drivers of {data['outcome']}")
    if fmt is not Format.table:
        return
    who = f"outcome: {data['outcome_is']}; {data['customers']:,} customers"
    err_console.print(who, highlight=False)
    if data["note"]:
        err_console.print(data["note"], highlight=False)
    else:
        low, high = data["r_squared_ci"]
        err_console.print(
            f"R² {data['r_squared']:.3f} (95% {low:.3f}-{high:.3f}, adjusted "
            f"{data['r_squared_adjusted']}); {data['method']}",
            highlight=False,
        )
    for left in data["left_out"]:
        err_console.print(f"left out: {left['label']} ({left['why']})", highlight=False)
